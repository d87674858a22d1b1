"""The unified document schema every stage reads and writes, deterministic doc ids, and the stage protocol.

A document row: ``doc_id``, ``text``, ``kind`` ('text' or 'code'), ``source`` (file URI it came from), ``lang``,
``lang_score`` (null until language ID runs, and for code), ``meta`` (the input's other non-null columns as one JSON
object, a string: a map column would be unreadable by Hugging Face ``datasets``, which has no map type).

``doc_id`` keeps the input id column unchanged when there is one (LongType for integral ids, StringType otherwise);
without one it is a 64-bit hash of (source, row position), which no partitioning or core count can change. Stages
treat it as an opaque value that Spark can order ("keep the smallest doc_id").

A removal is *annotated*: ``reason``, ``rule`` and ``duplicate_of`` (null for kept rows), so no document can vanish
between stages. Row stages annotate every row in ingestion's pass; corpus stages return only their removals, a
small table joined back (:func:`apply_removals`) instead of a copy of every document per stage
(:mod:`spark_jobs.stage`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import xxhash
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

KIND_TEXT = "text"
KIND_CODE = "code"
REASON_INVALID = "invalid"

LONG = T.LongType()


def doc_schema(id_type: T.DataType = LONG) -> T.StructType:
    """The columns of ``cleaned/`` (and of every stage's input)."""
    return T.StructType(
        [
            T.StructField("doc_id", id_type, False),
            T.StructField("text", T.StringType(), True),
            T.StructField("kind", T.StringType(), False),
            T.StructField("source", T.StringType(), False),
            T.StructField("lang", T.StringType(), True),
            T.StructField("lang_score", T.DoubleType(), True),
            T.StructField("meta", T.StringType(), True),
        ]
    )


def annotated_schema(id_type: T.DataType = LONG) -> T.StructType:
    """A document row plus the removal annotation (the columns of ``removed/``)."""
    return T.StructType(
        doc_schema(id_type).fields
        + [
            T.StructField("reason", T.StringType(), True),
            T.StructField("rule", T.StringType(), True),
            T.StructField("duplicate_of", id_type, True),
        ]
    )


DOC_COLUMNS = tuple(doc_schema().fieldNames())
ANNOTATIONS = ("reason", "rule", "duplicate_of")
BROADCAST_ROWS_PER_GB = 500_000
"""Removals broadcast to a join (so the documents are not shuffled for it), per GB of the driver's heap.

A broadcast table is held several times while it is built and read (collected rows, the hash map, its serialised
blocks, a local run's deserialised copy), and the ``cleaned/`` and ``removed/`` joins build theirs at once: a million
near-duplicate removals did not fit a 768 MB heap, a million exact ones did.
"""


def apply_removals(docs: DataFrame, removals: DataFrame) -> DataFrame:
    """``docs`` annotated with a dedup stage's ``removals`` (one row per removed ``doc_id``): kept rows get nulls.

    A left join on ``doc_id``; hint ``removals`` with ``F.broadcast`` when it is small, so ``docs`` is not shuffled.
    """
    joined = docs.join(removals.select("doc_id", *ANNOTATIONS), "doc_id", "left")
    return joined.select(*docs.columns, *ANNOTATIONS)


def hint_small(removals: DataFrame, rows: int) -> DataFrame:
    """``removals`` marked for broadcast when it has few enough rows (:func:`is_small`), else for a sort-merge join:
    Spark would broadcast a table whose Parquet files are under 10 MB, and a million compressed removals are that
    small on disk but over a hundred MB in a hash map."""
    return F.broadcast(removals) if is_small(removals.sparkSession, rows) else removals.hint("merge")


def is_small(spark: SparkSession, rows: int) -> bool:
    """Whether a removal table of ``rows`` rows is broadcast to its joins: :data:`BROADCAST_ROWS_PER_GB` per GB of
    the driver JVM's heap bound."""
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    return rows <= BROADCAST_ROWS_PER_GB * heap / (1 << 30)


def position_id(source: str, position: int) -> int:
    """Deterministic signed 64-bit doc id of the ``position``-th row of ``source`` (Spark's LongType is signed)."""
    h = xxhash.xxh64_intdigest(f"{source}\x00{position}".encode())
    return h - (1 << 64) if h >= (1 << 63) else h


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema Spark expects back from ``mapInArrow`` for a Spark schema (the subset of types we use)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema)


@dataclass(frozen=True)
class Verdict:
    """Why one document is removed: a reason (``too_short``, ``language``, ...) and the rule (with its measured value)
    that fired."""

    reason: str
    rule: str
