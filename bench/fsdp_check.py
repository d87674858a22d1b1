"""FSDP on GPUs: ``final/`` is one full model holding the trained weights, and an FSDP checkpoint resumes (not a test).

    PYTHON=python3 bash bench/gpu_check.sh                 # runs this after the throughput comparison
    .venv/bin/python bench/fsdp_check.py --processes 2     # directly, on a machine with 2 GPUs
    .venv/bin/python bench/fsdp_check.py --smoke           # the script's logic on the CPU (no FSDP there, see below)

It trains opt-125m on synthetic shards with ``accelerate launch --config_file docker/accelerate/fsdp.yaml`` (the
documented FSDP2 config, one process per GPU, at most 2 by default), then checks in a fresh process:

* every weight in ``RUN/final/model.safetensors`` has the full shape of a freshly built model (a rank-0 save of
  FSDP-sharded parameters would hold shards, or nothing);
* the exported model's loss on the whole val split equals the run's last ``eval_loss`` (evaluated on the same
  sequences by the sharded model at the same step), to bf16 tolerance, and is far below an untrained model's;
* ``--resume`` with a larger ``--max-steps`` loads the run's FSDP checkpoint and trains on.

Accelerate 1.15 enables FSDP only on GPU-like devices: on a CPU-only host the same launch runs plain DDP (gloo), so
``--smoke`` checks this script, not FSDP.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=4"
BATCH, VAL_SEQUENCES = 4, 8


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, help="default: min(2, GPUs); 2 is what shards anything")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--smoke", action="store_true", help="tiny model, one process, on the CPU")
    p.add_argument("--out", type=Path, help="also write fsdp_results.json here")
    args = p.parse_args()
    import torch

    args.processes = args.processes or (1 if args.smoke else max(1, min(2, torch.cuda.device_count())))
    args.lr = 1e-3
    if args.smoke:
        args.steps, args.seq_len, args.lr = 20, 32, 3e-3
    return args


def launch(args: argparse.Namespace, data: Path, run: Path, steps: int, *extra: str) -> None:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "docker/accelerate/fsdp.yaml"),
        "--num_processes", str(args.processes), "-m", "train", "--data", str(data), "--model", "preset:opt-125m",
        "--output", str(run), "--max-steps", str(steps), "--batch-size", str(BATCH), "--warmup-steps", "5",
        "--lr", str(args.lr), "--log-every", "5", "--eval-every", str(args.steps), "--eval-batches", str(VAL_SEQUENCES),
        "--save-every", str(args.steps), "--num-workers", "1", "--report-to", "none", *extra,
    ]  # fmt: skip
    cmd += ["--model-overrides", TINY] if args.smoke else []
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600)


def check_export(args: argparse.Namespace, data: Path, run: Path) -> dict[str, float]:
    """Full shapes, and the exported weights' val loss equal to the run's last eval_loss."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from train.config import parse_overrides
    from train.loop import special_ids
    from train.model import build_model

    manifest = json.loads((data / "manifest.json").read_text())
    fresh = build_model("preset:opt-125m", parse_overrides(TINY if args.smoke else ""), special_ids(manifest))
    expected = {name: tuple(t.shape) for name, t in fresh.state_dict().items()}
    saved = {name: tuple(t.shape) for name, t in load_file(run / "final" / "model.safetensors").items()}
    wrong = {name: (shape, expected.get(name)) for name, shape in saved.items() if expected.get(name) != shape}
    assert saved and not wrong, f"final/ weights not full: {wrong}"
    missing = set(expected) - set(saved) - {"lm_head.weight"}  # tied to the input embedding, saved once
    assert not missing, f"final/ lacks {sorted(missing)}"

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(run / "final").to(device).eval()
    rows = [pq.read_table(f).column("input_ids").to_pylist() for f in sorted((data / "val").glob("*.parquet"))]
    ids = torch.tensor(np.concatenate(rows), dtype=torch.long, device=device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        losses = [model(input_ids=batch, labels=batch).loss.float().item() for batch in ids.split(BATCH)]
    exported = sum(losses) / len(losses)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trained = next(r["eval_loss"] for r in reversed(records) if "eval_loss" in r)
    print(f"final/: {len(saved)} full tensors; val loss {exported:.4f}, the run's eval_loss {trained:.4f}", flush=True)
    assert abs(exported - trained) < 0.05, (exported, trained)
    assert exported < math.log(fresh.config.vocab_size) - 1.0, exported
    return {"exported_val_loss": exported, "run_eval_loss": trained}


def main() -> None:
    args = parse_args()
    from gpu_check import write_data

    work = Path(tempfile.mkdtemp(prefix="fsdp-check-"))
    # Val: VAL_SEQUENCES, all read by one evaluation whether 1 or 2 processes read them.
    data = write_data(work, SimpleNamespace(seq_len=args.seq_len, batch=BATCH))
    run = work / "run"
    launch(args, data, run, args.steps)
    result = check_export(args, data, run)
    launch(args, data, run, args.steps + 5, "--resume")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == args.steps + 5 and len(steps) == len(set(steps)), steps
    print(f"resumed from the FSDP checkpoint at step {args.steps} to step {steps[-1]}: ok", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"processes": args.processes, "smoke": args.smoke, **result}
        (args.out / "fsdp_results.json").write_text(json.dumps(record, indent=1))
    shutil.rmtree(work)
    print("fsdp_check: ok")


if __name__ == "__main__":
    main()
