"""Executor-side readers: turn one planned read unit (a file, a byte range of one, or rows of Parquet row groups) into
documents.

Plain Python over streams and Arrow batches, unit-tested without Spark. Every row of every unit comes out as exactly
one document row; rows that cannot be documents (malformed JSON, non-UTF-8 bytes, lone surrogates, a missing, empty
or non-text text, an id that is not an integer or string, a binary file, a document over the size limit) come out
too, with ``reason='invalid'`` and the rule that fired (``rule: detail``), so the accounting identity holds from the
first stage on.

No reader holds more than about ``max_doc_bytes`` of one document: JSONL lines are read with bounded reads (an
oversized line is skipped to its newline, counted, never kept), files with a bounded read, and oversized Parquet or
dataset values are measured on the Arrow column and never become Python strings. A file that breaks while it is
read (a truncated gzip stream, a corrupt Parquet page, a file gone since planning) ends its unit with one row of
rule ``unreadable_file`` (:data:`UNREADABLE`): the pipeline stops on it with one line naming the file, after the
pass, rather than as a failed Spark task (which a cluster would retry, then report with a traceback).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spark_jobs import storage
from spark_jobs.documents import KIND_CODE, KIND_TEXT, REASON_INVALID, annotated_schema, arrow_schema, position_id
from spark_jobs.session import ARROW_BATCH_ROWS

ID_LONG = "long"
ID_STRING = "string"
BINARY_SNIFF_BYTES = 8192
MAX_DOC_BYTES = 32 << 20
"""Default document size limit: far above any real document (a long book is a few MB), far below what hurts a worker."""
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str from json.loads, only a lone one is left
SKIP_CHUNK = 1 << 20
READ_BUFFER_BYTES = 1 << 20
"""Parquet is read through a buffer of this size, page by page: by default pyarrow loads a whole column chunk, so a
reader of a file written as one big row group held all of its compressed text at once."""
BATCH_TEXT_CHARS = 64 << 20
"""A batch is handed on once its texts reach this many characters, however few rows it has: large documents must not
add up to gigabytes in one batch (nor past the 2 GiB an Arrow string column holds)."""
UNREADABLE = "unreadable_file"
KINDS_OR_EMPTY = pa.array([KIND_TEXT, KIND_CODE, ""])


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need from the pipeline config (small, picklable, shipped to every task)."""

    text_column: str = "text"
    id_column: str = "id"
    kind_column: str = "kind"
    id_type: str = ID_LONG
    max_file_bytes: int = 1_000_000
    max_doc_bytes: int = MAX_DOC_BYTES

    def file_limit(self, fmt: str) -> tuple[int, str]:
        """The byte limit of a whole-file document and the flag that sets it (code files: the smaller of both)."""
        if fmt == "code" and self.max_file_bytes < self.max_doc_bytes:
            return self.max_file_bytes, "--max-file-bytes"
        return self.max_doc_bytes, "--max-doc-bytes"

    def spark_id_type(self):  # -> pyspark DataType; imported lazily to keep this module light for workers
        from pyspark.sql import types as T

        return T.StringType() if self.id_type == ID_STRING else T.LongType()


@dataclass(frozen=True)
class ReadUnit:
    """One task's share of the input: a whole file, a byte range of a JSONL file, or rows of row groups
    ``[rg_start, rg_end)`` of a Parquet file."""

    fmt: str  # parquet | jsonl | text | code
    uri: str
    source: str  # the stable name doc ids derive from
    root: str = ""  # code: the directory the user named (repo root), for path metadata
    rg_start: int = 0
    rg_end: int = 0
    row_offset: int = 0  # parquet: rows in the file before the unit's first row
    row_start: int = 0  # parquet: the unit's rows [row_start, row_end), counted from rg_start's first row
    row_end: int = 0  # 0: to the end of rg_end - 1
    size: int = 0  # bytes: the file's; a Parquet unit's, uncompressed
    byte_start: int = 0  # jsonl: the lines that start in [byte_start, byte_end); byte_end 0 is the whole file
    byte_end: int = 0


class DocBuilder:
    """Accumulates annotated document rows column-wise and emits Arrow batches of bounded size."""

    def __init__(self, opts: ReadOptions):
        self.opts = opts
        self.schema = arrow_schema(annotated_schema(opts.spark_id_type()))
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.ready: list[pa.RecordBatch] = []  # rows built column-wise (:func:`_ordinary_documents`), in order
        self.ready_rows = 0
        self.text_chars = 0

    def full(self, batch_rows: int) -> bool:
        """Whether the rows gathered make a batch: ``batch_rows`` of them, or :data:`BATCH_TEXT_CHARS` of text."""
        return len(self) >= batch_rows or self.text_chars >= BATCH_TEXT_CHARS

    def doc_id(self, given: Any, source: str, position: int) -> Any:
        """The input id unchanged when present, else the position id; rendered in the run's id type.

        ``ValueError`` (saying why) for an id that is no integer or string: a float that is not integral or not
        finite, an integer outside the 64-bit range, a boolean, a list. An integral float (``3.0``) is the integer.
        """
        if given is None:
            pid = position_id(source, position)
            return f"{pid & 0xFFFFFFFFFFFFFFFF:016x}" if self.opts.id_type == ID_STRING else pid
        kind = type(given)  # exact types: a bool is an int to isinstance
        if kind is float:
            if not math.isfinite(given):
                raise ValueError("is not finite")
            if not given.is_integer():
                raise ValueError("is not an integer")
            given, kind = int(given), int
        elif kind is not int and kind is not str:
            raise ValueError(f"is a {kind.__name__}, not an integer or string")
        as_string = self.opts.id_type == ID_STRING
        if kind is str:
            if as_string:
                return given
            try:
                given = int(given)
            except ValueError:
                raise ValueError("is not an integer") from None
        if not INT64_MIN <= given <= INT64_MAX:
            raise ValueError("is outside the 64-bit integer range")
        return str(given) if as_string else given

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
        self.text_chars += len(text) if text else 0
        c["kind"].append(kind)
        c["source"].append(source)
        c["lang"].append(None)
        c["lang_score"].append(None)
        c["meta"].append(json.dumps(meta or {}, ensure_ascii=False, default=str))
        c["reason"].append(REASON_INVALID if invalid else None)
        c["rule"].append(invalid)
        c["duplicate_of"].append(None)

    def add_record(self, record: dict[str, Any], source: str, position: int, invalid: str | None = None) -> None:
        """One input record (a JSON object or a table row) as a document, or as an invalid row saying why.

        ``invalid``: a problem the reader found before (an oversized value it left out, an undecodable value); it
        wins over what this record's fields show."""
        o = self.opts
        text = record.get(o.text_column)
        kind = record.get(o.kind_column) or KIND_TEXT
        named = (o.text_column, o.id_column, o.kind_column)
        meta = {k: v for k, v in record.items() if k not in named and v is not None}
        problem = None
        try:
            doc_id = self.doc_id(record.get(o.id_column), source, position)
        except ValueError as err:
            doc_id = self.doc_id(None, source, position)
            problem = f"bad_id: {o.id_column}={_excerpt(record.get(o.id_column))} {err}"
        if isinstance(text, bytes):  # a binary column (older Parquet writers store strings so)
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as err:
                text, problem = text.decode("utf-8", "replace"), f"not_utf8: byte {err.start}"
        if o.text_column not in record:
            problem = f"missing_text_field: no {o.text_column!r}"
        elif text is None:
            problem = "null_text"
        elif not isinstance(text, str):
            problem = f"text_not_string: {type(text).__name__}"
            text = json.dumps(text, default=str)
        elif not text.strip():  # (a value that failed to decode is never blank: it holds U+FFFD)
            problem = "empty_text"
        if kind not in (KIND_TEXT, KIND_CODE):
            problem = problem or f"bad_kind: {_excerpt(kind)}"
            kind = KIND_TEXT
        self.add(doc_id=doc_id, text=text, kind=kind, source=source, meta=meta, invalid=invalid or problem)

    def add_records(self, batch: pa.RecordBatch, source: str, positions: Iterator[int]) -> None:
        """Every row of an Arrow batch (a Parquet row group's, a dataset's) as :meth:`add_record`, position by
        position: text values over ``max_doc_bytes`` are measured on the column and left out, and a text column
        holding invalid UTF-8 is decoded value by value (``not_utf8``). A batch of ordinary documents only (the
        usual case) is built on its columns instead, with the same result (:func:`_ordinary_documents`)."""
        ready = _ordinary_documents(batch, self.opts, self.schema, source, positions)
        if ready is not None:
            if len(self.cols["doc_id"]):
                self.ready.append(self._rows_batch())
            self.ready.append(ready)
            self.ready_rows = sum(piece.num_rows for piece in self.ready)
            self.text_chars += pc.sum(pc.utf8_length(ready.column("text"))).as_py() or 0
            return
        for record, oversized in _batch_records(batch, self.opts):
            self.add_record(record, source, next(positions), oversized)

    def __len__(self) -> int:
        return self.ready_rows + len(self.cols["doc_id"])

    def flush(self) -> pa.RecordBatch:
        pieces = [*self.ready, self._rows_batch()] if len(self.cols["doc_id"]) or not self.ready else self.ready
        self.ready, self.ready_rows, self.text_chars = [], 0, 0
        return pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)

    def _rows_batch(self) -> pa.RecordBatch:
        """The rows added one by one, as a batch (and none left)."""
        try:
            batch = pa.RecordBatch.from_pydict(self.cols, schema=self.schema)
        except UnicodeEncodeError:  # checked here, not per record: clean input pays nothing
            self._remove_lone_surrogates()
            batch = pa.RecordBatch.from_pydict(self.cols, schema=self.schema)
        self.cols = {name: [] for name in self.schema.names}
        return batch

    def _remove_lone_surrogates(self) -> None:
        """Rows holding a lone surrogate become ``bad_unicode`` rows, every lone surrogate replaced by U+FFFD.

        Half of a UTF-16 pair, which UTF-8 cannot encode: JSON escapes it (``"\\ud83d"``) and ``json.loads`` takes
        it, so a scraped record cut inside an emoji carries one. Arrow refuses to encode it; the row is kept, its
        text and metadata readable, and removed."""
        c = self.cols
        for row in range(len(self)):
            found = [name for name in ("text", "meta", "doc_id") if _lone_surrogate(c[name][row])]
            for name in found:
                c[name][row] = _SURROGATE.sub("\ufffd", c[name][row])
            if found:
                c["reason"][row], c["rule"][row] = REASON_INVALID, f"bad_unicode: lone surrogate in {found[0]}"


def _lone_surrogate(value: Any) -> bool:
    return isinstance(value, str) and _SURROGATE.search(value) is not None


def _excerpt(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def too_large(size: int, limit: int, flag: str = "--max-doc-bytes", what: str = "") -> str:
    """The rule of a document over a size limit (``what`` qualifies the size: "line of ", "at least ")."""
    return f"too_large: {what}{size} bytes, over {flag} {limit}"


def _ordinary_documents(
    batch: pa.RecordBatch, opts: ReadOptions, schema: pa.Schema, source: str, positions: Iterator[int]
) -> pa.RecordBatch | None:
    """The batch as annotated documents, built on its columns, when every row is an ordinary document: a text that
    is a valid, non-blank UTF-8 string within ``max_doc_bytes``, a kind that is missing, empty, ``text`` or ``code``,
    and an integer id (or no id column) in a run of integer ids. Else None, and ``positions`` untouched: the caller
    goes row by row (:meth:`DocBuilder.add_record`), which says what is wrong with each row. Either way the rows are
    the same; this way the texts never become Python strings (converting them out and back cost more CPU than
    reading the Parquet file)."""
    names = batch.schema.names
    if not batch.num_rows or opts.text_column not in names or opts.id_type != ID_LONG:
        return None
    text = batch.column(opts.text_column)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)) or text.null_count:
        return None
    try:
        text.validate(full=True)  # UTF-8, which Arrow does not check when it reads a file
    except pa.ArrowInvalid:
        return None
    sizes = pc.binary_length(text)
    longest = pc.max(sizes).as_py() or 0
    blank = pc.or_(pc.equal(sizes, 0), pc.utf8_is_space(text))  # what str.strip() empties
    if longest > opts.max_doc_bytes or pc.any(blank).as_py():
        return None
    kind = pa.nulls(batch.num_rows, pa.string())
    if opts.kind_column in names:
        kind = batch.column(opts.kind_column)
        if not pa.types.is_string(kind.type):
            return None
        if not pc.all(pc.is_in(kind.drop_null(), KINDS_OR_EMPTY), min_count=0).as_py():
            return None
    ids = None
    if opts.id_column in names:
        ids = batch.column(opts.id_column)
        if not pa.types.is_integer(ids.type) or ids.null_count:
            return None
        if pa.types.is_unsigned_integer(ids.type) and (pc.max(ids).as_py() or 0) > INT64_MAX:
            return None
    others = [name for name in names if name not in (opts.text_column, opts.id_column, opts.kind_column)]
    try:
        rows = batch.select(others).to_pylist() if others else None
    except UnicodeDecodeError:  # another string column holding invalid UTF-8: the row path flags it
        return None
    taken = [next(positions) for _ in range(batch.num_rows)]
    if ids is None:
        ids = pa.array([position_id(source, position) for position in taken], pa.int64())
    meta = (
        [json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False, default=str) for row in rows]
        if rows is not None
        else ["{}"] * batch.num_rows
    )
    none = pa.nulls(batch.num_rows)
    columns = {
        "doc_id": ids.cast(pa.int64()),
        "text": text.cast(schema.field("text").type),
        "kind": pc.if_else(pc.equal(pc.fill_null(kind, ""), ""), KIND_TEXT, kind),
        "source": pa.array([source] * batch.num_rows, pa.string()),
        "meta": pa.array(meta, pa.string()),
    }
    return pa.RecordBatch.from_arrays(
        [columns[f.name] if f.name in columns else none.cast(f.type) for f in schema], schema=schema
    )


def _batch_records(batch: pa.RecordBatch, opts: ReadOptions) -> Iterator[tuple[dict[str, Any], str | None]]:
    """The batch's rows as Python records, each with a rule when the reader found a problem: ``too_large`` when its
    text is over the limit (then left out: measured on the Arrow column, it never becomes a Python string),
    ``not_utf8`` when another string column's value does not decode."""
    flags: list[str | None] = [None] * batch.num_rows
    index = batch.schema.get_field_index(opts.text_column)
    if index >= 0 and _is_text_like(batch.schema.field(index).type):
        text = batch.column(index)
        lengths = pc.binary_length(text)
        big = pc.greater(lengths, opts.max_doc_bytes)
        if pc.any(big).as_py():
            flags = [
                too_large(n, opts.max_doc_bytes) if n > opts.max_doc_bytes else None
                for n in lengths.fill_null(0).to_pylist()
            ]
            text = pc.if_else(big, pa.scalar(None, text.type), text)
            batch = batch.set_column(index, batch.schema.field(index), text)
    try:
        records = batch.to_pylist()
    except UnicodeDecodeError:  # a string column holding invalid UTF-8 (Arrow does not check it on read)
        records = _decoded_records(batch, opts.text_column, flags)
    yield from zip(records, flags, strict=True)


def _decoded_records(batch: pa.RecordBatch, text_column: str, flags: list[str | None]) -> list[dict[str, Any]]:
    """The rows of a batch whose string columns hold invalid UTF-8, decoding value by value: the text stays bytes
    (:meth:`DocBuilder.add_record` decodes it and says where it failed); another column's undecodable value gets
    U+FFFD and its row a ``not_utf8`` rule in ``flags`` naming the column."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            columns.append(column.to_pylist())
            continue
        raw = column.view(pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary()).to_pylist()
        if field.name == text_column:
            columns.append(raw)
            continue
        values = []
        for row, value in enumerate(raw):
            try:
                values.append(value if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(value.decode("utf-8", "replace"))
                flags[row] = flags[row] or f"not_utf8: in {field.name!r}"
        columns.append(values)
    return [dict(zip(batch.schema.names, row, strict=True)) for row in zip(*columns, strict=True)]


def _is_text_like(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
    )


def read_unit(unit: ReadUnit, opts: ReadOptions, batch_rows: int = ARROW_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """All documents of one unit, as annotated Arrow batches of at most ``batch_rows`` rows (fewer when their text
    is large, see :meth:`DocBuilder.full`); when the file breaks on the way, what was read and then one
    :data:`UNREADABLE` row saying why."""
    out = DocBuilder(opts)
    rows = {"parquet": _parquet_rows, "jsonl": _jsonl_rows, "text": _text_rows, "code": _code_rows}[unit.fmt]
    try:
        for _ in rows(unit, out):
            if out.full(batch_rows):
                yield out.flush()
    except (OSError, pa.ArrowException) as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        position = -1 - unit.byte_start - unit.row_offset  # before every row of the unit: an id no row has
        doc_id = out.doc_id(None, unit.source, position)
        out.add(doc_id=doc_id, text=None, kind=KIND_TEXT, source=unit.source, invalid=f"{UNREADABLE}: {reason}")
    if len(out):
        yield out.flush()


def _parquet_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """The unit's rows of its row groups, each group read in batches of as many rows as make about
    :data:`BATCH_TEXT_CHARS` of text by the row group's own statistics (the text column's uncompressed size), at most
    :data:`ARROW_BATCH_ROWS`.

    A row slice of a row group (a large group cut into several units) reads the group from its start, since Parquet
    cannot decode a page from its middle: batches before ``row_start`` are decoded and dropped, never made rows, and
    the read stops at the batch holding ``row_end``."""
    fs, path = storage.resolve(unit.uri)
    positions = itertools.count(unit.row_offset)
    end = unit.row_end or math.inf
    with fs.open_input_file(path) as fh:
        # Pages streamed, not whole column chunks: pyarrow pre-buffers every column chunk of a row group it reads by
        # default, hundreds of MB held for a large row group however few of its rows the unit takes.
        pf = pq.ParquetFile(fh, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
        meta = pf.metadata
        leaves = [meta.schema.column(i).path for i in range(meta.num_columns)]
        text = leaves.index(out.opts.text_column) if out.opts.text_column in leaves else None
        at = 0  # rows of the unit's row groups passed, counted from rg_start's first row
        for group in range(unit.rg_start, unit.rg_end):
            rows = ARROW_BATCH_ROWS
            if text is not None and meta.row_group(group).num_rows:
                per_row = meta.row_group(group).column(text).total_uncompressed_size / meta.row_group(group).num_rows
                rows = max(1, min(rows, int(BATCH_TEXT_CHARS / max(per_row, 1.0))))
            for batch in pf.iter_batches(batch_size=rows, row_groups=[group]):
                first, at = at, at + batch.num_rows
                if at <= unit.row_start:
                    continue
                if first < unit.row_start or at > end:
                    batch = batch.slice(max(0, unit.row_start - first), min(at, end) - max(first, unit.row_start))
                out.add_records(batch, unit.source, positions)
                yield
                if at >= end:
                    return


def _jsonl_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """One JSON object per line; blank lines are not documents (and are not counted as input). A line's position is
    the byte offset where it starts, so its doc id is the same however the file is cut into units."""
    limit = out.opts.max_doc_bytes
    for position, raw, size in _lines(unit, limit):
        if raw is None:
            out.add(
                doc_id=out.doc_id(None, unit.source, position),
                text=None,
                kind=KIND_TEXT,
                source=unit.source,
                invalid=too_large(size, limit, what="line of "),
            )
            yield
            continue
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
        except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the parser's stack
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


def _lines(unit: ReadUnit, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(byte offset, line, length) of each line of the unit: the whole file, or the lines that start in its byte
    range. A line over ``limit`` bytes (without its newline) comes as None: it is skipped to its end in bounded
    reads, never held.

    As Hadoop splits text: a range after the first skips the line already under way at its start (the range before
    reads it to its end), so every line is read by exactly one range.
    """
    if not unit.byte_end:
        with storage.open_input(unit.uri) as fh:
            yield from _bounded_lines(fh, 0, None, limit)
        return
    fs, path = storage.resolve(unit.uri)
    with io.BufferedReader(fs.open_input_file(path), 1 << 20) as fh:
        offset = unit.byte_start
        if offset:
            fh.seek(offset - 1)
            offset += _skip_line(fh, b"")[0] - 1  # the end of the line under way, or just the newline before the range
        yield from _bounded_lines(fh, offset, unit.byte_end, limit)


def _bounded_lines(fh: IO[bytes], offset: int, end: int | None, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    while end is None or offset < end:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        size = len(raw)
        if size > limit and not raw.endswith(b"\n"):
            size, ended = _skip_line(fh, raw)
            yield offset, None, size - ended
        else:
            yield offset, raw, size
        offset += size


def _skip_line(fh: IO[bytes], head: bytes) -> tuple[int, bool]:
    """Read on to the end of the line that began with ``head``, in bounded chunks: its bytes in all (newline
    included) and whether a newline ended it."""
    size, chunk = len(head), head
    while not chunk.endswith(b"\n"):
        chunk = fh.readline(SKIP_CHUNK)
        if not chunk:
            return size, False
        size += len(chunk)
    return size, True


def _text_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """A plain text file is one document (a book is a fine document; one over ``max_doc_bytes`` is not)."""
    _add_file_doc(out, unit, KIND_TEXT, {})
    yield


def _code_rows(unit: ReadUnit, out: DocBuilder) -> Iterator[None]:
    """A source file is one code document with repo/path metadata; binary, undecodable or huge files are invalid."""
    rel = unit.uri[len(unit.root) :].lstrip("/") if unit.root and unit.uri.startswith(unit.root) else unit.uri
    _add_file_doc(out, unit, KIND_CODE, {"repo": unit.root.rstrip("/").rsplit("/", 1)[-1], "path": rel})
    yield


def _add_file_doc(out: DocBuilder, unit: ReadUnit, kind: str, meta: dict[str, Any]) -> None:
    """A whole file as one document; binary (NUL bytes), non-UTF-8, blank or oversized files become invalid rows.

    At most the limit (plus one byte) is read: a file known larger is not opened, and a gzip stream is inflated no
    further than that, whatever it would inflate to."""
    limit, flag = out.opts.file_limit(unit.fmt)
    compressed = unit.uri.endswith(".gz")
    text, invalid = None, None
    if not compressed and unit.size > limit:
        invalid = too_large(unit.size, limit, flag)
    else:
        with storage.open_input(unit.uri) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            invalid = too_large(len(data), limit, flag, what="at least " if compressed else "")
        elif b"\x00" in data[:BINARY_SNIFF_BYTES]:
            invalid = "binary_file"
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
