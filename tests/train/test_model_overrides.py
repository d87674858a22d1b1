"""--model-overrides (flag or YAML key) may set OPTConfig fields only, within model_surgery's bounds: nothing that
from_pretrained would take as a loader keyword (trust_remote_code, revision, token)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model_surgery import init_random, save
from model_surgery.checks import Refused
from train.__main__ import main
from train.model import build_model

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["--data", "d", "--model", "preset:opt-125m", "--output", "o"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("trust_remote_code=true", "error: model override(s) trust_remote_code not allowed: only OPTConfig fields ("),
        ("hidden_size=64,revision=main", "error: model override(s) revision not allowed"),
        ("num_hidden_layers=1000", "error: num_hidden_layers must be an integer from 1 to 128"),
        ("hidden_size", "error: model override 'hidden_size' is not KEY=VALUE"),
    ],
)
def test_refused_overrides_are_one_line_exit_2(
    overrides: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*REQUIRED[:-1], str(tmp_path / "run"), "--model-overrides", overrides]
    if overrides == "hidden_size":  # malformed on the flag is argparse's business; in YAML it is the config's
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump({"model_overrides": overrides}))
        argv = [*REQUIRED[:-1], str(tmp_path / "run"), "--config", str(config)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_yaml_cannot_set_loader_keywords(tmp_path: Path) -> None:
    """A real process, as a user runs it: one line, no traceback, nothing started."""
    config = tmp_path / "run.yaml"
    overrides = {"trust_remote_code": True, "token": "x", "hidden_size": 64}
    config.write_text(yaml.safe_dump({"model": "preset:opt-125m", "model_overrides": overrides}))
    done = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(config), "--data", "d", "--output", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: model override(s) token, trust_remote_code not allowed")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_build_model_refuses_loader_keywords_before_loading(tmp_path: Path) -> None:
    """The same check where the overrides meet from_pretrained, for callers that skip TrainConfig."""
    tiny = dict(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, ffn_dim=32, vocab_size=64)
    save(init_random(**tiny), tmp_path / "m")
    with pytest.raises(Refused, match="trust_remote_code"):
        build_model(str(tmp_path / "m"), {"trust_remote_code": True}, {})
    assert build_model(str(tmp_path / "m"), {"dropout": 0.0}, {}).config.dropout == 0.0
