"""Do resized models keep what they learned? Continue training four starts on the same packed data and plot them.

    .venv/bin/python bench/surgery_experiment.py --data out/demo/data/packed --out out/surgery/surgery.png [--steps 200]

Only the product's commands, each a process of its own: ``python -m train`` trains a small OPT base (``--layers``,
width 64) for ``--base-steps``; ``python -m model_surgery resize`` makes three starts from its ``final/``, and a fourth
is a fresh model; each start then continues with ``python -m train`` for ``--steps`` on identical batches (same seed,
so the same data order; constant lr, no warmup):

* ``down (dus)``: the base shrunk to ``--down`` layers by SOLAR's rule (first and last layers kept);
* ``up (dus)``: the base grown to ``--up`` layers by SOLAR's depth up-scaling;
* ``up (identity)``: the base grown to ``--up`` layers by LLaMA Pro's zero-output copies (starts at the base's loss);
* ``random``: a fresh model of the up-scaled size, the baseline the surgery has to beat.

Their loss curves (from each run's ``metrics.jsonl``) go into one PNG (``--out``), the raw losses into a JSON file
next to it. Defaults run in a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def train(data: Path, model: str, out: Path, steps: int, args: argparse.Namespace, overrides: str = "") -> list[float]:
    """``python -m train`` with the experiment's settings; the per-step training losses."""
    cmd = [sys.executable, "-m", "train", "--data", str(data), "--model", model, "--output", str(out),
           "--max-steps", str(steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--schedule", "constant", "--warmup-steps", "0", "--log-every", "1", "--eval-every", "0",
           "--save-every", "0", "--report-to", "none", "--num-workers", "0", "--seed", str(args.seed)]  # fmt: skip
    cmd += ["--model-overrides", overrides] if overrides else []
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average, so a curve starts at its real first loss instead of a centred blur."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="packed directory (train/*.parquet, manifest.json)")
    p.add_argument("--out", type=Path, default=Path("bench/results/surgery_experiment.png"))
    p.add_argument("--layers", type=int, default=4, help="base model depth")
    p.add_argument("--up", type=int, default=6, help="depth of the up-scaled starts and of the random one")
    p.add_argument("--down", type=int, default=2, help="depth of the down-scaled start")
    p.add_argument("--shape", default="hidden_size=64,num_attention_heads=4,ffn_dim=256", help="model overrides")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--base-steps", type=int, default=200, help="training of the base before the surgery")
    p.add_argument("--steps", type=int, default=200, help="continued training of each start")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="surgery-"))
    base = train(args.data, "preset:opt-125m", work / "base", args.base_steps, args,
                 f"num_hidden_layers={args.layers},{args.shape}")  # fmt: skip
    print(f"base: {args.layers} layers, loss {base[0]:.3f} -> {base[-1]:.3f} after {args.base_steps} steps")

    starts = {f"down (dus, {args.down} layers)": (args.down, "dus"), f"up (dus, {args.up} layers)": (args.up, "dus"),
              f"up (identity, {args.up} layers)": (args.up, "identity")}  # fmt: skip
    curves = {}
    for i, (label, (layers, method)) in enumerate(starts.items()):
        model = work / f"start-{i}"
        subprocess.run([sys.executable, "-m", "model_surgery", "resize", "--model", str(work / "base" / "final"),
                        "--layers", str(layers), "--method", method, "--output", str(model)],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        curves[label] = train(args.data, str(model), work / f"run-{i}", args.steps, args)
    label = f"random ({args.up} layers)"
    curves[label] = train(args.data, "preset:opt-125m", work / "run-random", args.steps, args,
                          f"num_hidden_layers={args.up},{args.shape}")  # fmt: skip
    for label, losses in curves.items():
        print(f"{label}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = max(1, args.steps // 20)
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, losses in curves.items():
        axes.plot(range(1, len(losses) + 1), smooth(losses, window), label=label)
    axes.set(xlabel="continued training step", ylabel=f"training loss (mean of last {window} steps)")
    axes.set_title(f"Continued training after surgery (base: {args.layers} layers, {args.base_steps} steps)")
    axes.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    record = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    args.out.with_suffix(".json").write_text(json.dumps(record | {"base": base, "curves": curves}, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
