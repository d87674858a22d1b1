"""YAML option files, read the same way by every tool (pipeline, training)."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml


def read_yaml_options(path: str, cls: type) -> dict[str, Any]:
    """The options of a YAML config file for dataclass ``cls`` (keys may use ``-`` or ``_``); unknown keys fail.

    Shared by every tool's config (pipeline, train), so YAML files behave the same everywhere.
    """
    with open(path) as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise SystemExit(f"error: {path} must hold a mapping of option: value")
    values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise SystemExit(f"error: unknown option(s) in {path}: {', '.join(unknown)}")
    return values
