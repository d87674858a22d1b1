"""Synthetic packed data in the exact layout of the packer's OUT/packed/ contract, for the train tests and bench."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from slm_common.tokenizer import OFFLINE_TOKENIZER, fingerprint, load_tokenizer

TOKEN_POOL = 512
"""Sequences draw from this many token ids with Zipf frequencies, so even a tiny model's loss falls fast."""
FIRST_TOKEN = 10
"""The pool's lowest id: the pool is ``FIRST_TOKEN .. FIRST_TOKEN + TOKEN_POOL - 1``, clear of the special tokens."""


def _sequences(rng: np.random.Generator, count: int, seq_len: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, TOKEN_POOL + 1)
    ids = rng.choice(TOKEN_POOL, size=(count, seq_len), p=weights / weights.sum()) + FIRST_TOKEN
    return ids.astype(np.int32)


def write_packed(
    root: Path,
    seq_len: int = 32,
    train_files: Sequence[int] = (40, 32, 24),
    val_files: Sequence[int] = (16,),
    row_group_size: int = 10,
    seed: int = 0,
) -> Path:
    """Write ``root/packed`` (shards, manifest.json, tokenizer/) and return it.

    ``train_files`` gives the sequences of each shard; ``row_group_size`` makes several uneven row groups per shard,
    the case that makes splitting work by row group interesting.
    """
    packed = root / "packed"
    rng = np.random.default_rng(seed)
    shards: dict[str, list[dict]] = {}
    max_token_id = -1
    for split, sizes in (("train", train_files), ("val", val_files)):
        (packed / split).mkdir(parents=True, exist_ok=True)
        shards[split] = []
        for i, count in enumerate(sizes):
            name = f"{split}/part-{i:05d}.parquet"
            sequences = _sequences(rng, count, seq_len)
            max_token_id = max(max_token_id, int(sequences.max()))
            column = pa.array(list(sequences), type=pa.list_(pa.int32()))
            pq.write_table(pa.table({"input_ids": column}), packed / name, row_group_size=row_group_size)
            shards[split].append({"file": name, "sequences": count, "tokens": count * seq_len})
    tokenizer = load_tokenizer()
    tokenizer.save_pretrained(packed / "tokenizer")
    totals = {
        split: {"sequences": sum(s["sequences"] for s in v), "tokens": sum(s["tokens"] for s in v)}
        for split, v in shards.items()
    }
    manifest = {
        "seq_len": seq_len,
        "tokenizer": OFFLINE_TOKENIZER,
        "bos_id": tokenizer.bos_token_id,
        "eos_id": tokenizer.eos_token_id,
        "pad_id": tokenizer.pad_token_id,
        "tokenizer_fingerprint": fingerprint(tokenizer),
        "max_token_id": max_token_id,
        "shards": shards,
        "totals": totals,
        "config_hash": hashlib.sha1(f"{seq_len}-{seed}".encode()).hexdigest()[:16],
    }
    (packed / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return packed
