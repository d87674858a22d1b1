"""Loading and saving Hugging Face model directories (weights, config and the tokenizer that goes with them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, OPTForCausalLM, PreTrainedTokenizerBase
from transformers.utils import cached_file

from model_surgery.checks import check_output


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

    ``output`` must be missing, empty or an earlier model save (``checks.check_output``; ``checks.Refused``
    otherwise), and is replaced as a whole: the save is written to a temporary directory next to it and swapped in
    when complete. So no file of the earlier save survives (a tokenizer the new source does not have), and a save
    that fails leaves the earlier one as it was.
    """
    path = check_output(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.saving-{os.getpid()}")
    retired = path.with_name(f".{path.name}.replaced-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        tokenizer = None if tokenizer_source is None else load_tokenizer(tokenizer_source)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if path.exists():
            os.replace(path, retired)
        try:
            os.replace(staging, path)
        except OSError:
            if retired.exists():
                os.replace(retired, path)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
