"""Up-front checks of what model surgery is asked for: sizes within bounds, overrides that are config fields, and
output directories that may be replaced. Each failure is a :class:`Refused` error raised before any work, which
the command line reports as one line with exit code 2.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from transformers import OPTConfig, PretrainedConfig

# Upper bounds on the shape of a *small* language model: well above anything this toolkit trains (opt-125m is 12
# layers, hidden 768, FFN 3072, 12 heads, vocab 50272, 2048 positions), low enough that a slip (a zero too many)
# fails with a message naming the bound instead of allocating until the machine runs out of memory.
LIMITS: dict[str, int] = {
    "num_hidden_layers": 128,
    "hidden_size": 8192,
    "word_embed_proj_dim": 8192,
    "ffn_dim": 32768,
    "num_attention_heads": 128,
    "vocab_size": 262144,
    "max_position_embeddings": 32768,
}

# What ``save_pretrained`` leaves in a model directory: config.json next to one of these.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class Refused(ValueError):
    """A request refused before any work; the message (one line) names the bound or the rule."""


@cache
def config_fields() -> frozenset[str]:
    """The fields OPTConfig defines for the model itself, without PretrainedConfig's generic ones (``dtype``,
    ``architectures``, ...) and private ones.

    Overrides are limited to these because ``from_pretrained`` passes any other keyword to the loader, and
    OPTConfig stores unknown keys silently: ``trust_remote_code``, ``revision`` or ``token`` in a config file must
    not reach either.
    """
    own = inspect.signature(OPTConfig.__init__).parameters
    generic = inspect.signature(PretrainedConfig.__init__).parameters
    return frozenset(
        name
        for name, p in own.items()
        if name not in generic
        and not name.startswith("_")
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and name != "self"
    )


def check_sizes(fields: Mapping[str, Any]) -> None:
    """Every size in ``fields`` that has a bound in ``LIMITS`` is an integer from 1 to that bound."""
    for name, value in fields.items():
        bound = LIMITS.get(name)
        if bound is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
            raise Refused(
                f"{name} must be an integer from 1 to {bound} (the bound for small language models), got {value!r}"
            )


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Overrides name OPT config fields only (see :func:`config_fields`), and sizes within ``LIMITS``."""
    unknown = sorted(str(key) for key in overrides if key not in config_fields())
    if unknown:
        raise Refused(
            f"model override(s) {', '.join(unknown)} not allowed: only OPTConfig fields "
            f"({', '.join(sorted(config_fields()))})"
        )
    check_sizes(overrides)


def is_model_save(path: Path) -> bool:
    """Whether ``path`` is a ``save_pretrained`` directory: a config.json and weights."""
    return (path / "config.json").is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def check_output(output: str | Path) -> Path:
    """The resolved ``output`` when a save may replace it: missing, an empty directory, or an earlier model save.

    Anything else may hold the user's own files, which a replacement would delete; the working directory (or a
    directory holding it) is refused as well, since it cannot be swapped out from under the running process.
    """
    path = Path(output).resolve()
    if Path.cwd().resolve().is_relative_to(path):
        raise Refused(f"output directory {output} holds the working directory; choose another")
    if not path.exists():
        return path
    if not path.is_dir():
        raise Refused(f"output {output} exists and is not a directory")
    if any(path.iterdir()) and not is_model_save(path):
        raise Refused(
            f"output directory {output} is not empty and is not an earlier model save (config.json and weights); "
            "choose a new or empty directory"
        )
    return path


def same_path(a: str | Path, b: str | Path) -> bool:
    """Whether two spellings name one file or directory (``./m``, ``m/``, a symlink, another mount of it)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
