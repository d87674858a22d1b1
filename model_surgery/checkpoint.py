"""Loading and saving Hugging Face model directories (weights, config and the tokenizer that goes with them)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, OPTForCausalLM, PreTrainedTokenizerBase
from transformers.utils import cached_file


def load_pretrained(name_or_dir: str | Path) -> OPTForCausalLM:
    """An OPT causal LM from a local ``save_pretrained`` directory or a hub id, in the checkpoint's own dtype.

    Load failures (missing directory, offline hub, unreadable config) are re-raised as ``OSError`` naming the
    source, because the library's messages do not always say which model they were looking for. Other
    architectures are refused up front since the surgery relies on OPT's ``model.decoder.layers`` layout.
    """
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_dir)
    except (OSError, ValueError) as err:
        raise OSError(f"cannot load model {str(name_or_dir)!r}: {err}") from err
    if not isinstance(model, OPTForCausalLM):
        raise ValueError(f"{str(name_or_dir)!r} is a {type(model).__name__}; model_surgery only handles OPT models")
    return model


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer stored with a model, or ``None`` when the source has none.

    The presence check comes first because ``AutoTokenizer`` on an OPT directory without tokenizer files does not
    fail: it silently builds an empty GPT-2 tokenizer from the model config, which would then be saved as if real.
    """
    found = cached_file(
        name_or_dir,
        "tokenizer_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return None if found is None else AutoTokenizer.from_pretrained(name_or_dir)


def save(model: OPTForCausalLM, output: str | Path, tokenizer_source: str | Path | None = None) -> None:
    """Write ``model`` as a safetensors ``save_pretrained`` directory, with the tokenizer of ``tokenizer_source``.

    Carrying the tokenizer over keeps the output directory self-contained, so the next step (training, another
    resize, generation) can load it exactly like the directory it came from.
    """
    model.save_pretrained(output)
    tokenizer = None if tokenizer_source is None else load_tokenizer(tokenizer_source)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
