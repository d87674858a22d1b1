"""The unified document schema every stage reads and writes, deterministic doc ids, and the stage protocol.

A document row: ``doc_id``, ``text``, ``kind`` ('text' or 'code'), ``source`` (file URI it came from), ``lang``,
``lang_score`` (null until language ID runs, and for code), ``meta`` (map of the input's other columns, as strings).

``doc_id`` keeps the input id column unchanged when there is one (LongType for integral ids, StringType otherwise);
without one it is a 64-bit hash of (source, row position), which no partitioning or core count can change. Stages
treat it as an opaque value that Spark can order ("keep the smallest doc_id").

A stage *annotates*: it returns every input row with three more columns, ``reason``, ``rule`` and
``duplicate_of``, null for kept rows, so no document can vanish between stages. Two kinds of stage make that cheap
in the pipeline: a :class:`RowStage` (filter, language ID) decides each row alone, so the pipeline runs it inside
ingestion's Python pass and writes one annotated copy for all of them; a :class:`DedupStage` (exact and near dedup)
decides from many rows at once and returns only its *removals* (``doc_id``, ``reason``, ``rule``,
``duplicate_of``), a small table the pipeline writes and joins back (:func:`apply_removals`) instead of copying
every document once per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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
            T.StructField("meta", T.MapType(T.StringType(), T.StringType()), True),
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
BROADCAST_ROWS = 1_000_000
"""Up to this many removals (tens of MB) are broadcast to a join, so the documents are not shuffled for it."""


def apply_removals(docs: DataFrame, removals: DataFrame) -> DataFrame:
    """``docs`` annotated with a dedup stage's ``removals`` (one row per removed ``doc_id``): kept rows get nulls.

    A left join on ``doc_id``; hint ``removals`` with ``F.broadcast`` when it is small, so ``docs`` is not shuffled.
    """
    joined = docs.join(removals.select("doc_id", *ANNOTATIONS), "doc_id", "left")
    return joined.select(*docs.columns, *ANNOTATIONS)


def hint_small(removals: DataFrame, rows: int) -> DataFrame:
    """``removals`` marked for broadcast when it has at most :data:`BROADCAST_ROWS` rows."""
    return F.broadcast(removals) if rows <= BROADCAST_ROWS else removals


def position_id(source: str, position: int) -> int:
    """Deterministic signed 64-bit doc id of the ``position``-th row of ``source`` (Spark's LongType is signed)."""
    h = xxhash.xxh64_intdigest(f"{source}\x00{position}".encode())
    return h - (1 << 64) if h >= (1 << 63) else h


def arrow_schema(schema: T.StructType) -> pa.Schema:
    """The Arrow schema Spark expects back from ``mapInArrow`` for a Spark schema (the subset of types we use)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema)


class Stage(Protocol):
    """One step of the cleaning pipeline (filter, langid, exact_dedup, near_dedup)."""

    name: str
    reasons: tuple[str, ...]
    """The removal reasons this stage gives (its share of ``removed_by_reason``)."""

    def annotate(self, docs: DataFrame, cfg: Any) -> DataFrame:
        """Every row of ``docs`` with ``reason``/``rule``/``duplicate_of`` added (null when kept); lazily."""
        ...

    def report(self, annotated: DataFrame, cfg: Any) -> dict[str, Any]:
        """Extra report.json entries computed from the *written* annotated output (counts are the pipeline's)."""
        ...


class RowStage(Stage, Protocol):
    """A stage that decides each document alone: its batch function can run in ingestion's pass."""

    def batch_fn(self, spark: SparkSession, cfg: Any) -> Any:
        """A picklable ``fn(batch) -> {column: values}`` giving ``reason``/``rule`` (and any columns it fills)."""
        ...

    def summary(self, counts: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
        """:meth:`report` from the stage's ``spark_jobs.batches.group_counts`` (which the pipeline computes once
        for all row stages)."""
        ...


class DedupStage(Stage, Protocol):
    """A stage that decides from many documents at once; its output is the removals, not a copy of the documents."""

    def removals(self, docs: DataFrame, cfg: Any) -> DataFrame:
        """``doc_id``, ``reason``, ``rule``, ``duplicate_of`` of each removed document of ``docs`` (lazily)."""
        ...

    def summary(self, removals: DataFrame, docs: DataFrame, cfg: Any) -> dict[str, Any]:
        """:meth:`report` from the stage's written ``removals`` and its input ``docs`` (reading only what it needs)."""
        ...


@dataclass(frozen=True)
class Verdict:
    """Why one document is removed: a reason from SPEC.md and the rule (with its measured value) that fired."""

    reason: str
    rule: str
