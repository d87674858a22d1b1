"""Preemption on real processes: SIGTERM stops ``python -m train`` (and ``accelerate launch``) after a whole step with a
checkpoint, ``--resume`` continues it exactly, and a damaged newest checkpoint falls back to the one before.

Every run is compared with one uninterrupted single-process run of the same seed. Dropout is off so that two gloo
processes with half the batch train like one process on the whole batch (see test_train.py): that makes the
single-process run the reference for the two-process runs too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.train.test_train import ACCELERATE, ENV, ROOT, TINY, free_port, read_jsonl
from tests.train_fixtures import write_packed
from train.preemption import EXIT_CODE

pytestmark = pytest.mark.slow

BATCH, STEPS, SAVE_EVERY = 8, 14, 4


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_packed(tmp_path_factory.mktemp("data"), seq_len=32, train_files=(48, 40), val_files=(16,))


def train_args(packed: Path, run: Path, batch: int = BATCH, workers: int = 0) -> list[str]:
    return [
        "--data", str(packed), "--model", "preset:opt-125m", "--model-overrides", f"{TINY},dropout=0.0",
        "--output", str(run), "--max-steps", str(STEPS), "--batch-size", str(batch), "--lr", "3e-3",
        "--warmup-steps", "2", "--eval-every", "0", "--save-every", str(SAVE_EVERY), "--keep-checkpoints", "3",
        "--log-every", "1", "--num-workers", str(workers), "--seed", "0", "--debug-log-data",
    ]  # fmt: skip


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


def sigterm_after(proc: subprocess.Popen, run: Path, step: int) -> tuple[int, str]:
    """SIGTERM ``proc`` once the run has a checkpoint and has logged ``step``; its exit code and output."""
    deadline = time.monotonic() + 240
    while not ((run / "checkpoints" / f"step-{SAVE_EVERY}").is_dir() and logged_steps(run)[-1:] >= [step]):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended or stalled before the signal"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    return finish(proc)


def logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("step-")) for p in (run / "checkpoints").glob("step-*"))


def batches(run: Path) -> list[tuple[int, int, str]]:
    """Each micro-batch one process read: step, micro-batch and content hash (``--debug-log-data``)."""
    return [(r["step"], r["micro"], r["sha1"]) for r in read_jsonl(run / "data-log" / "rank-0.jsonl")]


def expected_checkpoints(stopped: int) -> list[int]:
    """The periodic checkpoints up to the stop and the stop's own, the newest 3 (``--keep-checkpoints``)."""
    return sorted({*range(SAVE_EVERY, stopped + 1, SAVE_EVERY), stopped})[-3:]


def losses(run: Path) -> list[float]:
    return [m["loss"] for m in read_jsonl(run / "metrics.jsonl")]


def assert_continues_reference(run: Path, reference: Path) -> None:
    """The whole run's log: every step once, in order, with the uninterrupted run's losses."""
    assert logged_steps(run) == list(range(1, STEPS + 1))
    assert losses(run) == pytest.approx(losses(reference), rel=1e-4)
    assert (run / "final" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def reference(packed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run; ``--report-to auto``, so it also shows that TensorBoard is there out of the box."""
    run = tmp_path_factory.mktemp("reference")
    rc, output = finish(start([sys.executable, "-m", "train", *train_args(packed, run), "--report-to", "auto"]))
    assert rc == 0, output
    return run


def test_reference_writes_tensorboard_curves(reference: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(reference.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file under the run"
    tags = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
        if "loss" in accumulator.Tags()["scalars"]:
            assert [e.step for e in accumulator.Scalars("loss")] == list(range(1, STEPS + 1))
    assert {"loss", "lr", "grad_norm"} <= tags


def test_sigterm_checkpoints_and_resume_matches(packed: Path, reference: Path, tmp_path: Path) -> None:
    """One process: SIGTERM mid-run ends it after the step in progress, with a checkpoint at that step and exit code
    143; ``--resume`` then reads the same batches and logs every later step once, with the losses of the run that was
    never stopped."""
    args = train_args(packed, tmp_path)
    rc, output = sigterm_after(start([sys.executable, "-m", "train", *args]), tmp_path, step=SAVE_EVERY + 1)
    assert rc == EXIT_CODE, output
    stopped = logged_steps(tmp_path)[-1]
    assert SAVE_EVERY < stopped < STEPS
    assert checkpoint_steps(tmp_path) == expected_checkpoints(stopped)
    assert f"SIGTERM: stopped after step {stopped}" in output
    assert not (tmp_path / "final").exists()

    rc, output = finish(start([sys.executable, "-m", "train", *args, "--resume"]))
    assert rc == 0, output
    assert f"resumed from {tmp_path / 'checkpoints' / f'step-{stopped}'} (step {stopped}" in output
    assert_continues_reference(tmp_path, reference)
    assert batches(tmp_path) == batches(reference)


def test_sigterm_to_accelerate_launch_then_damaged_checkpoint(packed: Path, reference: Path, tmp_path: Path) -> None:
    """Two gloo processes, SIGTERM to the launcher (which signals each rank's process group, DataLoader workers
    included): both ranks finish the same step and save it.

    That newest checkpoint is then damaged (its weights truncated) and the log gets a line torn as by a kill
    mid-write: ``--resume`` (one process on the whole batch, the same global batches) reports the checkpoint in one
    line, sets it aside, continues from the one before, drops the log records after it, and reproduces the
    reference."""
    args = train_args(packed, tmp_path, batch=BATCH // 2, workers=1)
    launch = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "train",
    ]  # fmt: skip
    rc, output = sigterm_after(start([*launch, *args]), tmp_path, step=SAVE_EVERY + 1)
    assert rc != 0, output
    stopped = logged_steps(tmp_path)[-1]
    last_steps = {read_jsonl(tmp_path / "data-log" / f"rank-{r}.jsonl")[-1]["step"] for r in range(2)}
    assert last_steps == {stopped} and SAVE_EVERY < stopped < STEPS, output
    saved = expected_checkpoints(stopped)
    assert checkpoint_steps(tmp_path) == saved
    newest = tmp_path / "checkpoints" / f"step-{stopped}"
    state: dict[str, Any] = json.loads((newest / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == stopped
    assert {p.name for p in newest.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}

    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 1.')
    rc, output = finish(start([sys.executable, "-m", "train", *train_args(packed, tmp_path), "--resume"]))
    assert rc == 0, output
    reports = [line for line in output.splitlines() if "does not load" in line]
    assert len(reports) == 1 and str(newest) in reports[0], output
    assert f"resumed from {tmp_path / 'checkpoints' / f'step-{saved[-2]}'}" in output
    assert (tmp_path / "checkpoints" / f".failed-step-{stopped}" / "model.safetensors").is_file()
    assert_continues_reference(tmp_path, reference)
