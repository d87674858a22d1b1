"""Change an OPT model's depth by keeping, copying and dropping whole decoder layers.

Two methods, for a model of ``L`` layers resized to ``N``:

* ``dus`` - SOLAR's depth up-scaling, also used to shrink: the new stack keeps the first ``ceil(N/2)`` and the
  last ``floor(N/2)`` layers of the old one. Growing 12 -> 16 this is two overlapping copies of the model,
  ``layers[:-4] + layers[4:]``; shrinking 12 -> 10 it drops the middle, ``layers[:5] + layers[-5:]``, keeping the
  layers next to the embeddings and the head. Past ``2L`` the rule is applied again to its own result
  (12 -> 24 -> N), so any ``N >= 1`` has a plan. The grown model is *not* function-preserving; SOLAR relies on
  continued pretraining to heal the seam.
* ``identity`` - LLaMA Pro's function-preserving growth: each original layer is kept and new layers are copies
  whose attention ``out_proj`` and ``fc2`` weights and biases are zero, so with OPT's pre-LayerNorm residual blocks
  they add nothing and the grown model computes exactly what the original did. New layers are spread evenly (the
  ``i``-th of ``k`` goes after original layer ``ceil(i*L/k)``, 1-based; several after one layer when ``k > L``), or
  with ``interleave=K`` (``--interleave K``) one goes after every ``K``-th original layer, which fixes
  ``N = L + L // K``. Identity growth only grows (``N > L``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from transformers import OPTForCausalLM
from transformers.models.opt.modeling_opt import OPTDecoderLayer

from model_surgery.checks import check_sizes

METHODS = ("dus", "identity")

# (index of the source layer, whether the copy is a new zero-output layer)
Plan = list[tuple[int, bool]]


def dus_plan(num_layers: int, target: int) -> list[int]:
    """Source layer index for each position of the depth-up-scaled (or down-scaled) stack; see the module doc."""
    if target < 1:
        raise ValueError(f"cannot resize to {target} layers: need at least 1")
    plan = list(range(num_layers))
    while len(plan) != target:
        size = min(target, 2 * len(plan))
        plan = plan[: (size + 1) // 2] + plan[len(plan) - size // 2 :]
    return plan


def identity_plan(num_layers: int, target: int, interleave: int | None = None) -> Plan:
    """Each original layer in order, followed by the new zero-output copies that go after it; see the module doc."""
    if target <= num_layers:
        raise ValueError(
            f"identity growth only adds layers ({num_layers} -> {target} is not growth); use method 'dus' to shrink"
        )
    new = target - num_layers
    if interleave is None:
        slots = [-(-(i + 1) * num_layers // new) - 1 for i in range(new)]
    else:
        if interleave < 1:
            raise ValueError(f"interleave must be >= 1, got {interleave}")
        slots = list(range(interleave - 1, num_layers, interleave))
        if len(slots) != new:
            raise ValueError(
                f"interleave {interleave} puts a new layer after every {interleave} of the {num_layers} layers, "
                f"giving {num_layers + len(slots)} layers in all, not {target}"
            )
    return [entry for i in range(num_layers) for entry in [(i, False)] + [(i, True)] * slots.count(i)]


def resize(model: OPTForCausalLM, layers: int, method: str = "dus", interleave: int | None = None) -> OPTForCausalLM:
    """Give ``model`` ``layers`` decoder layers by ``method`` (``"dus"`` or ``"identity"``), in place, and return it.

    In place because everything but the layer stack (embeddings, final norm, the LM head tied to the embeddings)
    stays the very same objects, so the tie survives and a large model is not held twice in memory. A source
    layer is reused once and deep-copied for every further use, so no two layers share a parameter and training
    can pull twins apart. Layers are renumbered so the KV cache files each one under its new position. ``layers``
    is at most ``checks.LIMITS["num_hidden_layers"]`` (``checks.Refused`` otherwise).
    """
    if not isinstance(model, OPTForCausalLM):
        raise TypeError(f"expected an OPTForCausalLM, got {type(model).__name__}")
    check_sizes({"num_hidden_layers": layers})
    decoder = model.model.decoder
    if method == "dus":
        if interleave is not None:
            raise ValueError("interleave only applies to method 'identity'")
        plan = [(source, False) for source in dus_plan(len(decoder.layers), layers)]
    elif method == "identity":
        if not model.config.do_layer_norm_before:
            raise ValueError("identity growth needs pre-LayerNorm layers; this model normalises after the residual")
        plan = identity_plan(len(decoder.layers), layers, interleave)
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    decoder.layers = nn.ModuleList(_build(decoder.layers, plan))
    for index, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = index
    model.config.num_hidden_layers = layers
    return model


def _build(layers: Sequence[OPTDecoderLayer], plan: Plan) -> Iterator[OPTDecoderLayer]:
    """The layers of ``plan``: each source layer itself at its first plain use, a deep copy everywhere else."""
    used: set[int] = set()
    for source, silent in plan:
        if silent or source in used:
            layer = copy.deepcopy(layers[source])
        else:
            layer = layers[source]
            used.add(source)
        if silent:
            _silence(layer)
        yield layer


@torch.no_grad()
def _silence(layer: OPTDecoderLayer) -> None:
    """Zero the two projections that write into the residual stream, so the layer adds nothing to it."""
    for linear in (layer.self_attn.out_proj, layer.fc2):
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()
