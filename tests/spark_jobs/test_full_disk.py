"""A full output disk: the run stops with one line on stderr (exit 1) and leaves markers only on complete outputs;
once there is room, the same command reuses what was finished and gives exactly the outputs of an uninterrupted run.

The disk is real: a tmpfs just larger than the first stage's output, mounted on the output directory inside a user
and mount namespace (``unshare``), where the real ``python -m spark_jobs.pipeline`` runs, fails, gets room
(``mount -o remount``) and runs again. Spark's own scratch space (``/tmp``) stays on the normal disk. The tmpfs goes
away with the namespace, so the script copies out what the test checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jobs import cache
from spark_jobs.config import PipelineConfig
from spark_jobs.pipeline import run
from tests.spark_jobs.test_faults import ROOT, argv, outputs, write_corpus

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]

SCRIPT = """
set -u
mount -t tmpfs -o size="$SIZE" tmpfs "$OUT" || exit 90
"$@" >"$LOG/run1.out" 2>"$LOG/run1.err"
echo $? >"$LOG/run1.rc"
mkdir "$LOG/after1"
(cd "$OUT" && find . | sort >"$LOG/after1.list" && find . -name '_stage.json*' -exec cp --parents {} "$LOG/after1" ';')
mount -o remount,size=200m "$OUT" || exit 91
"$@" >"$LOG/run2.out" 2>"$LOG/run2.err"
echo $? >"$LOG/run2.rc"
mkdir "$LOG/out"
cp -r "$OUT/cleaned" "$OUT/removed" "$OUT/report.json" "$LOG/out/" 2>/dev/null
exit 0
"""


def test_full_disk_stops_with_one_line_and_the_rerun_reuses_finished_stages(spark, tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    log.mkdir()
    probe = subprocess.run([*UNSHARE, "mount", "-t", "tmpfs", "tmpfs", str(out)], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")

    docs = write_corpus(tmp_path / "in")
    run(PipelineConfig.from_args(argv(tmp_path / "in", tmp_path / "clean")), spark)
    # Room for the first stage's directory (tmpfs counts whole pages) and two pages more: the next write fails.
    page = os.sysconf("SC_PAGE_SIZE")
    (first,) = (tmp_path / "clean" / "_stages").glob("00-*")
    pages = sum(-(-f.stat().st_size // page) for f in first.iterdir() if f.is_file()) + 2

    cmd = [sys.executable, "-m", "spark_jobs.pipeline", *argv(tmp_path / "in", out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(out), "LOG": str(log), "SIZE": f"{pages * page // 1024}k"}
    script = subprocess.run([*UNSHARE, "sh", "-c", SCRIPT, "sh", *cmd], env=env, cwd=ROOT, timeout=300)
    assert script.returncode == 0

    rc, err = int((log / "run1.rc").read_text()), (log / "run1.err").read_text()
    assert rc == 1, err[-3000:]
    lines = err.strip().splitlines()  # Spark's console progress bar ends in "\r", not a newline
    assert lines[-1].startswith(f"error: no space left on device while writing {out}"), lines[-1]
    assert lines[-1].endswith("; free space and rerun: finished stages are reused")
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in err

    listing = (log / "after1.list").read_text().splitlines()
    markers = sorted(str(p.relative_to(log / "after1")) for p in (log / "after1").rglob("_stage.json*"))
    assert f"_stages/{first.name}/_stage.json" in markers  # the first stage was finished before the disk filled
    assert "cleaned/_stage.json" not in markers and "./report.json" not in listing
    assert all(name.endswith("/_stage.json") for name in markers)  # no temporary marker left behind
    for name in markers:
        assert set(json.loads((log / "after1" / name).read_text())) >= {"key", "seconds"}

    assert int((log / "run2.rc").read_text()) == 0, (log / "run2.err").read_text()[-3000:]
    assert f"[{first.name}] up to date, reusing" in (log / "run2.out").read_text()
    cleaned, removed, accounting = outputs(log / "out")
    assert (cleaned, removed, accounting) == outputs(tmp_path / "clean")
    assert accounting["removed"] > 0 and accounting["input"] == docs


def test_a_marker_cut_short_is_not_finished(tmp_path: Path) -> None:
    (tmp_path / cache.MARKER).write_text('{"key": "abc", "sec')
    assert cache.finished(str(tmp_path), "abc") is None
    cache.mark_finished(str(tmp_path), "abc", seconds=1)
    assert cache.finished(str(tmp_path), "abc") == {"key": "abc", "seconds": 1}
    assert [p.name for p in tmp_path.iterdir()] == [cache.MARKER]
