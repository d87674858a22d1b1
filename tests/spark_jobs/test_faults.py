"""Faults: the driver killed outright in the middle of a run, then the same command again, gives exactly the outputs
of a run never interrupted (nothing half-written passes for finished).

The killed run is a real ``python -m spark_jobs.pipeline`` process (its own session, so SIGKILL takes the driver, its
JVM and its Python workers at once, as an out-of-memory kill or a lost node would); the uninterrupted run and the
rerun use the test session, with the same options.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from spark_jobs.config import PipelineConfig
from spark_jobs.pipeline import run
from tests.spark_jobs.generated_docs import en_sentence, mutate, prose

ROOT = Path(__file__).resolve().parents[2]


def argv(inputs: Path, out: Path) -> list[str]:
    stages = "filter,exact_dedup"
    return ["--input", str(inputs), "--output", str(out), "--stages", stages, "--master", "local[2]",
            "--shuffle-partitions", "4", "--driver-memory", "1g"]  # fmt: skip


def outputs(out: Path) -> tuple[list[dict], list[dict], dict]:
    report = json.loads((out / "report.json").read_text())
    return pq.read_table(out / "cleaned").to_pylist(), pq.read_table(out / "removed").to_pylist(), report["accounting"]


def write_corpus(directory: Path) -> int:
    """A small JSONL corpus in ``directory`` (prose with near and exact duplicates); returns its document count."""
    rng = random.Random(5)
    texts = [prose(rng, en_sentence, lines=5) for _ in range(150)]
    texts += [mutate(t, 0.02, rng) for t in texts[:30]] + texts[:20]  # near and exact duplicates to remove
    directory.mkdir()
    with (directory / "docs.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
    return len(texts)


def test_driver_killed_mid_run_then_rerun_equals_an_uninterrupted_run(spark, tmp_path: Path) -> None:
    docs = write_corpus(tmp_path / "in")
    run(PipelineConfig.from_args(argv(tmp_path / "in", tmp_path / "clean")), spark)

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "spark_jobs.pipeline", *argv(tmp_path / "in", out)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if next(out.glob("**/_temporary"), None):  # a Spark write under way: kill mid-stage
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole session this test started: driver, JVM, workers
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before any write began"
    assert not (out / "report.json").exists()
    assert not (out / "cleaned" / "_stage.json").exists()

    run(PipelineConfig.from_args(argv(tmp_path / "in", out)), spark)
    cleaned, removed, accounting = outputs(out)
    assert (cleaned, removed, accounting) == outputs(tmp_path / "clean")
    assert accounting["removed"] > 0 and accounting["input"] == docs
