"""The data-model boundary, checked before anything is built: complete packed data, and a model that fits its ids.

``train`` stops with one line (``python -m train`` exits 2) when

* ``packed/`` has no complete ``manifest.json`` (pack writes it last, so without it the shards may be half written
  or left over from another run), or a shard file the manifest lists is missing;
* the model directory holds a tokenizer whose :func:`~slm_common.tokenizer.fingerprint` differs from the one that
  packed the data: the same id would mean one piece of text to the model and another in the data;
* the model's vocabulary (``config.vocab_size``, the rows of its embedding) is smaller than the data's largest id
  + 1, which the embedding cannot look up.

``--allow-tokenizer-mismatch`` turns the tokenizer refusal into a warning: training then learns the data's ids, and
``final/`` gets the data's tokenizer (``packed/tokenizer/``), the one that decodes what the model learnt. No flag
lifts the vocabulary refusal: the first step would fail inside the embedding.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from model_surgery.checkpoint import load_tokenizer
from slm_common.tokenizer import fingerprint
from train.config import TrainConfig
from train.model import PRESET_PREFIX, model_config

MANIFEST_KEYS = ("seq_len", "shards", "tokenizer_fingerprint", "max_token_id")
"""What a manifest must hold for ``train``: older packs lack the last two, and the pipeline's rerun replaces them."""


class IncompatibleInputs(Exception):
    """Data or a model that ``train`` refuses before building anything; the message is one line."""


def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """``data_dir/manifest.json``, refused unless complete: it parses, holds :data:`MANIFEST_KEYS` and training
    sequences, and every shard file it lists exists. Shards are never globbed: files it does not list may be stale."""
    root = Path(data_dir)
    path = root / "manifest.json"
    rerun = "rerun the pipeline's pack stage"
    if not path.is_file():
        raise IncompatibleInputs(f"{root} has no manifest.json, so its shards are not a complete pack; {rerun}")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IncompatibleInputs(f"{path} is not valid JSON ({err}); {rerun}") from None
    missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise IncompatibleInputs(f"{path} lacks {', '.join(missing)} (an older or partial pack); {rerun}")
    shards = manifest["shards"]
    if not isinstance(shards, dict) or not sum(s.get("sequences", 0) for s in shards.get("train", [])):
        raise IncompatibleInputs(f"{path} lists no training sequences (is --seq-len longer than the corpus?)")
    absent = [s["file"] for split in shards.values() for s in split if not (root / s["file"]).is_file()]
    if absent:
        raise IncompatibleInputs(
            f"{len(absent)} shard file(s) that {path} lists are missing under {root}, e.g. {absent[0]}; {rerun}"
        )
    return manifest


def check_inputs(cfg: TrainConfig) -> None:
    """Refuse (:class:`IncompatibleInputs`) what the module docstring lists; warn where the flag allows a mismatch."""
    manifest = read_manifest(cfg.data)
    data_print = manifest["tokenizer_fingerprint"]
    model_print = _model_tokenizer_fingerprint(cfg.model)
    if model_print is not None and model_print != data_print:
        mismatch = (
            f"the tokenizer in {cfg.model} (fingerprint {model_print[:12]}) is not the one that packed {cfg.data} "
            f"({data_print[:12]}), so the data's ids mean other text to the model"
        )
        if not cfg.allow_tokenizer_mismatch:
            raise IncompatibleInputs(
                f"{mismatch}; pack with --tokenizer {cfg.model}, or pass --allow-tokenizer-mismatch to train on "
                "the data's ids anyway"
            )
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"warning: --allow-tokenizer-mismatch: {mismatch}; training on the data's ids, and final/ gets the "
                f"data's tokenizer ({Path(cfg.data) / 'tokenizer'}), not the model's",
                file=sys.stderr,
            )
    rows, needed = _model_vocab_size(cfg), manifest["max_token_id"] + 1
    if rows < needed:
        raise IncompatibleInputs(
            f"the model's vocabulary ({rows} rows) is smaller than {cfg.data}'s largest token id + 1 ({needed}): "
            "its embedding cannot look those ids up; use a model with a larger vocab_size"
        )


def _model_tokenizer_fingerprint(spec: str) -> str | None:
    """The fingerprint of the tokenizer stored with the model, or None (a preset, or a directory without one)."""
    if spec.startswith(PRESET_PREFIX):
        return None
    try:
        tokenizer = load_tokenizer(spec)
    except (OSError, ValueError) as err:
        raise IncompatibleInputs(f"cannot load the tokenizer stored in {spec}: {str(err).splitlines()[0]}") from None
    return None if tokenizer is None else fingerprint(tokenizer)


def _model_vocab_size(cfg: TrainConfig) -> int:
    """The embedding rows the model will have: its config's ``vocab_size`` after ``--model-overrides``."""
    try:
        return model_config(cfg.model, cfg.model_overrides).vocab_size
    except (OSError, ValueError) as err:
        raise IncompatibleInputs(f"cannot load the model config of {cfg.model}: {str(err).splitlines()[0]}") from None
