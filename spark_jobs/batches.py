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

import ctypes
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
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


MEMO_ROWS = 400_000
MEMO_BYTES = 96 << 20
"""Bounds of a Python worker's memory of outputs (:class:`RowChain`): documents remembered, and bytes of their
outputs. Past either, the worker stops adding and still serves what it remembers."""

IDENTITY_COLUMNS = ("doc_id", "source", "meta")
"""Columns a chain's functions never read: copies of a document that differ only in these get the same outputs."""


KEY_COLUMNS = ("_key_digest", "_key_kind", "_key_lang", "_key_lang_score")
"""The parts of a :func:`content_keys` key, as the columns of a shared memory file."""


class _Memo:
    """One chain's outputs for the documents a worker process has computed, by content key; shared, where
    ``directory`` is set, with the other workers of its executor (each writes what it computes there, and takes in what
    the others wrote before it looks up a batch)."""

    def __init__(self, tag: str, directory: str | None = None) -> None:
        self.tag = tag
        self.where: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.batches: list[pa.RecordBatch] = []
        self.bytes = 0
        self.directory = directory
        self.writer = uuid.uuid4().hex  # this process's files in the directory
        self.files: set[str] = set()  # the files it has written or taken in

    @property
    def full(self) -> bool:
        return len(self.where) >= MEMO_ROWS or self.bytes >= MEMO_BYTES

    def remember(self, keys: list[tuple[Any, ...]], outputs: pa.RecordBatch) -> None:
        """Keep the outputs of newly computed documents (row i is ``keys[i]``'s), and write them for the others."""
        if self.full or not keys:
            return
        self._add(keys, outputs)
        if self.directory is None:
            return
        table = pa.Table.from_batches([outputs])
        for name, values in zip(KEY_COLUMNS, zip(*keys, strict=True), strict=True):
            table = table.append_column(name, pa.array(values))
        name = f"{self.writer}-{len(self.files)}.arrow"
        partial = os.path.join(self.directory, f".{name}")
        try:
            os.makedirs(self.directory, exist_ok=True)
            with pa.OSFile(partial, "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                out.write_table(table)
            os.replace(partial, os.path.join(self.directory, name))  # others never see a half-written file
        except OSError:  # a full or read-only disk: the memory goes on unshared, the outputs are the same
            self.directory = None
            return
        self.files.add(name)

    def take_in(self) -> None:
        """Add what the other workers wrote since the last look, until the memory is full."""
        if self.directory is None or not os.path.isdir(self.directory):
            return
        for name in sorted(os.listdir(self.directory)):
            if self.full:
                return
            if name.startswith(".") or name in self.files:
                continue
            self.files.add(name)
            table = pa.ipc.open_file(os.path.join(self.directory, name)).read_all()
            keys = list(zip(*(table.column(key).to_pylist() for key in KEY_COLUMNS), strict=True))
            self._add(keys, table.drop_columns(list(KEY_COLUMNS)).combine_chunks().to_batches()[0])

    def _add(self, keys: list[tuple[Any, ...]], outputs: pa.RecordBatch) -> None:
        self.batches.append(outputs)
        self.bytes += outputs.nbytes
        for row, key in enumerate(keys):
            self.where.setdefault(key, (len(self.batches) - 1, row))


_memo: _Memo | None = None


def _memo_for(tag: str) -> _Memo:
    """The process's memory for chains tagged ``tag``; one at a time (a new tag, as in another run, drops the old)."""
    global _memo
    if _memo is None or _memo.tag != tag:
        _memo = _Memo(tag, shared_directory(tag))
    return _memo


def shared_directory(tag: str) -> str | None:
    """Where the Python workers of one executor share a chain's memory: a folder in the executor's directory for the
    files of the application, beside those of ``addFile`` and with their lifetime (a local run's goes when its JVM
    exits; a cluster worker's, when the worker cleans up applications); none outside a Spark task."""
    from pyspark import SparkFiles, TaskContext

    if TaskContext.get() is None:
        return None
    return os.path.join(SparkFiles.getRootDirectory(), f"memo-{xxhash.xxh64_hexdigest(tag.encode())}")


def content_keys(batch: pa.RecordBatch, rows: np.ndarray) -> list[tuple[Any, ...]]:
    """What a chain's outputs for each row of ``rows`` depend on: the xxh3-128 digest of its text (UTF-8 bytes, read
    from the Arrow buffer), its kind, and the language columns it came with."""
    text = batch.column("text")
    wide = pa.types.is_large_string(text.type) or pa.types.is_large_binary(text.type)
    bounds = np.frombuffer(text.buffers()[1], dtype=np.int64 if wide else np.int32)[text.offset :]
    data = memoryview(text.buffers()[2] or b"")
    valid = text.is_valid().to_numpy(zero_copy_only=False)
    digests = [xxhash.xxh3_128_digest(data[bounds[i] : bounds[i + 1]]) if valid[i] else None for i in rows.tolist()]
    index = pa.array(rows)
    rest = [batch.column(name).take(index).to_pylist() for name in ("kind", "lang", "lang_score")]
    return list(zip(digests, *rest, strict=True))


@dataclass(frozen=True)
class RowChain:
    """Row-local batch functions applied in order in one pass, each to the rows no earlier one removed.

    The batch is first reshaped to ``schema`` (an annotated schema, perhaps with extra columns such as a hash), so
    ``reason`` exists, and :data:`CHARS` is filled for every row when the schema has it; a function then sees the
    sub-batch of rows whose ``reason`` is still null, and what it computes is written back at those rows. The result
    is what running the stages one after another would give, without a Spark round trip and a Parquet copy per
    stage. Picklable when the functions are.

    With a ``memo`` tag, each worker process remembers what the functions gave each document (up to
    :data:`MEMO_ROWS` documents and :data:`MEMO_BYTES`), keyed by :func:`content_keys`, and gives an exact copy of a
    document (another id, source or meta) those outputs without running the functions again: corpora repeat
    documents (mirrors, licences, boilerplate pages), and exact dedup removes the copies only later, after every
    row stage has judged each one. In a Spark task the workers of an executor share their memories through files
    (:func:`shared_directory`): a copy that another worker judged first is not judged again either, wherever the
    copies fall among the tasks. This needs functions that read only a row's text, kind and language columns
    (the pipeline's row stages and hashes do) and that do not rewrite the text (the pipeline passes no tag then).
    The outputs are the same either way; the tag names the functions and their options, so a worker never serves
    one run's outputs to another.
    """

    fns: tuple[BatchFn, ...]
    schema: pa.Schema
    memo: str = ""

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        chars = {CHARS: pc.fill_null(pc.utf8_length(batch.column("text")), 0)} if CHARS in self.schema.names else {}
        out = merge_columns(batch, chars, self.schema)
        return self._remembered(out) if self.memo else self._apply(out)

    def _apply(self, out: pa.RecordBatch) -> pa.RecordBatch:
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

    def _remembered(self, out: pa.RecordBatch) -> pa.RecordBatch:
        """:meth:`_apply` on the first copy of each document this process has not seen; the outputs of the others
        taken from the memory (or from their first copy in this batch)."""
        live = np.flatnonzero(pc.is_null(out.column("reason")).to_numpy(zero_copy_only=False))
        if not len(live):
            return out
        memo = _memo_for(self.memo)
        memo.take_in()
        outputs = [name for name in self.schema.names if name not in (*IDENTITY_COLUMNS, "text", "kind")]
        compute: list[int] = []
        first: dict[tuple[Any, ...], int] = {}
        remembered: dict[int, list[tuple[int, int]]] = {}
        index = np.empty(len(live), dtype=np.int64)
        for j, key in enumerate(content_keys(out, live)):
            if key in memo.where:
                stored, row = memo.where[key]
                remembered.setdefault(stored, []).append((j, row))
            elif key in first:
                index[j] = first[key]
            else:
                index[j] = first[key] = len(compute)
                compute.append(int(live[j]))
        if len(compute) == out.num_rows:
            computed = self._apply(out)
        else:
            computed = self._apply(out.take(pa.array(compute, type=pa.int64())))
        pieces, offset = [computed.select(outputs)], len(compute)
        for stored, hits in remembered.items():
            pieces.append(memo.batches[stored].take(pa.array([row for _, row in hits], type=pa.int64())))
            index[[j for j, _ in hits]] = offset + np.arange(len(hits))
            offset += len(hits)
        memo.remember(list(first), pieces[0])  # in first-seen order, as computed's rows
        if len(compute) == out.num_rows:
            return computed
        values = pa.Table.from_batches(pieces).combine_chunks().take(pa.array(index))
        positions = pa.array(live)
        return merge_columns(
            out, {name: scatter(out.column(name), positions, values.column(name)) for name in outputs}, self.schema
        )


def release_memory() -> None:
    """Hand the memory a finished task freed back to the system: Arrow's allocator and glibc's keep freed pages for
    reuse, so a reused Python worker would stay as large as its largest task so far and start the next stage (pack's
    tokenizer) on top of it."""
    pa.default_memory_pool().release_unused()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


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


def size_counts(groups: DataFrame) -> dict[int, int]:
    """Number of groups of each exact ``size`` (a column of ``groups``): one job, a few hundred distinct sizes reach
    the driver."""
    return {int(row[0]): int(row[1]) for row in groups.groupBy("size").count().collect()}


def most_frequent(counts: Sequence[Mapping[str, Any]], key: str, limit: int | None = None) -> dict[Any, int]:
    """Documents per value of ``key`` in ``counts`` (rows of :func:`group_counts`), most frequent first."""
    totals: dict[Any, int] = {}
    for row in counts:
        totals[row[key]] = totals.get(row[key], 0) + row["docs"]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], "" if item[0] is None else str(item[0])))
    return dict(ranked[:limit])
