"""Stage outputs that a rerun may reuse, and the keys that say when it may not.

A finished output directory holds a marker (``_stage.json``) with the key it was computed under. A stage's key
hashes its own options, the key of what it read (so every upstream change flows down), and, at the start of the
chain, the code version and the inputs' fingerprint (every file's path, size and modification time; a dataset's
revision); a stage's file options (a model, eval sets) count by the same stamp. An added, removed or rewritten
input, or changed code, therefore redoes everything. The marker is deleted
before a directory is rewritten and written after it is complete, so a run that dies in between leaves a directory
the next run recomputes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.resources
import json
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from typing import Any

from spark_jobs import storage

MARKER = "_stage.json"
CODE_PACKAGES = ("slm_common", "spark_jobs")


def key(*parts: Any) -> str:
    """A hash of ``parts`` (JSON-able values: options, upstream keys, fingerprints)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def options_key(opts: Any) -> dict[str, Any]:
    """The options of a dataclass that change what its owner produces (all but the ``execution_only`` ones); an
    option marked ``files=True`` (a model, eval sets) also by each named file's size and modification time, so a file
    rewritten in place under the same name redoes what read it."""
    out = {}
    for f in dataclasses.fields(opts):
        if f.metadata.get("execution_only"):
            continue
        value = out[f.name] = getattr(opts, f.name)
        if f.metadata.get("files") and value:
            out[f"{f.name}:files"] = [file_stamp(uri) for uri in ([value] if isinstance(value, str) else value)]
    return out


def file_stamp(uri: str) -> tuple[str, int | None, int | None]:
    """(URI, size, modification time in ns) of one file; sizes and times are None for a file not there (yet)."""
    fs, path = storage.resolve(uri)
    info = fs.get_file_info(path)
    return uri, info.size, info.mtime_ns


@functools.cache
def code_version() -> str:
    """The project's version and a hash of the pipeline's source files: a code change invalidates every output."""
    try:
        version = importlib.metadata.version("slm-pretrain")
    except importlib.metadata.PackageNotFoundError:
        version = "unversioned"
    digest = hashlib.sha256(version.encode())
    for package in CODE_PACKAGES:
        for name, data in sorted(_sources(importlib.resources.files(package), package)):
            digest.update(name.encode() + b"\0" + data)
    return f"{version}+{digest.hexdigest()[:16]}"


def _sources(root: Traversable, prefix: str) -> Iterator[tuple[str, bytes]]:
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != "__pycache__":
            yield from _sources(entry, f"{prefix}/{entry.name}")
        elif entry.name.endswith(".py"):
            yield f"{prefix}/{entry.name}", entry.read_bytes()


def finished(directory: str, stage_key: str) -> dict[str, Any] | None:
    """The marker of ``directory`` when it was completed under ``stage_key``, else None (also when the marker is
    not a whole JSON object)."""
    marker = storage.join(directory, MARKER)
    if not storage.exists(marker):
        return None
    try:
        found = json.loads(storage.read_text(marker))
    except ValueError:  # cut short (a disk that filled up where a write is not atomic): never finished
        return None
    return found if isinstance(found, dict) and found.get("key") == stage_key else None


def invalidate(directory: str) -> None:
    """Forget that ``directory`` is complete (before rewriting it)."""
    storage.remove(storage.join(directory, MARKER))


def mark_finished(directory: str, stage_key: str, **facts: Any) -> None:
    storage.write_text(storage.join(directory, MARKER), json.dumps({"key": stage_key, **facts}, default=str))
