"""Options as dataclass fields: flags and YAML files generated from them, read the same way by every tool."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

import yaml


def read_yaml_options(path: str, known: type | Iterable[str]) -> dict[str, Any]:
    """The options of a YAML config file (keys may use ``-`` or ``_``); keys that are not ``known`` (a dataclass's
    fields or a list of names) fail.

    Shared by every tool's config (pipeline, train), so YAML files behave the same everywhere.
    """
    with open(path) as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise SystemExit(f"error: {path} must hold a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    names = {f.name for f in dataclasses.fields(known)} if isinstance(known, type) else set(known)
    unknown = sorted(set(values) - names)
    if unknown:
        raise SystemExit(f"error: unknown option(s) in {path}: {', '.join(unknown)}")
    return values


def opt(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A dataclass field with its ``--help`` text (and any other metadata, e.g. ``execution_only=True``)."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def field_default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (calling its factory)."""
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def add_flags(parser: argparse.ArgumentParser, fields: list[dataclasses.Field], hints: dict[str, Any]) -> None:
    """One ``--flag-name`` per field, typed from its annotation, defaulting to "not given" so YAML and defaults can
    fill what the command line leaves out. A ``list`` field takes one or more values."""
    for f in fields:
        typ, default = hints[f.name], field_default(f)
        kw: dict[str, Any] = {"help": f.metadata["help"], "default": argparse.SUPPRESS}
        if isinstance(default, list):
            kw["nargs"] = "+"
        elif typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _scalar_type(typ, default)
        if default not in (None, [], ""):
            kw["help"] += f" (default: {default})"
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)


def _scalar_type(typ: Any, default: Any) -> Any:
    """The argparse converter for a field annotated ``int``, ``float``, ``str`` or ``X | None``."""
    for candidate in (int, float, str):
        if typ is candidate or (hasattr(typ, "__args__") and candidate in typ.__args__):
            return candidate
    return type(default) if default is not None else str
