"""What the benchmarks share: the corpus, the pipeline's command line and a timer for a cold process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6


def corpus(work: Path, scale: int) -> list[str]:
    """The demo corpus (``python -m spark_jobs.demo_corpus``) at ``scale``, flattened into one JSONL file per mirror
    with ``id``, ``text`` and ``kind``: the form both sides of a benchmark read. Malformed lines and empty texts are
    left out (they are ingestion's business, which the reference does not have). Scale 1 is the small demo corpus
    (about 2 MB); from 2 on, the whole standard library and ``scale - 1`` mirrors (8: about 107 MB)."""
    raw = work / "demo"
    subprocess.run([sys.executable, "-m", "spark_jobs.demo_corpus", str(raw), "--scale", str(scale)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    mirrors = [sorted(m.iterdir()) for m in sorted(raw.glob("mirror-*"))]
    groups = [[*sorted(raw.glob("*.jsonl")), raw / "code"], *mirrors]
    paths, next_id = [], 0
    for index, group in enumerate(groups):
        target = work / f"part-{index:03d}.jsonl"
        with target.open("w", encoding="utf-8") as out:
            for path in group:
                if path.is_dir():
                    records = ({"text": p.read_text(encoding="utf-8", errors="replace"), "kind": "code"}
                               for p in sorted(path.rglob("*.py")))  # fmt: skip
                else:
                    records = (_json(line) for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
                for rec in records:
                    if rec and isinstance(rec.get("text"), str) and rec["text"].strip():
                        out.write(json.dumps({"id": next_id, "text": rec["text"], "kind": rec.get("kind", "text")},
                                             ensure_ascii=False) + "\n")  # fmt: skip
                        next_id += 1
        paths.append(str(target))
    return paths


def one_row_group(paths: list[str], target: Path, multiple: int = 1) -> tuple[int, float]:
    """The flattened corpus (:func:`corpus`), ``multiple`` times over (copies with new ids, as the demo corpus's
    mirrors are), as ONE Parquet file of ONE row group, the layout a reader that splits by row groups alone reads in
    one task; its rows and MB of text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    base = pa.concat_tables(pj.read_json(p) for p in paths).select(["id", "text", "kind"])
    copies = [base.set_column(0, "id", pc.add(base["id"], k * base.num_rows)) for k in range(multiple)]
    table = pa.concat_tables(copies).combine_chunks()
    pq.write_table(table, target, row_group_size=table.num_rows)
    return table.num_rows, pc.sum(pc.binary_length(table["text"])).as_py() / MB


def _json(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def describe(paths: list[str]) -> str:
    """Documents and megabytes of text, by kind, in the flattened JSONL files."""
    sizes, docs = {"text": 0, "code": 0}, 0
    for path in paths:
        for line in Path(path).open(encoding="utf-8"):
            rec = json.loads(line)
            sizes[rec["kind"]] += len(rec["text"].encode())
            docs += 1
    return (f"{docs:,} docs, {sum(sizes.values()) / MB:.1f} MB of text (prose {sizes['text'] / MB:.1f} MB, "
            f"code {sizes['code'] / MB:.1f} MB) in {len(paths)} JSONL files")  # fmt: skip


def pipeline(inputs: list[str], output: Path, stages: str, cores: int, *extra: str) -> list[str]:
    """The pipeline's command line, exactly as a user types it (a local run on ``cores`` cores)."""
    return [sys.executable, "-m", "spark_jobs.pipeline", "--input", *inputs, "--output", str(output),
            "--stages", stages, "--master", f"local[{cores}]", *extra]  # fmt: skip


def measure(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, interval: float = 0.1, cwd: Path = ROOT
) -> dict[str, Any]:
    """Run ``cmd`` as a cold process and time it around the process. CPU seconds and peak RSS cover its whole process
    tree (for the pipeline: the driver, the JVM and the Python workers), sampled every ``interval`` seconds: the tree's
    peak is the largest sum of RSS seen at once (shared pages of forked workers count in each), the process peak the
    largest single process. Output goes to ``log``; a failure raises with its last lines."""
    cpu: dict[int, float] = {}
    tree_peak = proc_peak = 0
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            total = 0
            try:
                family = [root, *root.children(recursive=True)]
            except psutil.Error:
                family = []
            for p in family:
                try:
                    times, rss = p.cpu_times(), p.memory_info().rss
                except psutil.Error:
                    continue
                cpu[p.pid] = times.user + times.system
                total, proc_peak = total + rss, max(proc_peak, rss)
            tree_peak = max(tree_peak, total)
            time.sleep(interval)
    seconds = time.perf_counter() - started
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (rc {proc.returncode}):\n{tail}")
    return {"seconds": seconds, "cpu_s": sum(cpu.values()), "tree_peak_mb": tree_peak / MB,
            "proc_peak_mb": proc_peak / MB}  # fmt: skip


def row(name: str, m: dict[str, Any], note: str = "") -> str:
    """One line of a benchmark's table."""
    return (f"{name:<28} {m['seconds']:8.1f} {m['cpu_s']:8.1f} {m['tree_peak_mb']:10.0f} {m['proc_peak_mb']:10.0f}"
            f"  {note}")  # fmt: skip


HEADER = f"{'':<28} {'wall s':>8} {'CPU s':>8} {'tree MB':>10} {'proc MB':>10}"
