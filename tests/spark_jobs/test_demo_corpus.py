"""demo_corpus replaces its output directory: only one it wrote itself (or an empty one), unless --force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spark_jobs.demo_corpus import MARKER, check_out_dir, main

ROOT = Path(__file__).resolve().parents[2]


def refused(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spark_jobs.demo_corpus", str(out)], cwd=ROOT, capture_output=True, text=True
    )


def test_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    failed = refused(out)
    assert failed.returncode == 2
    assert failed.stdout == "" and "Traceback" not in failed.stderr
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out} is not empty and was not written by demo_corpus")
    assert "--force" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    (tmp_path / "file").write_text("x")
    failed = refused(tmp_path / "file")
    assert failed.returncode == 2 and "is not a directory" in failed.stderr
    assert (tmp_path / "file").read_text() == "x"


def test_force_replaces_it_and_a_rerun_replaces_its_own_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    assert main([str(out), "--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / MARKER).is_file()
    (out / "prose.jsonl").unlink()  # a rerun needs no --force over its own output, and writes everything again
    assert main([str(out)]) == 0
    assert (out / "prose.jsonl").stat().st_size > 0
    assert capsys.readouterr().out.count(f"prose.jsonl {out / 'fixture.jsonl'}") == 2
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty")  # an empty directory or a missing one is fine too
    check_out_dir(tmp_path / "missing")
