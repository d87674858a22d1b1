"""Reading a directory Spark wrote back in the order it was written, so ``cleaned/`` and ``removed/`` keep the input's.

Ingestion's tasks follow the input (file after file, row group after row group) and each writes one part file of the
first stage's copy, so that copy, read file by file in name order, is the input's order. ``spark.read.parquet`` does
not read it so: its file planning sorts files largest first and packs small ones together into one task. Here each
part file is one task, in name order, read with pyarrow in a Python worker, and every row gets an ``_order`` number
(file index, row in file) for the cases where a shuffle would lose the order again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import storage
from spark_jobs.documents import arrow_schema
from spark_jobs.session import ARROW_BATCH_ROWS

ORDER = "_order"
FILE_SHIFT = 40
"""``_order`` = file index << 40 | row in file: up to 2^40 rows per part file and 2^23 part files."""


def part_files(directory: str) -> list[str]:
    """The Parquet part files of a directory Spark wrote, by name (hidden and ``_`` files skipped)."""
    fs, path = storage.resolve(directory)
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(i.base_name for i in infos if i.is_file and i.base_name.endswith(".parquet"))
    return [storage.to_uri(fs, f"{path}/{n}") for n in names if not n.startswith(("_", "."))]


def read_in_order(spark: SparkSession, directory: str, schema: T.StructType) -> DataFrame:
    """The rows of ``directory`` (written with ``schema``) plus ``_order``, one partition per part file in name
    order, each in its rows' order."""
    files = part_files(directory)
    out_schema = T.StructType([*schema.fields, T.StructField(ORDER, T.LongType(), False)])
    target = arrow_schema(out_schema)
    units = spark.createDataFrame(
        spark.sparkContext.parallelize(list(enumerate(files)), max(1, len(files))),
        T.StructType([T.StructField("index", T.LongType()), T.StructField("uri", T.StringType())]),
    )

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for unit in batches:
            for index, uri in zip(unit.column("index").to_pylist(), unit.column("uri").to_pylist(), strict=True):
                fs, path = storage.resolve(uri)
                offset = index << FILE_SHIFT
                with fs.open_input_file(path) as fh:
                    for batch in pq.ParquetFile(fh).iter_batches(batch_size=ARROW_BATCH_ROWS, columns=schema.names):
                        order = pa.array(range(offset, offset + batch.num_rows), pa.int64())
                        offset += batch.num_rows
                        arrays = [batch.column(f.name).cast(f.type) for f in list(target)[:-1]]
                        yield pa.RecordBatch.from_arrays([*arrays, order], schema=target)

    return units.mapInArrow(read, out_schema)


def sorted_by_order(df: DataFrame, partitions: int) -> DataFrame:
    """``df`` (with ``_order``) range-partitioned and sorted by it, then without it: the way back to the input order
    after a shuffle (a join too large to broadcast)."""
    return df.repartitionByRange(max(1, partitions), F.col(ORDER)).sortWithinPartitions(ORDER).drop(ORDER)
