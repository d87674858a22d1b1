"""Reruns, judged by what is rewritten on disk (not by the report's ``reused`` flags): unchanged inputs and options
reuse everything; a changed option redoes its stage and everything after it; an added, rewritten or removed input
file and a code change redo everything; a directory whose marker a crash left missing is recomputed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from spark_jobs import cache
from spark_jobs.config import PipelineConfig
from spark_jobs.pipeline import run

OUTPUTS = ("_stages/00-ingest+filter+langid", "_stages/01-exact_dedup", "_stages/02-near_dedup", "cleaned", "removed")
ALL = (*OUTPUTS, "packed")
LINES = [
    "The morning train left the station a little after seven, full of sleepy people.",
    "A small dog watched the pigeons on the square while its owner read the paper.",
    "Rain came in from the west and the market traders covered their stalls quickly.",
    "By noon the sun was back and the children ran out to play by the river bank.",
]


def doc(i: int) -> str:
    return "\n".join(f"{line} Entry {i}, part {k}." for k, line in enumerate(LINES))


def write_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"id": i, "text": doc(i % 9)} for i in range(12)] + [{"id": 99, "text": "short"}]
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "b.jsonl").write_text(json.dumps({"id": 200, "text": doc(50)}) + "\n")


def signature(out: Path) -> dict[str, tuple]:
    """Per output directory: its data file names (Spark names each write anew) and the times of its marker and
    manifest (copies keep them; a rewrite changes them)."""
    sig = {}
    for name in ALL:
        folder = out / name
        files = sorted(p.name for p in folder.glob("*.parquet"))
        times = tuple(os.stat(p).st_mtime_ns for p in (folder / cache.MARKER, folder / "manifest.json") if p.exists())
        sig[name] = (files, times)
    return sig


def rewritten(before: dict, after: dict) -> set[str]:
    return {name for name in ALL if before[name] != after[name]}


def config(inputs: Path, out: Path, *flags: str) -> PipelineConfig:
    args = ["--input", str(inputs), "--output", str(out), "--seq-len", "16", "--num-shards", "2", *flags]
    return PipelineConfig.from_args(args)


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("reruns")
    write_inputs(root / "in")
    run(config(root / "in", root / "base"), spark)
    return root


@pytest.mark.parametrize(
    ("flags", "redone"),
    [
        ([], set()),
        (["--shuffle-partitions", "3", "--dedup-checkpoint", "reliable"], set()),  # execution only
        (["--lang-threshold", "0.3"], set(ALL)),  # a row stage: fused with ingestion
        (["--dedup-threshold", "0.7"], set(ALL) - set(OUTPUTS[:2])),
        (["--seq-len", "8"], {"packed"}),
        (["--seed", "1"], set(ALL) - set(OUTPUTS[:2])),  # near dedup's permutations and pack's order
    ],
)
def test_an_option_redoes_its_stage_and_what_follows(spark, base, tmp_path, flags, redone):
    out = tmp_path / "out"
    shutil.copytree(base / "base", out)
    before = signature(out)
    report = run(config(base / "in", out, *flags), spark)
    assert rewritten(before, signature(out)) == redone
    assert report["accounting"]["input"] == 14


def test_input_changes_and_code_changes_redo_everything(spark, base, tmp_path, monkeypatch):
    inputs, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(base / "in", inputs)
    run(config(inputs, out), spark)

    def rerun_after(change) -> set[str]:
        before = signature(out)
        change()
        report = run(config(inputs, out), spark)
        assert report["accounting"]["input"] == report["accounting"]["cleaned"] + report["accounting"]["removed"]
        return rewritten(before, signature(out))

    added = {"id": 300, "text": doc(70)}
    assert rerun_after(lambda: (inputs / "c.jsonl").write_text(json.dumps(added) + "\n")) == set(ALL)
    assert json.loads((out / "report.json").read_text())["accounting"]["input"] == 15
    rewrite = {"id": 200, "text": doc(51) + "\nOne more line."}
    assert rerun_after(lambda: (inputs / "b.jsonl").write_text(json.dumps(rewrite) + "\n")) == set(ALL)
    assert rerun_after(lambda: (inputs / "c.jsonl").unlink()) == set(ALL)
    assert json.loads((out / "report.json").read_text())["accounting"]["input"] == 14
    assert rerun_after(lambda: None) == set()
    monkeypatch.setattr(cache, "code_version", lambda: "another version")
    assert rerun_after(lambda: None) == set(ALL)


def test_a_directory_without_its_marker_is_recomputed(spark, base, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(base / "base", out)
    for name in ("_stages/01-exact_dedup", "packed"):
        (out / name / cache.MARKER).unlink()
    (out / "report.json").write_text("{}")
    before = signature(out)
    run(config(base / "in", out), spark)
    # Recomputed with the same key, exact dedup's removals equal the old ones, so what follows stays valid.
    assert rewritten(before, signature(out)) == {"_stages/01-exact_dedup", "packed"}
    assert json.loads((out / "report.json").read_text())["accounting"]["input"] == 14
