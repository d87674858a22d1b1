"""The causal-LM loss without its logits (``--loss chunked``): LM head and cross-entropy a chunk of tokens at a time.

At seq 2048 x batch 16, opt-125m's 50,272-word logits are 1.6 G numbers; the model's own loss writes them whole, then
a float32 copy, and backward writes as much again for their gradient. Here each chunk's logits are made, reduced to
its loss and, while the chunk is at hand, turned into its gradients with respect to the hidden states and the head's
weight; backward only scales those by the incoming gradient. So the head costs the same three matmuls as before, and
memory holds one chunk of logits at a time (the "fused linear cross-entropy" of Liger-Kernel, in plain PyTorch).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

IGNORE_INDEX = -100
CHUNK_TOKENS = 4096
"""Tokens per chunk: opt-125m's float32 logits of one chunk are 0.8 GB, and matmuls this size run at full speed."""


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets`` (``IGNORE_INDEX`` rows left out)."""

    @staticmethod
    def forward(  # noqa: PLR0913 - autograd passes every input positionally
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, with_grads: bool
    ) -> torch.Tensor:
        # The head's matmuls run in autocast's dtype, as the model's own ``lm_head`` would; the softmax in float32,
        # as transformers' loss does. Autocast is then switched off so that every cast below is explicit.
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        with torch.autocast(device, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            valid = targets != IGNORE_INDEX
            count = valid.sum().clamp(min=1)  # no target at all: loss 0 and zero gradients, not 0/0
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden, dtype=torch.float32) if with_grads and ctx.needs_input_grad[0] else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if with_grads and ctx.needs_input_grad[1] else None
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                # Few passes over a chunk's logits, for eager mode (compiled, inductor fuses them anyway): the
                # log-softmax reads them in the matmul's dtype and writes float32 once; its exp is the softmax,
                # turned in place into the logits' gradient; one multiply writes that in the matmuls' dtype.
                logp = torch.log_softmax(h[rows] @ w.T, dim=1, dtype=torch.float32)
                index = targets[rows].clamp(min=0).unsqueeze(1)
                total = total - torch.where(valid[rows], logp.gather(1, index).squeeze(1), 0.0).sum()
                if grad_h is None and grad_w is None:
                    continue
                # d(mean loss)/d(logits) = (softmax - one_hot(target)) / count on the rows that have a target.
                probs = logp.exp_().scatter_add_(1, index, logp.new_full(index.shape, -1.0))
                grad = torch.mul(probs, (valid[rows] / count).unsqueeze(1), out=torch.empty_like(probs, dtype=dtype))
                if grad_h is not None:
                    grad_h[rows] = grad @ w
                if grad_w is not None:
                    grad_w += (grad.T @ h[rows]).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = hidden.dtype, weight.dtype
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        scaled_h = None if grad_h is None else (grad_h * grad_loss).to(h_dtype)
        scaled_w = None if grad_w is None else (grad_w * grad_loss).to(w_dtype)
        return scaled_h, scaled_w, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = CHUNK_TOKENS
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets, ignore_index=-100)`` for 2-D ``hidden``, logits never whole.

    Gradients are only computed where autograd will ask for them (not under ``torch.no_grad``, as in evaluation).
    """
    with_grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return LinearCrossEntropy.apply(hidden, weight, targets, chunk, with_grads)


def use_chunked_loss(model: PreTrainedModel, chunk: int = CHUNK_TOKENS) -> None:
    """Make ``model(input_ids=..., labels=...)`` return the loss of :func:`linear_cross_entropy` (and no logits).

    Labels are shifted as transformers shifts them (position t predicts t + 1); without labels the model's own
    forward runs. The instance's ``forward`` is replaced (as accelerate itself does for autocast), rather than the
    model wrapped, so that DDP, FSDP and ``torch.compile`` still go through ``forward`` while the weights' names,
    checkpoints and ``save_pretrained`` stay the model's own.
    """
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        raise ValueError(f"--loss chunked needs a bias-free linear LM head; {type(model).__name__} has {head!r}")

    def forward(
        self: PreTrainedModel, input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> CausalLMOutputWithPast:
        if labels is None:
            return type(self).forward(self, input_ids=input_ids, **kwargs)
        hidden = self.base_model(input_ids=input_ids, **kwargs).last_hidden_state
        targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        weight = self.get_output_embeddings().weight
        return CausalLMOutputWithPast(loss=linear_cross_entropy(hidden.flatten(0, 1), weight, targets.flatten(), chunk))

    model.forward = types.MethodType(forward, model)
