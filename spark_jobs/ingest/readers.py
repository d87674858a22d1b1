"""Executor-side readers: turn one planned read unit (a file, or a range of Parquet row groups) into documents.

Plain Python over streams and Arrow batches, unit-tested without Spark. Every row of every unit comes out as exactly
one document row; rows that cannot be documents (malformed JSON, non-UTF-8 bytes, a missing or empty text, a
binary or oversized source file) come out too, with ``reason='invalid'`` and the rule that fired, so the accounting
identity holds from the first stage on.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs import storage
from spark_jobs.documents import KIND_CODE, KIND_TEXT, REASON_INVALID, annotated_schema, arrow_schema, position_id
from spark_jobs.session import ARROW_BATCH_ROWS

ID_LONG = "long"
ID_STRING = "string"
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need from the pipeline config (small, picklable, shipped to every task)."""

    text_column: str = "text"
    id_column: str = "id"
    kind_column: str = "kind"
    id_type: str = ID_LONG
    max_file_bytes: int = 1_000_000

    def spark_id_type(self):  # -> pyspark DataType; imported lazily to keep this module light for workers
        from pyspark.sql import types as T

        return T.StringType() if self.id_type == ID_STRING else T.LongType()


@dataclass(frozen=True)
class ReadUnit:
    """One task's share of the input: a whole file, or row groups ``[rg_start, rg_end)`` of a Parquet file."""

    fmt: str  # parquet | jsonl | text | code
    uri: str
    source: str  # the stable name doc ids derive from
    root: str = ""  # code: the directory the user named (repo root), for path metadata
    rg_start: int = 0
    rg_end: int = 0
    row_offset: int = 0  # parquet: rows in the file before rg_start
    size: int = 0
    byte_start: int = 0  # jsonl: the lines that start in [byte_start, byte_end); byte_end 0 is the whole file
    byte_end: int = 0

    def to_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DocBuilder:
    """Accumulates annotated document rows column-wise and emits Arrow batches of bounded size."""

    def __init__(self, opts: ReadOptions):
        self.opts = opts
        self.schema = arrow_schema(annotated_schema(opts.spark_id_type()))
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}

    def doc_id(self, given: Any, source: str, position: int) -> Any:
        """The input id unchanged when present, else the position id; rendered in the run's id type."""
        if given is None:
            pid = position_id(source, position)
            return f"{pid & 0xFFFFFFFFFFFFFFFF:016x}" if self.opts.id_type == ID_STRING else pid
        if self.opts.id_type == ID_STRING:
            return given if isinstance(given, str) else json.dumps(given)
        return int(given)

    def add(
        self,
        *,
        doc_id: Any,
        text: str | None,
        kind: str,
        source: str,
        meta: dict[str, Any] | None = None,
        invalid: str | None = None,
    ) -> None:
        c = self.cols
        c["doc_id"].append(doc_id)
        c["text"].append(text)
        c["kind"].append(kind)
        c["source"].append(source)
        c["lang"].append(None)
        c["lang_score"].append(None)
        c["meta"].append(json.dumps(meta or {}, ensure_ascii=False, default=str))
        c["reason"].append(REASON_INVALID if invalid else None)
        c["rule"].append(invalid)
        c["duplicate_of"].append(None)

    def add_record(self, record: dict[str, Any], source: str, position: int) -> None:
        """One input record (a JSON object or a table row) as a document, or as an invalid row saying why."""
        o = self.opts
        text = record.get(o.text_column)
        kind = record.get(o.kind_column) or KIND_TEXT
        named = (o.text_column, o.id_column, o.kind_column)
        meta = {k: v for k, v in record.items() if k not in named and v is not None}
        invalid = None
        try:
            doc_id = self.doc_id(record.get(o.id_column), source, position)
        except (TypeError, ValueError):
            doc_id = self.doc_id(None, source, position)
            invalid = f"bad_id: {o.id_column}={record.get(o.id_column)!r} is not an integer"
        if o.text_column not in record:
            invalid = f"missing_text_field: no {o.text_column!r}"
        elif text is None:
            invalid = "null_text"
        elif not isinstance(text, str):
            invalid = f"text_not_string: {type(text).__name__}"
            text = json.dumps(text)
        elif not text.strip():
            invalid = "empty_text"
        if kind not in (KIND_TEXT, KIND_CODE):
            invalid = invalid or f"bad_kind: {kind!r}"
            kind = KIND_TEXT
        self.add(doc_id=doc_id, text=text, kind=kind, source=source, meta=meta, invalid=invalid)

    def __len__(self) -> int:
        return len(self.cols["doc_id"])

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_pydict(self.cols, schema=self.schema)
        self.cols = {name: [] for name in self.schema.names}
        return batch


def read_unit(unit: ReadUnit, opts: ReadOptions, batch_rows: int = ARROW_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """All documents of one unit, as annotated Arrow batches of at most ``batch_rows`` rows."""
    out = DocBuilder(opts)
    rows = {"parquet": _parquet_rows, "jsonl": _jsonl_rows, "text": _text_rows, "code": _code_rows}[unit.fmt]
    for _ in rows(unit, out):
        if len(out) >= batch_rows:
            yield out.flush()
    if len(out):
        yield out.flush()


def _parquet_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    fs, path = storage.resolve(unit.uri)
    with fs.open_input_file(path) as fh:
        pf = pq.ParquetFile(fh)
        position = unit.row_offset
        for batch in pf.iter_batches(batch_size=1024, row_groups=range(unit.rg_start, unit.rg_end)):
            for record in batch.to_pylist():
                out.add_record(record, unit.source, position)
                position += 1
                yield


def _jsonl_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """One JSON object per line; blank lines are not documents (and are not counted as input). A line's position is
    the byte offset where it starts, so its doc id is the same however the file is cut into units."""
    for position, raw in _lines(unit):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            out.add(
                doc_id=out.doc_id(None, unit.source, position),
                text=raw.decode("utf-8", "replace"),
                kind=KIND_TEXT,
                source=unit.source,
                invalid=f"not_utf8: byte {position + err.start}",
            )
            yield
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as err:
            out.add(
                doc_id=out.doc_id(None, unit.source, position),
                text=line,
                kind=KIND_TEXT,
                source=unit.source,
                invalid=f"malformed_json: line at byte {position}: {str(err)[:80]}",
            )
            yield
            continue
        out.add_record(record, unit.source, position)
        yield


def _lines(unit: ReadUnit) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of each line of the unit: the whole file, or the lines that start in its byte range.

    As Hadoop splits text: a range after the first skips the line already under way at its start (the range before
    reads it to its end), so every line is read by exactly one range.
    """
    if not unit.byte_end:
        with storage.open_input(unit.uri) as fh:
            offset = 0
            for raw in fh:
                yield offset, raw
                offset += len(raw)
        return
    fs, path = storage.resolve(unit.uri)
    with io.BufferedReader(fs.open_input_file(path), 1 << 20) as fh:
        offset = unit.byte_start
        if offset:
            fh.seek(offset - 1)
            offset += len(fh.readline()) - 1  # the end of the line under way, or just the newline before the range
        while offset < unit.byte_end:
            raw = fh.readline()
            if not raw:
                return
            yield offset, raw
            offset += len(raw)


def _text_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """A plain text file is one document (no size limit: a book is a fine document)."""
    with storage.open_input(unit.uri) as fh:
        data = fh.read()
    _add_file_doc(out, unit, data, KIND_TEXT, {})
    yield


def _code_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """A source file is one code document with repo/path metadata; binary, undecodable or huge files are invalid."""
    rel = unit.uri[len(unit.root) :].lstrip("/") if unit.root and unit.uri.startswith(unit.root) else unit.uri
    meta = {"repo": unit.root.rstrip("/").rsplit("/", 1)[-1], "path": rel}
    if unit.size > out.opts.max_file_bytes:
        out.add(
            doc_id=out.doc_id(None, unit.source, 0),
            text=None,
            kind=KIND_CODE,
            source=unit.source,
            meta=meta,
            invalid=f"file_too_large: {unit.size} > {out.opts.max_file_bytes} bytes",
        )
    else:
        with storage.open_input(unit.uri) as fh:
            data = fh.read(out.opts.max_file_bytes + 1)
        _add_file_doc(out, unit, data, KIND_CODE, meta)
    yield


def _add_file_doc(out: DocBuilder, unit: ReadUnit, data: bytes, kind: str, meta: dict[str, Any]) -> None:
    """A whole file as one document; binary (NUL bytes), non-UTF-8 or blank files become invalid rows."""
    invalid = None
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        text, invalid = None, "binary_file"
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            text, invalid = data.decode("utf-8", "replace"), f"not_utf8: byte {err.start}"
        if invalid is None and not text.strip():
            invalid = "empty_text"
    out.add(
        doc_id=out.doc_id(None, unit.source, 0), text=text, kind=kind, source=unit.source, meta=meta, invalid=invalid
    )
