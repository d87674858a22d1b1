"""Driver-side planning: list the input files and cut them into read units. Touches metadata only, never data.

Parquet files are cut by row groups (read from their footers) and uncompressed JSONL files by byte ranges, so one
large file still feeds many tasks; gzipped JSONL (gzip is not splittable), text files and source files are one unit
each. The doc id type is decided here, once, for
the whole run: string when any source carries string ids, long otherwise.

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
JSONL_UNIT_BYTES = 64 << 20
"""Byte range of an uncompressed JSONL file per read unit: a large dump feeds many tasks (memory is one batch either
way). Not smaller: each task costs its Python worker tens of milliseconds (docs/benchmarks.md)."""


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
    """Read units for every file-based source (``hf://`` sources are read by their own data source)."""
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
                unit = ReadUnit(fmt=fmt, uri=uri, source=uri, root=storage.to_uri(fs, root), size=f.size)
                if fmt == "jsonl" and not f.path.endswith(".gz") and f.size > JSONL_UNIT_BYTES:
                    ranges = range(0, f.size, JSONL_UNIT_BYTES)
                    plan.units += [replace(unit, byte_start=s, byte_end=s + JSONL_UNIT_BYTES) for s in ranges]
                else:
                    plan.units.append(unit)
                kind = _sniff_jsonl(fs, f.path, id_column, text_column) if fmt == "jsonl" else None
                if fmt != "jsonl" and f.path.endswith(".gz"):
                    _check_gzip(fs, f.path)
            if kind:
                id_kinds.add(kind)
    plan.id_type = ID_STRING if ID_STRING in id_kinds else ID_LONG
    return plan


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
    """Units of a few row groups each, and the id column's kind; corrupt files fail here, naming the file."""
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
    for start in range(0, meta.num_row_groups, ROW_GROUPS_PER_UNIT):
        end = min(start + ROW_GROUPS_PER_UNIT, meta.num_row_groups)
        units.append(ReadUnit(fmt="parquet", uri=uri, source=uri, rg_start=start, rg_end=end, row_offset=offset))
        offset += sum(meta.row_group(i).num_rows for i in range(start, end))
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
