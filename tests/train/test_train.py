"""End-to-end runs of ``python -m train`` and ``accelerate launch -m train`` on CPU with a tiny OPT model.

One uninterrupted single-process run is the reference: the killed-and-resumed run must reproduce its batches bit for
bit, and the two-process runs must read the same global order, split between the ranks. Separately, two processes
with half the batch must train to the weights of one process, which holds only if their gradients are synchronised.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.train_fixtures import FIRST_TOKEN, TOKEN_POOL, write_packed
from train.data import GlobalOrder, ShardIndex

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=4"
BATCH, ACCUM, STEPS, SEED = 4, 2, 40, 0
SYNC_STEPS = 6
# One thread per process: two ranks on two cores do not fight, and runs compared bitwise use the same kernels.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 256 sequences: the 40-step reference run (320 positions) crosses into the second epoch.
    return write_packed(tmp_path_factory.mktemp("data"), seq_len=32, train_files=(100, 80, 76), val_files=(32,))


def train_args(packed: Path, run: Path, max_steps: int = STEPS) -> list[str]:
    return [
        "--data", str(packed), "--model", "preset:opt-125m", "--model-overrides", TINY, "--output", str(run),
        "--max-steps", str(max_steps), "--batch-size", str(BATCH), "--grad-accum", str(ACCUM), "--lr", "3e-3",
        "--warmup-steps", "5", "--eval-every", "20", "--eval-batches", "2", "--save-every", "10",
        "--keep-checkpoints", "2", "--log-every", "1", "--num-workers", "2", "--seed", str(SEED), "--debug-log-data",
    ]  # fmt: skip


def python_train(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "train", *args], cwd=ROOT, env=ENV, check=True, timeout=300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_train(args: list[str], processes: int = 2) -> None:
    """The documented multi-process command; on a CPU-only host it starts gloo processes through torchrun."""
    launch = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
    ]  # fmt: skip
    subprocess.run([*launch, "-m", "train", *args], cwd=ROOT, env=ENV, check=True, timeout=400)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def global_stream(run: Path, world: int) -> list[int]:
    """The run's sequence ids in global order: per (step, micro-batch), the ranks' batches interleaved."""
    logs = [read_jsonl(run / "data-log" / f"rank-{r}.jsonl") for r in range(world)]
    ids = []
    for records in zip(*logs, strict=True):
        assert len({(r["step"], r["micro"]) for r in records}) == 1
        per_rank = [r["seq_ids"] for r in records]
        for a in range(world):
            for b in range(a + 1, world):
                assert not set(per_rank[a]) & set(per_rank[b]), "two ranks read the same sequence in one batch"
        ids += [i for group in zip(*per_rank, strict=True) for i in group]
    return ids


@pytest.fixture(scope="module")
def reference(packed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reference")
    python_train(train_args(packed, run))
    return run


def test_single_process_run(reference: Path) -> None:
    metrics = read_jsonl(reference / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    for field in ("step", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s"):
        assert all(field in m for m in metrics), field
    assert metrics[-1]["tokens_seen"] == STEPS * ACCUM * BATCH * 32
    evals = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evals] == [20, 40] and all(m["eval_ppl"] > 1 for m in evals)
    first, last = (sum(m["loss"] for m in part) / 3 for part in (metrics[:3], metrics[-3:]))
    assert last < first - 2.0, (first, last)
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert (reference / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step-30", "step-40"]

    from transformers import pipeline

    # The exported model generates: five new tokens after the prompt, all from the training data's token pool
    # (an untrained model's greedy picks range over the whole vocabulary).
    generator = pipeline("text-generation", model=str(reference / "final"), device="cpu")
    prompt = "The quick brown fox"
    prompt_ids = generator.tokenizer(prompt).input_ids
    settings: dict[str, Any] = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False)
    ids = generator(prompt, return_tensors=True, **settings)[0]["generated_token_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids
    new = ids[len(prompt_ids) :]
    assert len(new) == 5 and all(FIRST_TOKEN <= t < FIRST_TOKEN + TOKEN_POOL for t in new), new
    continuation = generator(prompt, return_full_text=False, **settings)[0]["generated_text"]
    assert continuation and continuation == generator.tokenizer.decode(new)


def test_kill_and_resume_matches_uninterrupted(packed: Path, reference: Path, tmp_path: Path) -> None:
    args = train_args(packed, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "train", *args], cwd=ROOT, env=ENV, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (tmp_path / "checkpoints" / "step-20").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "run ended or stalled before its step-20 checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) < STEPS

    python_train([*args, "--resume"])

    batches = [(r["step"], r["micro"], r["sha1"]) for r in read_jsonl(tmp_path / "data-log" / "rank-0.jsonl")]
    assert batches == [(r["step"], r["micro"], r["sha1"]) for r in read_jsonl(reference / "data-log" / "rank-0.jsonl")]
    resumed, expected = read_jsonl(tmp_path / "metrics.jsonl"), read_jsonl(reference / "metrics.jsonl")
    assert [m["step"] for m in resumed] == [m["step"] for m in expected]
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in expected], rel=1e-4)
    assert resumed[-1]["eval_loss"] == pytest.approx(expected[-1]["eval_loss"], rel=1e-4)


def test_two_processes_read_disjoint_data(packed: Path, reference: Path, tmp_path: Path) -> None:
    steps = 12
    accelerate_train([*train_args(packed, tmp_path, max_steps=steps), "--peak-tflops", "1"])
    stream = global_stream(tmp_path, world=2)
    assert len(stream) == steps * ACCUM * BATCH * 2 == len(set(stream))
    assert stream == global_stream(reference, world=1)[: len(stream)]  # same global order as one process
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert metrics[-1]["tokens_seen"] == steps * ACCUM * BATCH * 2 * 32
    assert metrics[-1]["loss"] < metrics[0]["loss"] - 1.0
    assert all(m["mfu"] > 0 for m in metrics)  # --peak-tflops stands in for a GPU's peak on CPU
    assert (tmp_path / "final" / "model.safetensors").is_file()


def sync_args(packed: Path, run: Path, batch: int) -> list[str]:
    """A short run with a deterministic model: without dropout, weights depend only on data, init and arithmetic."""
    return [
        "--data", str(packed), "--model", "preset:opt-125m", "--model-overrides", f"{TINY},dropout=0.0",
        "--output", str(run), "--max-steps", str(SYNC_STEPS), "--batch-size", str(batch), "--grad-accum", "1",
        "--lr", "3e-3", "--warmup-steps", "2", "--eval-every", "0", "--save-every", "0", "--log-every", "1",
        "--num-workers", "0", "--seed", str(SEED), "--report-to", "none", "--debug-log-data",
    ]  # fmt: skip


def test_two_processes_train_like_one_process_on_the_global_batch(packed: Path, tmp_path: Path) -> None:
    """Two gloo processes with batch 4 end with the weights of one process with batch 8 on the same global batches.

    The batches match in the default (shuffled) order: the order is a function of ``--seed`` alone, and rank ``r`` of
    ``W`` reads positions ``r, r + W, ...`` of each global batch, so ranks 0 and 1 together read exactly the 8
    positions the single process reads at each step. Every sequence has the same number of labels, so the mean of
    the two ranks' mean losses is the 8-sequence mean loss, and synchronised gradients are the 8-sequence gradients.
    Dropout is off because its masks are drawn per rank. The weights are compared against how far training moved
    them, so that the test cannot pass by training too little to tell the runs apart.
    """
    from safetensors.torch import load_file

    one, two = tmp_path / "one", tmp_path / "two"
    python_train(sync_args(packed, one, batch=8))
    accelerate_train(sync_args(packed, two, batch=4))
    assert global_stream(two, world=2) == global_stream(one, world=1)
    losses = {run: [m["loss"] for m in read_jsonl(run / "metrics.jsonl")] for run in (one, two)}
    assert len(losses[one]) == SYNC_STEPS
    assert losses[two] == pytest.approx(losses[one], rel=1e-4)

    initial = initial_weights(f"{TINY},dropout=0.0", packed)
    single, pair = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert single.keys() == pair.keys()
    for name in single:
        moved = (single[name] - initial[name]).norm().item()
        assert moved > 0, f"{name} did not train"
        if name.endswith("k_proj.bias"):
            # Its exact gradient is zero (softmax ignores a shift shared by all of a query's scores), so Adam's
            # updates of it are normalised rounding noise, which differs with the order of the sums.
            continue
        assert (pair[name] - single[name]).norm().item() <= 1e-3 * moved, name


def initial_weights(overrides: str, packed: Path) -> dict[str, Any]:
    """The weights a run of ``train`` starts from (same seed, preset and special ids), to measure how far it moved."""
    from accelerate.utils import set_seed

    from train.config import parse_overrides
    from train.loop import special_ids
    from train.model import build_model

    set_seed(SEED)
    manifest = json.loads((packed / "manifest.json").read_text())
    model = build_model("preset:opt-125m", parse_overrides(overrides), special_ids(manifest))
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_resume_on_more_processes(packed: Path, reference: Path, tmp_path: Path) -> None:
    """A checkpoint saved by one process continues on two at the next global position, nothing repeated or skipped."""
    shutil.copytree(reference / "checkpoints" / f"step-{STEPS}", tmp_path / "checkpoints" / f"step-{STEPS}")
    extra = 6
    accelerate_train([*train_args(packed, tmp_path, max_steps=STEPS + extra), "--resume"])
    stream = global_stream(tmp_path, world=2)
    start = STEPS * ACCUM * BATCH
    order = GlobalOrder(ShardIndex(packed, "train"), seed=SEED)
    assert stream == [order.seq_id(p) for p in range(start, start + extra * ACCUM * BATCH * 2)]
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(STEPS + 1, STEPS + extra + 1))
    reference_metrics = read_jsonl(reference / "metrics.jsonl")
    assert metrics[0]["loss"] < reference_metrics[0]["loss"] - 2.0  # continued training, not a fresh model
