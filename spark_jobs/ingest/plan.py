"""Driver-side planning: list the input files and cut them into read units. Touches metadata only, never data.

Planning lists every file's smallest whole pieces: a Parquet row group (rows and uncompressed bytes from the
footer), a JSONL, text or source file. :func:`cut` then makes the run's read units once the cluster's parallelism is
known: a few small row groups together, a large row group in row slices, an uncompressed JSONL file in byte ranges,
sized by the whole input and the parallelism, so one large file feeds many tasks however it was written. Gzipped
files (gzip is not splittable), text files and source files are one unit each. The doc id type is decided here,
once, for the whole run: string when any source carries string ids, long otherwise.

Under an input directory, data files (Parquet, JSONL, text) in or under a name starting with ``_`` or ``.`` are not
input, as Spark and Hadoop have it: earlier outputs' markers and summaries, a fetcher's ``_archives``. Source files
are skipped only under a ``.`` name (``.git``, ``.venv``): ``__init__.py`` and ``_internal/`` are code.

What can be told from metadata and the first bytes fails here, naming the file: a Parquet footer that does not
parse, a missing text column or one that holds no text (a timestamp, a struct, a list), a JSONL file whose first
records have no text field, a ``.gz`` file that is no gzip stream, an output directory inside an input directory or
one that cannot be written.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from spark_jobs import storage
from spark_jobs.ingest.readers import ID_LONG, ID_STRING, ReadUnit

PARQUET_EXT = (".parquet", ".parq")
JSONL_EXT = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
TEXT_EXT = (".txt", ".txt.gz", ".md")
ROW_GROUPS_PER_UNIT = 4
"""Row groups one unit reads at most, however small: a small file of many row groups still spreads over tasks."""
MAX_UNIT_BYTES = 64 << 20
"""Bytes of one read unit at most (uncompressed JSONL, or Parquet data uncompressed): a large input feeds many tasks
(memory is one batch either way)."""
MIN_UNIT_BYTES = 4 << 20
"""Bytes of one read unit at least, however many tasks there are: a unit costs its task a file open and a short Arrow
batch at its end, and a Parquet row slice the decoding of its row group from the start to the slice's end."""
MAX_ROW_GROUP_SLICES = 16
"""Row slices of one Parquet row group at most. Parquet decodes a row group from its start, so slice ``k`` of ``n``
decodes ``(k + 1) / n`` of it: ``n`` slices decode the row group ``(n + 1) / 2`` times over in all."""


class InputError(Exception):
    """Input the pipeline cannot read at all; its message is the one line the user sees."""


@dataclass
class Plan:
    units: list[ReadUnit] = field(default_factory=list)
    id_type: str = ID_LONG
    skipped: Counter = field(default_factory=Counter)  # files in input dirs that no reader takes, by extension
    files: list[tuple[str, int, int | None]] = field(default_factory=list)
    """Every file found, read or skipped: (URI, size, modification time in ns), the inputs' fingerprint."""


def classify(path: str, code_exts: tuple[str, ...]) -> str | None:
    low = path.lower()
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith(JSONL_EXT):
        return "jsonl"
    if low.endswith(TEXT_EXT):
        return "text"
    if low.endswith(code_exts):
        return "code"
    return None


def plan_inputs(inputs: list[str], code_extensions: str, id_column: str, text_column: str) -> Plan:
    """The pieces of every file-based source, in input order, for :func:`cut` (``hf://`` sources are read by their
    own data source)."""
    code_exts = tuple(e if e.startswith(".") else "." + e for e in code_extensions.split(",") if e)
    plan = Plan()
    id_kinds: set[str] = set()
    for src in inputs:
        fs, path = storage.resolve(src)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"input not found: {src}")
        if info.type == pafs.FileType.Directory:
            files = [f for f in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if f.is_file]
            root = path
        else:
            files, root = [info], os.path.dirname(path)
        for f in sorted(files, key=lambda f: f.path):
            fmt = classify(f.path, code_exts)
            if info.type == pafs.FileType.Directory and _hidden(f.path[len(path) :], fmt):
                continue
            plan.files.append((storage.to_uri(fs, f.path), f.size, f.mtime_ns))
            if fmt is None:
                if info.type != pafs.FileType.Directory:
                    raise InputError(f"unknown input format (not Parquet, JSONL, text or {code_extensions}): {src}")
                plan.skipped[os.path.splitext(f.path)[1] or "(none)"] += 1
                continue
            uri = storage.to_uri(fs, f.path)
            if fmt == "parquet":
                units, kind = _parquet_units(fs, f.path, uri, id_column, text_column)
                plan.units += units
            else:
                plan.units.append(ReadUnit(fmt=fmt, uri=uri, source=uri, root=storage.to_uri(fs, root), size=f.size))
                kind = _sniff_jsonl(fs, f.path, id_column, text_column) if fmt == "jsonl" else None
                if fmt != "jsonl" and f.path.endswith(".gz"):
                    _check_gzip(fs, f.path)
            if kind:
                id_kinds.add(kind)
    plan.id_type = ID_STRING if ID_STRING in id_kinds else ID_LONG
    return plan


def unit_bytes(units: list[ReadUnit], parallelism: int) -> int:
    """The bytes a read unit aims at: the input shared out so that there are at least ``parallelism`` units, within
    :data:`MIN_UNIT_BYTES` and :data:`MAX_UNIT_BYTES` (the cap wins)."""
    total = sum(u.size for u in units)
    return min(MAX_UNIT_BYTES, max(MIN_UNIT_BYTES, -(-total // max(1, parallelism))))


def cut(units: list[ReadUnit], parallelism: int) -> list[ReadUnit]:
    """The run's read units, in input order, from the plan's pieces (:func:`plan_inputs`), each about
    :func:`unit_bytes` of data: consecutive row groups of a Parquet file together (at most
    :data:`ROW_GROUPS_PER_UNIT`), a larger row group in row slices of equal rows (at most
    :data:`MAX_ROW_GROUP_SLICES`), an uncompressed JSONL file in byte ranges. Doc ids do not change with the cut: they
    derive from a row's position in its file, which every unit knows."""
    target = unit_bytes(units, parallelism)
    out: list[ReadUnit] = []
    for unit in units:
        last = out[-1] if out else None
        if unit.fmt == "parquet":
            if unit.size > target and unit.row_end > 1:
                out += _row_slices(unit, min(-(-unit.size // target), MAX_ROW_GROUP_SLICES, unit.row_end))
            elif (
                last is not None
                and last.uri == unit.uri
                and last.rg_end == unit.rg_start
                and last.rg_end - last.rg_start < ROW_GROUPS_PER_UNIT
                and last.size + unit.size <= target
            ):
                out[-1] = replace(
                    last, rg_end=unit.rg_end, row_end=last.row_end + unit.row_end, size=last.size + unit.size
                )
            else:
                out.append(unit)
        elif unit.fmt == "jsonl" and not unit.uri.endswith(".gz") and unit.size > target:
            out += [replace(unit, byte_start=s, byte_end=s + target) for s in range(0, unit.size, target)]
        else:
            out.append(unit)
    return out


def _row_slices(unit: ReadUnit, n: int) -> list[ReadUnit]:
    """A row group's piece as ``n`` units of (nearly) equal rows."""
    rows = unit.row_end
    bounds = [rows * k // n for k in range(n + 1)]
    return [
        replace(unit, row_start=a, row_end=b, row_offset=unit.row_offset + a, size=unit.size * (b - a) // rows)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]


def _hidden(relative: str, fmt: str | None) -> bool:
    """Whether a file below an input directory is no input: named, or under a name, ``.*`` (or ``_*``, unless it is
    source code)."""
    prefixes = (".",) if fmt == "code" else ("_", ".")
    return any(part.startswith(prefixes) for part in relative.split("/") if part)


def check_output(inputs: list[str], output: str) -> None:
    """Refuse an output directory that is (or lies inside) an input directory (the next run would read this one's
    outputs as input), or that cannot be written: a probe file is created and deleted there, so the run fails now,
    with one line, not in its first write with a Spark stack trace."""
    out_fs, out_path = storage.resolve(output)
    out_uri = storage.to_uri(out_fs, out_path.rstrip("/"))
    for src in inputs:
        fs, path = storage.resolve(src)
        uri = storage.to_uri(fs, path.rstrip("/"))
        if out_uri == uri or out_uri.startswith(uri + "/"):
            raise InputError(f"--output {output} is inside the input directory {src}; write it elsewhere")
    probe = storage.join(out_path, "_write_probe")
    try:
        out_fs.create_dir(out_path, recursive=True)
        with out_fs.open_output_stream(probe) as fh:
            fh.write(b"")
        out_fs.delete_file(probe)
    except OSError as err:
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise InputError(f"cannot write to --output {output}: {reason}") from None


def _text_type(dtype: pa.DataType) -> bool:
    """Whether a column of this type holds text: strings, or bytes taken as UTF-8 (older writers' strings), or only
    nulls; dictionary-encoded ones by their values."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return pa.types.is_null(dtype) or any(is_kind(dtype) for is_kind in kinds)


def _parquet_units(
    fs: pafs.FileSystem, path: str, uri: str, id_column: str, text_column: str
) -> tuple[list[ReadUnit], str | None]:
    """One piece per row group (its rows, and its uncompressed bytes as ``size``), and the id column's kind; corrupt
    files fail here, naming the file."""
    try:
        with fs.open_input_file(path) as fh:
            meta = pq.ParquetFile(fh).metadata
            schema = meta.schema.to_arrow_schema()
    except Exception as err:  # pyarrow raises several types for corrupt footers
        raise InputError(f"cannot read Parquet file {uri}: {str(err).splitlines()[0]}") from None
    if text_column not in schema.names:
        raise InputError(f"Parquet file {uri} has no text column {text_column!r} (columns: {', '.join(schema.names)})")
    text_type = schema.field(text_column).type
    if not _text_type(text_type):
        raise InputError(f"Parquet file {uri}: text column {text_column!r} holds {text_type}, not text")
    kind = None
    if id_column in schema.names:
        id_type = schema.field(id_column).type
        kind = ID_LONG if pa.types.is_integer(id_type) or pa.types.is_floating(id_type) else ID_STRING
    units, offset = [], 0
    for group in range(meta.num_row_groups):
        rows, size = meta.row_group(group).num_rows, meta.row_group(group).total_byte_size
        unit = ReadUnit(
            "parquet", uri, uri, rg_start=group, rg_end=group + 1, row_offset=offset, row_end=rows, size=size
        )
        units.append(unit)
        offset += rows
    return units, kind


def _sniff_jsonl(fs: pafs.FileSystem, path: str, id_column: str, text_column: str) -> str | None:
    """The id kind of the first JSON object in the file (a cheap sniff: up to 100 lines of its first MB; the readers
    handle every line). When none of the objects there has the text field, the file fails here: the text column
    named is not this file's (a record that lacks it among others is the readers' ``missing_text_field``)."""
    compression = "gzip" if path.endswith(".gz") else None
    uri = storage.to_uri(fs, path)
    try:
        with fs.open_input_stream(path, compression=compression) as fh:
            head = fh.read(1 << 20)
    except OSError as err:
        raise InputError(f"cannot read {uri}: {str(err).splitlines()[0]}") from None
    objects: list[dict] = []
    for raw in head.splitlines()[:100]:
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            objects.append(record)
            if text_column in record:
                break
    if objects and all(text_column not in o for o in objects):
        fields = ", ".join(list(objects[0])[:10])
        raise InputError(
            f"{uri} has no text field {text_column!r} in its first {len(objects)} records (fields: {fields})"
        )
    if objects and objects[0].get(id_column) is not None:
        return ID_STRING if isinstance(objects[0][id_column], str) else ID_LONG
    return None


def _check_gzip(fs: pafs.FileSystem, path: str) -> None:
    """A ``.gz`` file must start as a gzip stream (a truncated one is caught where its reader meets the end)."""
    try:
        with fs.open_input_stream(path, compression="gzip") as fh:
            fh.read(1 << 16)
    except OSError as err:
        raise InputError(f"cannot read {storage.to_uri(fs, path)}: {str(err).splitlines()[0]}") from None
