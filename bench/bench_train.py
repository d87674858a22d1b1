"""Throughput of ``python -m train`` against the Hugging Face ``Trainer``, and of the data stream alone (CPU).

Both trainers get the seed notebook's settings: OPT, batch 2, sequence length 32, bf16 autocast, gradient
checkpointing, AdamW (lr 5e-5, betas 0.9/0.999, no weight decay, clip 1.0), 10 warmup steps then linear decay. The
Trainer reads a ``datasets`` dataset built with ``load_dataset("parquet")`` from the same shards. Tokens/s is measured
in steady state, after ``--skip`` steps of warm-up. The data-stream part reports the tokens/s one process is supplied
and the time to the first batch after resuming at an early and at a very late position: seeking uses footer row
counts only, so the late one must not be slower.

    .venv/bin/python bench/bench_train.py                # small model (2 layers, width 128), a few minutes
    .venv/bin/python bench/bench_train.py --full-model   # the opt-125m preset
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.train_fixtures import write_packed  # noqa: E402
from train.data import DataStream  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 128, "ffn_dim": 512, "num_attention_heads": 4}
BATCH, SEQ_LEN, LR, WARMUP = 2, 32, 5e-5, 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="packed data directory (default: synthetic, seq_len 32)")
    parser.add_argument("--full-model", action="store_true", help="opt-125m preset instead of the small model")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per trainer")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the tokens/s (warm-up)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each trainer; medians reported")
    parser.add_argument("--loader-batches", type=int, default=300, help="batches read in the data-stream benchmark")
    parser.add_argument(
        "--loader-seq-len", type=int, default=2048, help="sequence length of the synthetic data-stream benchmark data"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser.parse_args()


def steady_tokens_per_s(times: list[float], tokens: list[int], skip: int) -> float:
    """Tokens per second between the end of step ``skip`` and the end of the last step."""
    return (tokens[-1] - tokens[skip - 1]) / (times[-1] - times[skip - 1])


def bench_ours(data: Path, overrides: dict[str, int], steps: int, skip: int, run: Path) -> float:
    """Our trainer in its own process (accelerate's state is per process), timed from its metrics.jsonl."""
    override_text = ",".join(f"{k}={v}" for k, v in overrides.items())
    cmd = [
        sys.executable, "-m", "train", "--data", str(data), "--model", "preset:opt-125m", "--output", str(run),
        "--max-steps", str(steps), "--batch-size", str(BATCH), "--lr", str(LR), "--warmup-steps", str(WARMUP),
        "--schedule", "linear", "--min-lr-ratio", "0", "--weight-decay", "0", "--adam-beta2", "0.999",
        "--grad-clip", "1.0", "--mixed-precision", "bf16", "--gradient-checkpointing", "--num-workers", "0",
        "--log-every", "1", "--eval-every", "0", "--save-every", "0", "--report-to", "none",
    ]  # fmt: skip
    if override_text:
        cmd += ["--model-overrides", override_text]
    subprocess.run(cmd, cwd=ROOT, check=True, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return steady_tokens_per_s([r["elapsed_s"] for r in records], [r["tokens_seen"] for r in records], skip)


def bench_hf_trainer(data: Path, overrides: dict[str, int], steps: int, skip: int, workdir: Path) -> float:
    """The ``Trainer`` in this process, timed by a callback at the end of every step."""
    import torch
    from datasets import load_dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from model_surgery.presets import make_config

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    files = sorted(str(p) for p in (data / "train").glob("*.parquet"))
    dataset = load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(workdir / "hf-cache"))
    tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
    model = AutoModelForCausalLM.from_config(make_config("opt-125m", **overrides), dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(workdir),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        warmup_steps=WARMUP,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        bf16=True,
        use_cpu=True,
        activation_checkpointing=True,  # transformers 5's name for gradient_checkpointing (non-reentrant)
        dataloader_num_workers=0,
        logging_steps=steps,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    clock = StepClock()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock]).train()
    tokens = [BATCH * SEQ_LEN * (i + 1) for i in range(len(clock.times))]
    return steady_tokens_per_s(clock.times, tokens, skip)


def bench_stream(data: Path, batches: int) -> dict[str, float]:
    """Tokens/s one process is supplied (batches of 8; 0 and 2 workers), and time to the first batch after resuming
    early vs late (~1000 epochs in)."""
    results: dict[str, float] = {}
    for workers in (0, 2):
        stream = DataStream(data, "train", batch_size=8, num_workers=workers)
        it = iter(stream)
        next(it)  # worker start-up is not throughput
        start = time.perf_counter()
        for _ in itertools.islice(it, batches):
            pass
        results[f"stream_tokens_per_s_workers{workers}"] = (
            batches * 8 * stream.index.seq_len / (time.perf_counter() - start)
        )
    n = DataStream(data, "train", batch_size=8).index.num_sequences
    for name, position in (("early", 37), ("late", 997 * n + n // 2 + 37)):
        stream = DataStream(data, "train", batch_size=8)
        start = time.perf_counter()
        stream.load_state_dict({"position": position})
        next(iter(stream))
        results[f"resume_{name}_s"] = time.perf_counter() - start
    return results


def main() -> None:
    args = parse_args()
    overrides = {} if args.full_model else SMALL
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = Path(tmp)
        data = args.data or write_packed(workdir, seq_len=SEQ_LEN, train_files=(4000, 4000), row_group_size=500)
        results: dict[str, float | int | str] = {"model": "opt-125m" if args.full_model else f"opt-125m with {SMALL}"}
        ours, hf = [], []
        for i in range(args.repeats):  # alternated, so that load from other processes hits both alike
            ours.append(bench_ours(data, overrides, args.steps, args.skip, workdir / f"ours-{i}"))
            hf.append(bench_hf_trainer(data, overrides, args.steps, args.skip, workdir / f"hf-{i}"))
        results["ours_tokens_per_s"] = statistics.median(ours)
        results["hf_trainer_tokens_per_s"] = statistics.median(hf)
        results["ours_over_hf_trainer"] = results["ours_tokens_per_s"] / results["hf_trainer_tokens_per_s"]
        results["runs_ours_hf"] = " ".join(f"{a:.4g}/{b:.4g}" for a, b in zip(ours, hf, strict=True))
        stream_data = args.data or write_packed(
            workdir / "stream", seq_len=args.loader_seq_len, train_files=(1000, 1000), row_group_size=128
        )
        results["stream_seq_len"] = DataStream(stream_data, "train", batch_size=1).index.seq_len
        results.update(bench_stream(stream_data, args.loader_batches))
    for key, value in results.items():
        print(f"{key:36s} {value:.4g}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
