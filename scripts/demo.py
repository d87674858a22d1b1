"""``make demo``: the whole path on the embedded default corpus, on this machine, in a few minutes.

clean -> dedup -> pack (Spark, local mode) -> init a small OPT model -> train briefly -> resize the trained model.
Everything lands under ``out/demo/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "demo"
SMALL_MODEL = ["--layers", "4", "--hidden", "128", "--heads", "4", "--ffn", "512", "--positions", "64"]


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ {' '.join(argv)}", flush=True)
    started = time.time()
    subprocess.run([sys.executable, *argv], check=True, cwd=ROOT)
    print(f"--- {title}: {time.time() - started:.0f} s", flush=True)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    corpus = OUT / "corpus"
    sys.path.insert(0, str(ROOT))
    from spark_jobs.demo_corpus import write_demo_corpus

    inputs = write_demo_corpus(str(corpus))
    print(f"default corpus written to {corpus}: {', '.join(inputs)}")
    data = OUT / "data"
    step("data pipeline (Spark)", ["-m", "spark_jobs.pipeline", "--input", *inputs, "--output", str(data),
                                   "--seq-len", "32", "--num-shards", "4", "--val-fraction", "0.05"])
    report = json.loads((data / "report.json").read_text())
    print(f"report: {data / 'report.json'}; removed by stage: "
          + ", ".join(f"{k}={v.get('removed_by_reason')}" for k, v in report["stages"].items() if "docs_in" in v))
    if not (ROOT / "model_surgery" / "__main__.py").exists() or not (ROOT / "train" / "__main__.py").exists():
        return
    model = OUT / "model-init"
    step("random init (model_surgery)", ["-m", "model_surgery", "init", "--preset", "opt-125m", *SMALL_MODEL,
                                         "--output", str(model)])
    run = OUT / "run"
    step("train (python -m train)", ["-m", "train", "--data", str(data / "packed"), "--model", str(model),
                                     "--output", str(run), "--max-steps", "60", "--batch-size", "8", "--lr", "1e-3",
                                     "--warmup-steps", "5", "--eval-every", "20", "--save-every", "30"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    print(f"loss: {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logged steps")
    print(f"run: {run}  plot: {run / 'loss.png'}  final model: {run / 'final'}")
    step("resize 4 -> 6 layers (dus)", ["-m", "model_surgery", "resize", "--model", str(run / "final"),
                                        "--layers", "6", "--output", str(OUT / "model-6-layers")])


if __name__ == "__main__":
    main()
