"""The model, its optimizer and its learning-rate schedule: everything the loop steps, built from the config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from model_surgery.checks import check_overrides
from model_surgery.presets import make_config
from train.config import TrainConfig

PRESET_PREFIX = "preset:"


def build_model(
    spec: str, overrides: dict[str, Any], special_ids: dict[str, int | None], attn_implementation: str = "auto"
) -> PreTrainedModel:
    """A ``save_pretrained`` directory, or ``preset:NAME`` with random init, with the named attention kernels
    (``auto``: transformers' choice).

    A preset takes the data's special token ids (from the manifest) so that generation from the trained model stops
    at the tokenizer's EOS rather than at the preset's; explicit overrides still win. Weights are kept in float32
    whatever the checkpoint's dtype: they are the optimizer's master copy, and autocast supplies bf16 compute.
    Overrides must be OPT config fields (``model_surgery.checks.Refused`` otherwise), so that none reaches
    ``from_pretrained`` as a loader keyword such as ``trust_remote_code``.
    """
    check_overrides(overrides)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    if spec.startswith(PRESET_PREFIX):
        return AutoModelForCausalLM.from_config(model_config(spec, overrides, special_ids), **kwargs)
    return AutoModelForCausalLM.from_pretrained(spec, **kwargs, **overrides)


def model_config(
    spec: str, overrides: dict[str, Any], special_ids: dict[str, int | None] | None = None
) -> PretrainedConfig:
    """The config :func:`build_model` builds ``spec`` with, read without building (or loading) any weights."""
    if spec.startswith(PRESET_PREFIX):
        return make_config(spec.removeprefix(PRESET_PREFIX), **{**(special_ids or {}), **overrides})
    return AutoConfig.from_pretrained(spec, **overrides)


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each layer's activations in backward, non-reentrant (works with DDP, compile and frozen inputs).

    transformers 5 renamed ``gradient_checkpointing_enable`` (now deprecated) to ``activation_checkpointing_enable``
    within the 5.x range this project allows, so use the new name where it exists.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (decaying norms and biases only hurts), fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), fused=device.type == "cuda")


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` after ``step`` optimizer steps: linear warmup, then the chosen decay to
    ``min_lr_ratio``.

    Warmup starts at ``1/(warmup+1)`` rather than 0 so that the first step is not wasted.
    """

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1.0 - progress
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay

    return factor
