"""Reading a directory Spark wrote back in the order it was written, so ``cleaned/`` and ``removed/`` keep the input's.

Ingestion's tasks follow the input (file after file, row group after row group) and each writes one part file of the
first stage's copy, so that copy, read file by file in name order, is the input's order. ``spark.read.parquet`` of
the directory does not read it so: its file planning sorts files largest first and packs small ones together into
one task. A union of one scan per part file, in name order, does: a union's partitions are its children's, one after
another, and one file's splits stay in file order. Every row also gets an ``_order`` number (increasing in that
order) for the cases where a shuffle would lose the order again.
"""

from __future__ import annotations

from functools import reduce

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import storage

ORDER = "_order"


def part_files(directory: str) -> list[str]:
    """The Parquet part files of a directory Spark wrote, by name (hidden and ``_`` files skipped)."""
    fs, path = storage.resolve(directory)
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(i.base_name for i in infos if i.is_file and i.base_name.endswith(".parquet"))
    return [storage.to_uri(fs, f"{path}/{n}") for n in names if not n.startswith(("_", "."))]


def read_in_order(spark: SparkSession, directory: str, schema: T.StructType) -> DataFrame:
    """The rows of ``directory`` (written with ``schema``) in file-name order and row order, plus ``_order``."""
    files = part_files(directory)
    if not files:
        return spark.createDataFrame([], schema).withColumn(ORDER, F.lit(0).cast("long"))
    frames = [spark.read.schema(schema).parquet(storage.spark_path(f)) for f in files]
    return reduce(DataFrame.union, frames).withColumn(ORDER, F.monotonically_increasing_id())


def sorted_by_order(df: DataFrame, partitions: int) -> DataFrame:
    """``df`` (with ``_order``) range-partitioned and sorted by it, then without it: the way back to the input order
    after a shuffle (a join too large to broadcast)."""
    return df.repartitionByRange(max(1, partitions), F.col(ORDER)).sortWithinPartitions(ORDER).drop(ORDER)
