"""Activation checkpointing, gradient clipping, bf16 autocast, the chunked loss and the attention kernels: each does
what it says, and its flag reaches the run.

The flag tests run the real loop (:func:`train.loop.train`, parsed from command-line flags) in this process, with
PyTorch's global module and optimizer hooks observing it from outside: what dtype the decoder layers compute in and
whether autocast is on inside them, how often each layer runs forward (twice when checkpointing recomputes it in
backward), which attention kernels they use, whether the LM head runs, and the gradient norm the optimizer actually
steps with. Each flag run has a default run as contrast, so the observations are shown to tell the two apart.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers.models.opt.modeling_opt import OPTAttention, OPTForCausalLM

from tests.train_fixtures import write_packed
from train.config import TrainConfig, load_config
from train.model import build_model, enable_activation_checkpointing, make_optimizer

LAYERS, STEPS, CLIP = 2, 2, 0.05
TINY = {"num_hidden_layers": LAYERS, "hidden_size": 64, "ffn_dim": 128, "num_attention_heads": 4, "vocab_size": 600}
# The packed data's token ids need the preset's full vocabulary.
OVERRIDES = ",".join(f"{key}={value}" for key, value in TINY.items() if key != "vocab_size")


@dataclass
class Observed:
    """What the hooks saw during one run."""

    attention_calls: int = 0
    attention: set[str] = field(default_factory=set)
    lm_head: torch.nn.Module | None = None
    lm_head_calls: int = 0
    checkpointing: set[bool] = field(default_factory=set)
    linear_dtypes: Counter = field(default_factory=Counter)
    autocast: set[tuple[bool, torch.dtype | None]] = field(default_factory=set)
    step_grad_norms: list[float] = field(default_factory=list)


def checkpointing_on(model: torch.nn.Module) -> bool:
    """The model's own answer; transformers renamed the property within the 5.x range this project allows."""
    if hasattr(type(model), "is_activation_checkpointing"):
        return model.is_activation_checkpointing
    return model.is_gradient_checkpointing


@contextlib.contextmanager
def observe() -> Iterator[Observed]:
    """Global forward and optimizer-step hooks for the duration of the block."""
    seen = Observed()

    def pre_forward_hook(module: torch.nn.Module, args: Any) -> None:
        # The attention, not the layer: transformers checkpoints the layer's forward, inside the layer's own hooks.
        # A pre-hook, because a recompute stops as soon as backward has what it needs, before post-hooks would run.
        if isinstance(module, OPTAttention):
            seen.attention_calls += 1
            seen.attention.add(module.config._attn_implementation)
            enabled = torch.is_autocast_enabled("cpu")
            seen.autocast.add((enabled, torch.get_autocast_dtype("cpu") if enabled else None))
        elif isinstance(module, OPTForCausalLM):
            seen.lm_head = module.lm_head

    def forward_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, torch.nn.Linear) and isinstance(output, torch.Tensor):
            seen.linear_dtypes[output.dtype] += 1
            seen.lm_head_calls += module is seen.lm_head
        elif isinstance(module, OPTForCausalLM):
            seen.checkpointing.add(checkpointing_on(module))

    def step_hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        seen.step_grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    handles = [
        torch.nn.modules.module.register_module_forward_pre_hook(pre_forward_hook),
        torch.nn.modules.module.register_module_forward_hook(forward_hook),
        register_optimizer_step_pre_hook(step_hook),
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_packed(tmp_path_factory.mktemp("data"), seq_len=16, train_files=(24,), val_files=(8,))


def run_train(packed: Path, run: Path, *flags: str) -> tuple[Observed, list[dict[str, Any]]]:
    """``python -m train`` with ``flags``, in this process; the accelerate singletons are reset afterwards."""
    from accelerate.state import AcceleratorState, GradientState

    from train.loop import train

    argv = [
        "--data", str(packed), "--model", "preset:opt-125m", "--model-overrides", OVERRIDES, "--output", str(run),
        "--max-steps", str(STEPS), "--batch-size", "2", "--lr", "1e-3", "--warmup-steps", "0", "--log-every", "1",
        "--eval-every", "0", "--save-every", "0", "--num-workers", "0", "--report-to", "none", *flags,
    ]  # fmt: skip
    try:
        with observe() as seen:
            train(load_config(argv))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return seen, metrics


def test_activation_checkpointing_keeps_loss_and_gradients() -> None:
    """The same loss and gradients with and without recomputation, dropout included (the recompute must replay the
    forward's random masks), while each layer really does run forward a second time in backward."""
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model("preset:opt-125m", TINY, {}).train()
        if checkpointing:
            enable_activation_checkpointing(model)
        assert checkpointing_on(model) == checkpointing
        ids = torch.randint(3, TINY["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)
        with observe() as seen:
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        results.append((loss.detach(), grads, seen.attention_calls))
    (plain_loss, plain_grads, plain_calls), (ckpt_loss, ckpt_grads, ckpt_calls) = results
    assert (plain_calls, ckpt_calls) == (LAYERS, 2 * LAYERS)
    torch.testing.assert_close(ckpt_loss, plain_loss)
    assert ckpt_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, msg=name)


def test_flags_reach_the_model_and_optimizer(packed: Path, tmp_path: Path) -> None:
    """``--gradient-checkpointing``, ``--grad-clip`` and ``--mixed-precision bf16`` each change what the loop does,
    compared with a run without them: layers recomputed in backward, the optimizer stepping with a gradient of norm
    at most the clip (while the logged pre-clip norm is above it) and decoder matmuls computed in bf16 under CPU
    autocast (with float32 master weights). ``--loss chunked --attn-implementation eager`` trains as the plain run
    does (same losses and gradient norms) with the other attention kernels and without calling the LM head."""
    plain, plain_metrics = run_train(packed, tmp_path / "plain", "--grad-clip", "0", "--mixed-precision", "no")
    chunked, chunked_metrics = run_train(
        packed, tmp_path / "chunked", "--grad-clip", "0", "--mixed-precision", "no", "--loss", "chunked",
        "--attn-implementation", "eager",
    )  # fmt: skip
    flagged, flagged_metrics = run_train(
        packed,
        tmp_path / "flagged",
        "--gradient-checkpointing",
        "--grad-clip",
        str(CLIP),
        "--mixed-precision",
        "bf16",
    )

    assert plain.attention == {"sdpa"} and chunked.attention == {"eager"}
    assert plain.lm_head_calls == STEPS and chunked.lm_head_calls == 0
    for key in ("loss", "grad_norm"):
        assert [m[key] for m in chunked_metrics] == pytest.approx([m[key] for m in plain_metrics], rel=1e-4), key

    assert plain.checkpointing == {False} and flagged.checkpointing == {True}
    assert plain.attention_calls == STEPS * LAYERS
    assert flagged.attention_calls == 2 * STEPS * LAYERS

    logged = [m["grad_norm"] for m in plain_metrics]
    assert plain.step_grad_norms == pytest.approx(logged, rel=1e-4)  # no clipping: the optimizer sees the raw norm
    assert len(flagged.step_grad_norms) == STEPS
    assert all(m["grad_norm"] > 2 * CLIP for m in flagged_metrics), flagged_metrics
    assert all(norm <= CLIP * (1 + 1e-4) for norm in flagged.step_grad_norms), flagged.step_grad_norms

    assert plain.autocast == {(False, None)} and set(plain.linear_dtypes) == {torch.float32}
    assert flagged.autocast == {(True, torch.bfloat16)}
    assert flagged.linear_dtypes[torch.bfloat16] > 0 and flagged.linear_dtypes[torch.float32] == 0
    from safetensors import safe_open

    with safe_open(tmp_path / "flagged" / "final" / "model.safetensors", "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float32}


def test_optimizer_is_fused_on_cuda() -> None:
    """One fused AdamW kernel per step on CUDA (the CPU path keeps the default implementation)."""
    cfg = TrainConfig(data="packed", model="preset:opt-125m", output="run")
    model = build_model("preset:opt-125m", TINY, {})
    assert make_optimizer(model, cfg, torch.device("cuda")).defaults["fused"] is True
    assert not make_optimizer(model, cfg, torch.device("cpu")).defaults["fused"]
