"""What a run reports: the tqdm bar, RUN/metrics.jsonl, accelerate trackers, the mfu estimate and RUN/loss.png.

Only the main process writes, except the optional per-rank data log that exists to prove which rank read what.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment; the first fragment found in the name wins.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
)


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """Per-device peak for the mfu estimate: the override, else a known GPU's bf16 peak, else None (no mfu)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for fragment, flops in BF16_PEAK_FLOPS if fragment in name), None)


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token: ``6N`` for the matmuls (forward + backward) plus ``12 * layers * d * T`` for
    attention scores (PaLM appendix B). N excludes learned position embeddings, which are a lookup, not a matmul;
    tied input/output embeddings count once, for the LM head's matmul."""
    config = model.config
    params = sum(p.numel() for name, p in model.named_parameters() if "embed_positions" not in name)
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def keep_steps_upto(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` from a jsonl log: a resumed run redoes those steps and logs them again.

    A line torn by a kill mid-write is dropped too. The log is rewritten under another name and renamed over the old
    one, so a kill during the rewrite leaves the old log, not half of it.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write("".join(kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Meter:
    """Averages the loss over each logging interval across ranks and writes one record per log step.

    Throughput counts training time only: evaluation and checkpointing run inside :meth:`paused`.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        run_dir: Path,
        start_step: int,
        max_steps: int,
        tokens_seen: int,
        flops_per_token: float,
        peak_tflops: float | None,
    ) -> None:
        self.accelerator = accelerator
        self.path = run_dir / "metrics.jsonl"
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops(accelerator.device, peak_tflops)
        self.losses: list[torch.Tensor] = []
        self.tokens_at_lap = tokens_seen
        self.started = self.lap_started = time.perf_counter()
        self.excluded = 0.0
        if accelerator.is_main_process:
            run_dir.mkdir(parents=True, exist_ok=True)
            keep_steps_upto(self.path, start_step)
        self.bar = tqdm(
            total=max_steps, initial=start_step, desc="train", disable=not accelerator.is_local_main_process
        )

    def add_loss(self, loss: torch.Tensor) -> None:
        self.losses.append(loss.detach().float())

    def tick(self) -> None:
        self.bar.update(1)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - start

    def lap(self, step: int, tokens_seen: int, lr: float, grad_norm: float) -> dict[str, Any]:
        """The interval's record. Collective: every rank must call it at the same step."""
        loss = self.accelerator.reduce(torch.stack(self.losses).mean(), reduction="mean").item()
        now = time.perf_counter()
        seconds = max(now - self.lap_started - self.excluded, 1e-9)
        tokens_per_s = (tokens_seen - self.tokens_at_lap) / seconds
        record: dict[str, Any] = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_seen": tokens_seen,
            "tokens_per_s": tokens_per_s,
            "elapsed_s": now - self.started,
        }
        if self.peak_flops:
            record["mfu"] = self.flops_per_token * tokens_per_s / (self.peak_flops * self.accelerator.num_processes)
        self.losses, self.tokens_at_lap, self.lap_started, self.excluded = [], tokens_seen, now, 0.0
        return record

    def write(self, record: dict[str, Any]) -> None:
        self.bar.set_postfix({k: f"{record[k]:.4g}" for k in ("loss", "eval_loss", "lr") if k in record})
        if self.accelerator.is_main_process:
            # On disk before any later checkpoint is: a resume never finds the log behind its checkpoint.
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        self.bar.close()


class DataLog:
    """Per-rank jsonl of every micro-batch's sequence ids and content hash (``--debug-log-data``).

    It is how tests prove that ranks read disjoint data and that a resumed run reads what an uninterrupted one did.
    """

    def __init__(self, run_dir: Path, rank: int, start_step: int) -> None:
        self.path = run_dir / "data-log" / f"rank-{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep_steps_upto(self.path, start_step)

    def write(self, step: int, micro: int, batch: dict[str, torch.Tensor]) -> None:
        digest = hashlib.sha1(batch["input_ids"].cpu().numpy().tobytes()).hexdigest()
        record = {"step": step, "micro": micro, "seq_ids": batch["seq_ids"].tolist(), "sha1": digest}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def plot_losses(run_dir: Path) -> Path:
    """RUN/loss.png from metrics.jsonl: train loss per log step and eval loss where evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    evals = [r for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], label="train")
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # exp overflows float past ~709
