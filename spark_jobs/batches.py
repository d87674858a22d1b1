"""Arrow-batch glue between a stage's plain-Python logic and Spark.

Every cleaning stage decides about documents in plain Python over a *batch* of rows (unit-testable without Spark);
Spark only moves Arrow record batches to the Python workers and back (``mapInArrow``). A row-at-a-time UDF would pay
Python call and serialisation overhead per document, and collecting to the driver would not scale, so neither is used.

The contract is deliberately small so every stage (filter, langid, exact and near dedup) can share it:

* a *batch function* ``fn(batch: pa.RecordBatch) -> Mapping[str, values]`` receives the input rows and returns only
  the columns it computes (``reason`` and ``rule`` for a filter; also ``lang``/``lang_score`` for language ID;
  a hash column for dedup), each a Python list or an Arrow array with one value per row;
* :func:`merge_columns` builds the output batch in the target schema: computed columns first, then input columns
  passed through unchanged, then nulls for anything else (so a filter never has to mention ``duplicate_of``);
* :func:`map_batches` applies that to a DataFrame for any output schema, and :func:`annotate_batches` is the common
  case of producing a stage's annotated frame (``annotated_schema``) from document rows;
* :class:`RowChain` runs several row-local batch functions (ingest's reader, the filter, language ID, the exact-dedup
  hash) in one Python pass, each on the rows no earlier one removed: one JVM -> Python -> JVM round trip and one
  Parquet write for all of them, instead of one per stage;
* :func:`group_counts` is the matching report helper: rules are written ``"<name>: <measured detail>"``, and
  reports count documents by reason, rule name, kind and language from one small aggregate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.documents import DOC_COLUMNS, annotated_schema, arrow_schema

CHARS = "_chars"
"""Characters of each text (0 for none): measured once, in Arrow, by a :class:`RowChain` whose schema has this
column, so that report counts never decode the text again (Spark's ``length`` is a byte loop in the JVM)."""

ColumnValues = pa.Array | pa.ChunkedArray | Sequence[Any]
"""One computed column: an Arrow array or a Python sequence, one value per input row."""

BatchFn = Callable[[pa.RecordBatch], Mapping[str, ColumnValues]]
"""Computes some output columns from one input batch (see the module docstring)."""


def merge_columns(batch: pa.RecordBatch, computed: Mapping[str, ColumnValues], schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` reshaped to ``schema``: ``computed`` columns win, then the batch's own columns, else nulls.

    Columns are cast to the schema's types, so a batch function may return plain Python lists.
    """
    unknown = set(computed) - set(schema.names)
    if unknown:
        raise KeyError(f"computed column(s) {sorted(unknown)} are not in the output schema {schema.names}")
    arrays = []
    for field in schema:
        if field.name in computed:
            values = computed[field.name]
            array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=field.type)
        elif field.name in batch.schema.names:
            array = batch.column(field.name)
        else:
            array = pa.nulls(batch.num_rows, field.type)
        if len(array) != batch.num_rows:
            raise ValueError(f"column {field.name!r} has {len(array)} values for {batch.num_rows} rows")
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        arrays.append(array if array.type == field.type else array.cast(field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def scatter(base: pa.Array, positions: pa.Array, values: ColumnValues) -> pa.Array:
    """``base`` with ``values[i]`` at ``positions[i]`` (the computed rows of a sub-batch), by one Arrow ``take``:
    no value becomes a Python object, which matters for wide values such as a signature of 128 integers."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values, type=base.type)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) != len(positions):
        raise ValueError(f"{len(values)} values for {len(positions)} rows")
    index = np.arange(len(base))
    index[positions.to_numpy()] = len(base) + np.arange(len(positions))
    return pa.concat_arrays([base, values.cast(base.type)]).take(pa.array(index))


@dataclass(frozen=True)
class RowChain:
    """Row-local batch functions applied in order in one pass, each to the rows no earlier one removed.

    The batch is first reshaped to ``schema`` (an annotated schema, perhaps with extra columns such as a hash), so
    ``reason`` exists, and :data:`CHARS` is filled for every row when the schema has it; a function then sees the
    sub-batch of rows whose ``reason`` is still null, and what it computes is written back at those rows. The result
    is what running the stages one after another would give, without a Spark round trip and a Parquet copy per
    stage. Picklable when the functions are.
    """

    fns: tuple[BatchFn, ...]
    schema: pa.Schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        chars = {CHARS: pc.fill_null(pc.utf8_length(batch.column("text")), 0)} if CHARS in self.schema.names else {}
        out = merge_columns(batch, chars, self.schema)
        for fn in self.fns:
            live = pc.indices_nonzero(pc.is_null(out.column("reason")))
            if len(live) == 0:
                break
            if len(live) == out.num_rows:
                out = merge_columns(out, fn(out), self.schema)
                continue
            computed = fn(out.take(live))
            out = merge_columns(
                out, {name: scatter(out.column(name), live, values) for name, values in computed.items()}, self.schema
            )
        return out


def map_batches(df: DataFrame, fn: BatchFn, schema: T.StructType) -> DataFrame:
    """Apply ``fn`` to every Arrow batch of ``df``; the result has ``schema`` (lazy, one pass, no shuffle).

    ``fn`` is pickled to the Python workers, so it must be a module-level function or a picklable object (a
    dataclass of thresholds is fine); heavy state such as a model should be loaded lazily inside the worker.
    """
    target = arrow_schema(schema)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield merge_columns(batch, fn(batch), target)

    return df.mapInArrow(run, schema)


def annotate_batches(df: DataFrame, fn: BatchFn) -> DataFrame:
    """A stage's annotated frame: the document columns of ``df`` plus ``reason``/``rule``/``duplicate_of``.

    ``doc_id`` keeps its input type (long or string), and so does ``duplicate_of``. Columns ``fn`` does not return
    pass through (document columns) or are null (annotations), so kept rows need no explicit nulls.
    """
    id_type = df.schema["doc_id"].dataType
    return map_batches(df.select(*DOC_COLUMNS), fn, annotated_schema(id_type))


def rule_name(rule: Column) -> Column:
    """The rule's name: its leading identifier (``"min_lines: 2 < 3"`` -> ``"min_lines"``, ``"minhash b=17 ..."`` ->
    ``"minhash"``), so counts group by rule and not by measured value; empty for a null rule."""
    return F.regexp_extract(F.coalesce(rule, F.lit("")), r"^([A-Za-z0-9_.\-]+)", 1)


def group_counts(annotated: DataFrame) -> list[dict[str, Any]]:
    """Documents and characters per (reason, rule name, kind, lang) of an annotated frame: one small aggregate (a
    few hundred rows at most, the only thing brought to the driver) that every count in a report derives from."""
    chars = F.col(CHARS) if CHARS in annotated.columns else F.coalesce(F.length("text"), F.lit(0))
    keys = ["reason", rule_name(F.col("rule")).alias("rule_name"), "kind", "lang"]
    rows = annotated.groupBy(*keys).agg(F.count(F.lit(1)).alias("docs"), F.sum(chars).alias("chars")).collect()
    return [{**row.asDict(), "chars": int(row["chars"] or 0)} for row in rows]


def most_frequent(counts: Sequence[Mapping[str, Any]], key: str, limit: int | None = None) -> dict[Any, int]:
    """Documents per value of ``key`` in ``counts`` (rows of :func:`group_counts`), most frequent first."""
    totals: dict[Any, int] = {}
    for row in counts:
        totals[row[key]] = totals.get(row[key], 0) + row["docs"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], "" if item[0] is None else str(item[0])))
    return dict(ranked[:limit])
