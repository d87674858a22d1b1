"""The data-model boundary: ``train`` refuses incomplete packed data, a model whose own tokenizer did not pack the
data, and a vocabulary too small for the data's ids; ``--allow-tokenizer-mismatch`` trains anyway, with a warning,
and ``final/`` then holds the data's tokenizer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from model_surgery import init_random, save
from slm_common.tokenizer import fingerprint, load_tokenizer
from tests.train_fixtures import write_packed
from train.compat import IncompatibleInputs, check_inputs, read_manifest
from train.config import TrainConfig, load_config
from train.data import ShardIndex

ROOT = Path(__file__).resolve().parents[2]
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "ffn_dim": 64, "num_attention_heads": 2}
VOCAB = 600
"""Rows of the test models: the fixture's ids lie in 10..521, far below the offline tokenizer's 50260 tokens."""


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_packed(tmp_path_factory.mktemp("data"), seq_len=16, train_files=(12, 8), val_files=(4,))


def other_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with OPT's special tokens: another model's tokenizer, with ids of its own."""
    vocab = {"<pad>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def models_dir(packed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model directories as ``model_surgery`` writes them: with the data's tokenizer, another one, or none."""
    root = tmp_path_factory.mktemp("models")
    for name, tokenizer in (("same", load_tokenizer(str(packed / "tokenizer"))), ("other", other_tokenizer())):
        save(init_random("opt-125m", vocab_size=VOCAB, **TINY), root / name)
        tokenizer.save_pretrained(root / name)
    save(init_random("opt-125m", vocab_size=VOCAB, **TINY), root / "bare")
    return root


def config(packed: Path, model: str | Path, *flags: str) -> TrainConfig:
    return load_config(["--data", str(packed), "--model", str(model), "--output", "unused", *flags])


def copy_of(packed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(packed, tmp_path / "packed"))


# --- incomplete data ----------------------------------------------------------------------------------------------


def test_shards_without_a_manifest_are_refused_not_globbed(packed: Path, tmp_path: Path) -> None:
    data = copy_of(packed, tmp_path)
    (data / "manifest.json").unlink()
    assert sorted(p.name for p in (data / "train").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    for read in (lambda: read_manifest(data), lambda: ShardIndex(data, "train")):
        with pytest.raises(IncompatibleInputs, match="no manifest.json"):
            read()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: (data / "train" / "part-00001.parquet").unlink(), r"1 shard file\(s\) .* train/part-00001"),
        (lambda data: (data / "manifest.json").write_text('{"seq_len": 16, "sha'), "not valid JSON"),
        (lambda data: rewrite(data, lambda m: m.pop("tokenizer_fingerprint")), "lacks tokenizer_fingerprint"),
        (lambda data: rewrite(data, lambda m: m["shards"].update(train=[])), "no training sequences"),
    ],
    ids=["missing-shard", "truncated", "older-pack", "no-sequences"],
)
def test_an_incomplete_manifest_is_refused(packed: Path, tmp_path: Path, damage, message: str) -> None:
    data = copy_of(packed, tmp_path)
    damage(data)
    with pytest.raises(IncompatibleInputs, match=message) as err:
        read_manifest(data)
    assert "\n" not in str(err.value)


def rewrite(data: Path, edit) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))


def test_the_index_reads_only_the_listed_shards(packed: Path, tmp_path: Path) -> None:
    """A shard left over from an earlier run with more shards is not read: the manifest, not a glob, lists files."""
    data = copy_of(packed, tmp_path)
    shutil.copy(data / "train" / "part-00000.parquet", data / "train" / "part-00099.parquet")
    index = ShardIndex(data, "train")
    assert {Path(unit.file).name for unit in index.units} == {"part-00000.parquet", "part-00001.parquet"}
    assert index.num_sequences == 12 + 8


# --- the model against the data -------------------------------------------------------------------------------------


def test_models_that_fit_the_data_pass(packed: Path, models_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """The data's own tokenizer, no tokenizer (a preset or a bare directory): nothing to say."""
    manifest = read_manifest(packed)
    assert fingerprint(load_tokenizer(str(models_dir / "same"))) == manifest["tokenizer_fingerprint"]
    for model in (models_dir / "same", models_dir / "bare", "preset:opt-125m"):
        check_inputs(config(packed, model))
    check_inputs(config(packed, "preset:opt-125m", "--model-overrides", f"vocab_size={manifest['max_token_id'] + 1}"))
    assert capsys.readouterr().err == ""


def test_another_tokenizer_is_refused_unless_allowed(packed: Path, models_dir: Path, capsys) -> None:
    with pytest.raises(IncompatibleInputs, match=r"fingerprint .* is not the one that packed") as err:
        check_inputs(config(packed, models_dir / "other"))
    assert "\n" not in str(err.value) and "--tokenizer" in str(err.value)
    check_inputs(config(packed, models_dir / "other", "--allow-tokenizer-mismatch"))
    warning = capsys.readouterr().err
    assert warning.startswith("warning: --allow-tokenizer-mismatch") and "final/ gets the data's tokenizer" in warning


def test_a_vocabulary_smaller_than_the_data_ids_is_refused_even_when_allowed(packed: Path) -> None:
    too_small = read_manifest(packed)["max_token_id"]  # rows 0..max-1: the largest id has no row
    for flags in ((), ("--allow-tokenizer-mismatch",)):
        with pytest.raises(
            IncompatibleInputs, match=rf"vocabulary \({too_small} rows\) is smaller .* \({too_small + 1}\)"
        ):
            check_inputs(config(packed, "preset:opt-125m", "--model-overrides", f"vocab_size={too_small}", *flags))


# --- the command ------------------------------------------------------------------------------------------------------


def test_python_m_train_refuses_in_one_line_with_exit_2(packed: Path, models_dir: Path, tmp_path: Path) -> None:
    """The command itself: exit status 2, one ``error:`` line on stderr and no traceback, before any output is made.
    (Every refusal of :mod:`train.compat` takes this path; the cases above check each one's message.)"""
    run = tmp_path / "run"
    argv = ["--data", str(packed), "--model", str(models_dir / "other"), "--output", str(run), "--max-steps", "1"]
    done = subprocess.run([sys.executable, "-m", "train", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the tokenizer in "), done.stderr
    assert "is not the one that packed" in lines[0] and "--allow-tokenizer-mismatch" in lines[0]
    assert not run.exists()  # stopped before anything was built or written


def test_allowed_mismatch_trains_and_final_holds_the_data_tokenizer(packed, models_dir, tmp_path, capsys) -> None:
    """With the flag, the run trains on the data's ids, and ``final/`` gets the tokenizer that decodes them (the
    data's), not the model's; the warning said so before training."""
    from accelerate.state import AcceleratorState, GradientState

    from train.loop import train

    flags = ["--max-steps", "2", "--batch-size", "2", "--warmup-steps", "0", "--eval-every", "0", "--save-every", "0",
             "--num-workers", "0", "--report-to", "none", "--allow-tokenizer-mismatch"]  # fmt: skip
    argv = ["--data", str(packed), "--model", str(models_dir / "other"), "--output", str(tmp_path / "run"), *flags]
    try:
        final = train(load_config(argv))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert "final/ gets the data's tokenizer" in capsys.readouterr().err
    data_print = read_manifest(packed)["tokenizer_fingerprint"]
    assert (
        fingerprint(load_tokenizer(str(final))) == data_print != fingerprint(load_tokenizer(str(models_dir / "other")))
    )
