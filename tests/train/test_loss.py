"""``--loss chunked`` (:mod:`train.loss`) against the model's own loss: the same loss and the same gradients for every
parameter, in float32 and under bf16 autocast, with ignored (-100) labels, across chunk boundaries, and without ever
holding the whole logits tensor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from train.loss import linear_cross_entropy, use_chunked_loss
from train.model import build_model

VOCAB, BATCH, SEQ, CHUNK = 600, 4, 64, 60  # 256 tokens: chunks of 60, the last one short; logits > weights
TINY = {"num_hidden_layers": 2, "hidden_size": 64, "ffn_dim": 128, "num_attention_heads": 4, "vocab_size": VOCAB}


class Ops(TorchDispatchMode):
    """The most elements any single operator produced inside the block, and the number of matrix products."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = self.matmuls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        out = func(*args, **(kwargs or {}))
        self.matmuls += func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm)
        for tensor in out if isinstance(out, tuple | list) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.numel = max(self.numel, tensor.numel())
        return out


def labels_with_padding(ids: torch.Tensor) -> torch.Tensor:
    """Ignored labels at the start, in the middle and at the end, as padding from the packer would be."""
    labels = ids.clone()
    labels[0, 5:9] = -100
    labels[1, :3] = -100
    labels[1, -2:] = -100
    return labels


def loss_and_grads(chunked: bool, bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    model = build_model("preset:opt-125m", TINY, {}).train()  # the preset's dropout on: both must replay its masks
    if chunked:
        use_chunked_loss(model, chunk=CHUNK)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with Ops() as ops, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=ids, labels=labels_with_padding(ids), use_cache=False).loss
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}, ops.numel


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16-autocast"])
def test_chunked_loss_matches_the_models_loss_and_gradients(bf16: bool) -> None:
    ref_loss, ref_grads, ref_largest = loss_and_grads(chunked=False, bf16=bf16)
    loss, grads, largest = loss_and_grads(chunked=True, bf16=bf16)
    assert ref_largest >= BATCH * SEQ * VOCAB  # the model's own loss holds all logits at once ...
    assert largest < BATCH * SEQ * VOCAB / 2  # ... the chunked one never more than a chunk's
    assert loss.dtype == ref_loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    # bf16 rounds each chunk's contribution to the head's gradient before summing them; the model's own loss rounds
    # the sum once. Tolerances are relative to each gradient's largest entry. The key bias is left out: its gradient
    # is zero in exact arithmetic (softmax ignores a shift of all of a query's scores), so both sides hold only noise.
    rtol = 1e-2 if bf16 else 1e-4
    for name, ref in ref_grads.items():
        if name.endswith("k_proj.bias"):
            continue
        torch.testing.assert_close(grads[name], ref, rtol=rtol, atol=rtol * ref.abs().max().item(), msg=name)


def test_linear_cross_entropy_edge_cases() -> None:
    """Against ``F.cross_entropy`` directly: a chunk larger than the input, no gradient work under ``no_grad``, and
    a batch with no target at all, which gives loss 0 and zero gradients rather than NaN."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(10, 8, generator=gen, requires_grad=True)
    weight = torch.randn(30, 8, generator=gen, requires_grad=True)
    targets = torch.randint(0, 30, (10,), generator=gen)
    targets[3] = -100
    expected = F.cross_entropy(hidden @ weight.T, targets)
    torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, chunk=64), expected)
    with torch.no_grad(), Ops() as ops:
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, chunk=4), expected)
    assert ops.matmuls == 3  # the logits of chunks of 4, 4 and 2; none of the two gradient products per chunk
    with Ops() as ops:
        linear_cross_entropy(hidden, weight, targets, chunk=4)
    assert ops.matmuls == 3 * 3

    nothing = linear_cross_entropy(hidden, weight, torch.full((10,), -100), chunk=4)
    nothing.backward()
    assert nothing.item() == 0.0
    assert not hidden.grad.any() and not weight.grad.any()


def test_chunked_loss_needs_a_bias_free_linear_head() -> None:
    model = build_model("preset:opt-125m", TINY, {})
    model.lm_head.bias = torch.nn.Parameter(torch.zeros(VOCAB))
    with pytest.raises(ValueError, match="bias-free linear LM head"):
        use_chunked_loss(model)
