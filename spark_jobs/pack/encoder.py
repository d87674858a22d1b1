"""Token ids for a batch of texts: tiktoken's BPE where it gives the tokenizer's own ids, else the tokenizer itself.

Tokenizing is most of pack's work on code-heavy corpora. tiktoken runs the same byte-level BPE in Rust without the
offsets and alignments the ``tokenizers`` library builds for every token, and encoded our benchmark corpora several
times faster with identical ids (docs/benchmarks.md). The ids are what matters, so the fast path is taken only for
tokenizers where both libraries do the same thing (:func:`tiktoken_ranks`):

- no normalizer; the pre-tokenizer is ``ByteLevel`` with GPT-2's split pattern and no added prefix space;
- the model is a BPE without dropout, word prefix or suffix, byte fallback or ``ignore_merges``;
- every added token is special (the packer encodes special-token text as ordinary text, as tiktoken does);
- all 256 byte symbols are in the vocabulary, no two merges make the same token, and the tokenizer encodes each
  merged token's text as that one token.

tiktoken merges first the adjacent pair whose merged token has the lowest rank; ``tokenizers`` merges first the pair
listed earliest in the merges. With a token's rank set to the position of the merge that makes it (the 256 bytes
first), the two agree on byte-level BPEs trained the usual way (GPT-2's, OPT's, a ``BpeTrainer``'s), and the last
condition above makes tiktoken's shortcut (a whole piece that is a token stays one token) agree too. Ranks are not
ids: tiktoken's output goes through a rank -> id table, so vocabularies numbered in another order (OPT's) qualify.
As a guard against a vocabulary these checks miss, each encoder compares the two on the first texts it is given
and falls back to the tokenizer when they differ (:meth:`BatchEncoder.__call__`).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import tiktoken

from slm_common.tokenizer import worker_tokenizer
from spark_jobs.pack.packing import as_list_array

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2's pre-tokenization pattern (the one ``ByteLevel(use_regex=True)`` splits with), in tiktoken's syntax."""

SAMPLE_TEXTS = 32
SAMPLE_CHARS = 16_384
"""The guard compares both encoders on up to this many of the first texts, each at most this long."""

log = logging.getLogger(__name__)


@functools.cache
def byte_symbols() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte in a byte-level vocabulary."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    symbols = {chr(b): b for b in printable}
    symbols.update({chr(256 + k): b for k, b in enumerate(others)})
    return symbols


def _plain_byte_level(state: dict[str, Any]) -> bool:
    """Whether a ``tokenizer.json`` has the structure the fast path needs (the module docstring's first three
    conditions)."""
    pre, model = state.get("pre_tokenizer") or {}, state.get("model") or {}
    return (
        state.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
        and model.get("type") == "BPE"
        and model.get("dropout") is None
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and not model.get("byte_fallback", False)
        and not model.get("ignore_merges", False)
        and all(token.get("special", False) for token in state.get("added_tokens") or [])
    )


def tiktoken_ranks(state: dict[str, Any], tokenizer: Any) -> tuple[dict[bytes, int], np.ndarray] | None:
    """tiktoken's mergeable ranks for a ``tokenizer.json`` (parsed) and the rank -> id table, or None when the
    tokenizer does not qualify (see the module docstring). ``tokenizer`` is the loaded ``tokenizers.Tokenizer``."""
    if not _plain_byte_level(state):
        return None
    vocab: dict[str, int] = state["model"]["vocab"]
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in state["model"]["merges"]]
    symbols = byte_symbols()
    if any(symbol not in vocab for symbol in symbols):
        return None
    ranks: dict[bytes, int] = {bytes([byte]): byte for symbol, byte in symbols.items()}
    ids = [vocab[symbol] for symbol, _ in sorted(symbols.items(), key=lambda item: item[1])]
    for left, right in merges:
        merged = left + right
        raw = bytes(symbols[char] for char in merged if char in symbols)
        if merged not in vocab or len(raw) != len(merged) or raw in ranks:
            return None
        pieces = tokenizer.model.tokenize(merged)
        if len(pieces) != 1 or pieces[0].value != merged:
            return None
        ranks[raw] = len(ids)
        ids.append(vocab[merged])
    return ranks, np.asarray(ids, dtype=np.int32)


class BatchEncoder:
    """Encodes a batch of texts (no special tokens added) into an Arrow ``list<int32>`` array of token ids.

    ``name`` says which encoder is in use: ``tiktoken`` or ``tokenizers``.
    """

    def __init__(self, tokenizer: Any, fast: Any | None, ids: np.ndarray | None, threads: int) -> None:
        self.tokenizer = tokenizer
        self.fast = fast
        self.ids = ids
        self.threads = threads
        self.checked = fast is None

    @property
    def name(self) -> str:
        return "tokenizers" if self.fast is None else "tiktoken"

    def slow(self, texts: Sequence[str]) -> pa.Array:
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return as_list_array([encoding.ids for encoding in encodings])

    def quick(self, texts: Sequence[str]) -> pa.Array:
        docs = as_list_array(self.fast.encode_ordinary_batch(list(texts), num_threads=self.threads))
        values = self.ids[docs.values.to_numpy(zero_copy_only=False)]
        return pa.ListArray.from_arrays(docs.offsets, pa.array(values, type=pa.int32()))

    def __call__(self, texts: Sequence[str]) -> pa.Array:
        if not self.checked:
            self.checked = True
            sample = [text for text in texts if len(text) <= SAMPLE_CHARS][:SAMPLE_TEXTS]
            if not self.quick(sample).equals(self.slow(sample)):
                log.warning("pack: tiktoken's ids differ from the tokenizer's on a sample; using the tokenizer")
                self.fast = None
        return self.slow(texts) if self.fast is None else self.quick(texts)


@functools.cache
def batch_encoder(tokenizer_json: str, threads: int) -> BatchEncoder:
    """The encoder for a saved ``tokenizer.json`` (once per process): tiktoken's when the tokenizer qualifies.

    ``threads``: how many texts are encoded at once (tiktoken's thread pool; ``tokenizers`` sizes its own pool from
    ``RAYON_NUM_THREADS``, which the caller sets).
    """
    tokenizer = worker_tokenizer(tokenizer_json)
    with open(tokenizer_json, encoding="utf-8") as file:
        found = tiktoken_ranks(json.load(file), tokenizer)
    if found is None:
        return BatchEncoder(tokenizer, None, None, threads)
    ranks, ids = found
    fast = tiktoken.Encoding("byte-level-bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    return BatchEncoder(tokenizer, fast, ids, threads)
