"""``make demo`` at test scale: ``scripts/demo.py --small`` end to end, in its own processes, into a temporary folder.

The README's main command runs that script (corpus -> pipeline -> model init -> train -> resize); here every step runs
for real on a small cut of the same corpus, and the outputs each step hands to the next are checked: the pipeline's
report and packed manifest, the trained model, the resized model.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["filter", "langid", "quality", "exact_dedup", "near_dedup", "decontam"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "SLM_SPARK_UI": "0"}
    env.pop("SLM_DEMO_SMALL", None)  # the flag alone must select the small scale
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--small", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return out


def layers(weights: dict[str, Any]) -> int:
    return len({k.split(".")[3] for k in weights if k.startswith("model.decoder.layers.")})


def test_demo_pipeline_report_and_packed_manifest(demo: Path) -> None:
    """Every cleaning stage that removes had work on the cut corpus (decontam against the demo's eval set), the accounting holds, and pack wrote the shards its manifest
    lists, with tokens in both splits."""
    report = json.loads((demo / "data" / "report.json").read_text())
    acc = report["accounting"]
    assert acc["input"] == acc["cleaned"] + acc["removed"] and acc["cleaned"] > 0
    for name in STAGES:
        assert sum(report["stages"][name]["removed_by_reason"].values()) > 0, name
    decontam = report["stages"]["decontam"]
    assert decontam["removed_by_set"] == {"demo_eval": decontam["removed_by_reason"]["contaminated"]}
    assert "replaced" in report["stages"]["pii"]
    manifest = json.loads((demo / "data" / "packed" / "manifest.json").read_text())
    assert manifest["seq_len"] == 32
    for split in ("train", "val"):
        shards = manifest["shards"][split]
        assert shards and all((demo / "data" / "packed" / s["file"]).is_file() for s in shards), split
        assert manifest["totals"][split]["tokens"] == sum(s["tokens"] for s in shards) > 0
    assert manifest["totals"]["documents"] == acc["cleaned"]


def test_demo_trains_the_model_and_resizes_it(demo: Path) -> None:
    """The 2-layer model trained (finite losses, evaluation below the first step's loss, weights moved) and the
    resize step wrote a 3-layer model made of the trained layers."""
    run = demo / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert len(losses) == 6 and evals and all(math.isfinite(x) for x in losses + evals)
    assert min(evals) < losses[0]
    assert (run / "loss.png").stat().st_size > 0

    init = load_file(str(demo / "model-init" / "model.safetensors"))
    final = load_file(str(run / "final" / "model.safetensors"))
    assert json.loads((run / "final" / "config.json").read_text())["num_hidden_layers"] == layers(final) == 2
    assert all(np.isfinite(v).all() for v in final.values())
    assert any(not np.array_equal(init[k], final[k]) for k in final), "training changed no weight"

    resized = load_file(str(demo / "model-3-layers" / "model.safetensors"))
    assert json.loads((demo / "model-3-layers" / "config.json").read_text())["num_hidden_layers"] == layers(resized)
    assert layers(resized) == 3
    assert np.array_equal(resized["model.decoder.embed_tokens.weight"], final["model.decoder.embed_tokens.weight"])
    key = "model.decoder.layers.{}.self_attn.q_proj.weight"
    for i in range(3):
        assert any(np.array_equal(resized[key.format(i)], final[key.format(j)]) for j in range(2)), i
