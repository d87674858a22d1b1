"""The training loop, nanoGPT style: :func:`train` reads top to bottom; data, checkpoints and metrics live elsewhere.

Accelerate traps this module avoids on purpose:

* The DataLoader is not passed through ``accelerator.prepare``: each rank's :class:`~train.data.DataStream` already
  reads only its share, and prepare would either shard it again or (``dispatch_batches``, the default for iterable
  datasets) read everything on rank 0 and broadcast it.
* The scheduler is prepared with ``step_scheduler_with_optimizer=False`` and stepped once per optimizer step;
  otherwise accelerate steps it ``num_processes`` times per step and the schedule would depend on the world size.
* ``cpu=True`` when there is no accelerator: without it, processes started by ``accelerate launch --multi_gpu`` on a
  CPU-only host never form a process group and each trains alone.
"""

from __future__ import annotations

import importlib.util
import math
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from train import checkpoint
from train.compat import check_inputs
from train.config import TrainConfig
from train.data import DataStream, EvalDataError, check_same_packing
from train.loss import use_chunked_loss
from train.metrics import DataLog, Meter, flops_per_token, perplexity, plot_losses
from train.model import build_model, enable_activation_checkpointing, lr_lambda, make_optimizer
from train.preemption import Preempted, Preemption


def train(cfg: TrainConfig) -> Path:
    """Train as ``cfg`` says; returns ``RUN/final``. The loop below is the whole algorithm."""
    check_inputs(cfg)  # before anything is built: complete data, and a model whose tokenizer and vocabulary fit it
    accelerator = make_accelerator(cfg)
    run = Path(cfg.output)
    train_data, val_data = open_streams(cfg, accelerator)
    manifest = train_data.index.manifest
    model, optimizer, scheduler, flops = build_prepared(cfg, accelerator, train_data)
    step = checkpoint.restore(accelerator, run, train_data, cfg.resume)
    meter = Meter(accelerator, run, step, cfg.max_steps, train_data.tokens_seen, flops, cfg.peak_tflops)
    data_log = DataLog(run, accelerator.process_index, step) if cfg.debug_log_data else None
    batches = iter(train_data)
    preemption = Preemption(accelerator)
    model.train()
    while step < cfg.max_steps:
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            if data_log:
                data_log.write(step + 1, micro, batch)
            input_ids = batch["input_ids"].to(accelerator.device, non_blocking=True)
            with accelerator.accumulate(model):
                loss = model(input_ids=input_ids, labels=causal_labels(input_ids, manifest), use_cache=False).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            meter.add_loss(loss)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += 1
        meter.tick()
        evaluating = val_data is not None and due(step, cfg.eval_every, cfg.max_steps)
        if evaluating or due(step, cfg.log_every, cfg.max_steps):
            record = meter.lap(step, train_data.tokens_seen, lr, grad_norm.item())
            if evaluating:
                with meter.paused():
                    record |= evaluate(model, val_data, cfg.eval_batches, accelerator, manifest)
            meter.write(record)
        stopping = preemption.requested()  # collective: every rank stops at the same step
        if stopping or due(step, cfg.save_every, cfg.max_steps):
            with meter.paused():
                saved = checkpoint.save(accelerator, run, step, train_data, cfg.keep_checkpoints)
        if stopping:
            meter.close()
            accelerator.print(f"SIGTERM: stopped after step {step}, saved {saved}; continue with --resume")
            accelerator.end_training()
            raise Preempted(step)
    meter.close()
    final = checkpoint.export_final(accelerator, model, run, Path(cfg.data))
    if accelerator.is_main_process:
        plot_losses(run)
    accelerator.end_training()
    preemption.close()  # only now: a SIGTERM during the export above is noted and ignored, the export completes
    return final


def due(step: int, every: int, max_steps: int) -> bool:
    """Periodic actions run every ``every`` steps and at the last step; ``every=0`` disables them."""
    return every > 0 and (step % every == 0 or step == max_steps)


def build_prepared(
    cfg: TrainConfig, accelerator: Accelerator, train_data: DataStream
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, float]:
    """Model, optimizer and schedule, passed through ``accelerator.prepare``; plus the model's FLOPs per token."""
    set_seed(cfg.seed)  # identical init on every rank
    model = build_model(cfg.model, cfg.model_overrides, special_ids(train_data.index.manifest), cfg.attn_implementation)
    if cfg.loss == "chunked":
        use_chunked_loss(model)
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    flops = flops_per_token(model, train_data.index.seq_len)
    optimizer = make_optimizer(model, cfg, accelerator.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    set_seed(cfg.seed, device_specific=True)  # distinct dropout masks per rank
    return model, optimizer, scheduler, flops


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The Accelerator with the module docstring's settings, and trackers started on the run's config."""
    trackers = resolve_trackers(cfg.report_to)
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(),
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        gradient_accumulation_steps=cfg.grad_accum,
        step_scheduler_with_optimizer=False,
        dynamo_backend="inductor" if cfg.compile else "no",
        log_with=trackers or None,
        project_dir=cfg.output,
    )
    if trackers:
        accelerator.init_trackers("train", config=cfg.to_flat_dict())
    return accelerator


def resolve_mixed_precision(choice: str) -> str:
    """``auto`` is bf16 on a GPU that supports it and ``no`` elsewhere (CPU bf16 autocast is slow; ask for it).

    The script's flag decides, not ``accelerate launch --mixed_precision``: the launcher always sets a value ("no"
    when not told), so deferring to it would turn bf16 off on GPUs by default.
    """
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def resolve_trackers(report_to: str) -> list[str]:
    """``auto`` means TensorBoard (a dependency of the project) when it is importable, and nothing otherwise."""
    if report_to == "auto":
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    return [name for name in report_to.split(",") if name and name != "none"]


def open_streams(cfg: TrainConfig, accelerator: Accelerator) -> tuple[DataStream, DataStream | None]:
    """The rank's training stream and, if the data (or ``--eval-data``) has a val split, its unshuffled val stream."""
    common: dict[str, Any] = dict(
        batch_size=cfg.batch_size,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        seed=cfg.seed,
        window=cfg.shuffle_window,
    )
    train_data = DataStream(
        cfg.data, "train", num_workers=cfg.num_workers, pin_memory=accelerator.device.type == "cuda", **common
    )
    try:
        val_data = DataStream(cfg.eval_data or cfg.data, "val", shuffle=False, **common)
    except FileNotFoundError:
        if cfg.eval_data:
            raise EvalDataError(f"no val split under {cfg.eval_data}") from None
        accelerator.print(f"no val split under {cfg.data}: evaluation disabled")
        val_data = None
    if val_data is not None and cfg.eval_data:
        check_same_packing(train_data.index, val_data.index)
    return train_data, val_data


def special_ids(manifest: dict[str, Any]) -> dict[str, int | None]:
    """The packer's special token ids, as model-config fields."""
    return {
        "bos_token_id": manifest.get("bos_id"),
        "eos_token_id": manifest.get("eos_id"),
        "pad_token_id": manifest.get("pad_id"),
    }


def causal_labels(input_ids: torch.Tensor, manifest: dict[str, Any]) -> torch.Tensor:
    """Labels are the inputs (the model shifts them); padding, if the packer ever pads, is not predicted."""
    pad_id = manifest.get("pad_id")
    return input_ids if pad_id is None else input_ids.masked_fill(input_ids == pad_id, -100)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, val: DataStream, batches: int, accelerator: Accelerator, manifest: dict[str, Any]
) -> dict[str, float]:
    """Mean loss over the first ``batches`` global batches of val (the same ones every time), and its perplexity.

    The count is capped at what val holds, so a small val split is not read twice in one evaluation.
    """
    model.eval()
    val.position = 0
    losses = []
    for batch in islice(val, min(batches, max(1, val.index.num_sequences // val.global_batch))):
        input_ids = batch["input_ids"].to(accelerator.device)
        losses.append(
            model(input_ids=input_ids, labels=causal_labels(input_ids, manifest), use_cache=False).loss.float()
        )
    model.train()
    loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
    return {"eval_loss": loss, "eval_ppl": perplexity(loss)}
