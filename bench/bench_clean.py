"""Cleaning throughput and memory: the seed's single-process Hugging Face `datasets` approach against our Spark
stages, on the same ≥100 MB corpus (not a test).

    .venv/bin/python bench/bench_clean.py [--scale 8] [--cores 2] [--work DIR]

Corpus: ``spark_jobs.demo_corpus.write_demo_corpus`` at ``2 * scale`` (the standard library's sources as code,
pydoc topics and docstrings as prose, the multilingual/boilerplate/duplicate fixture, and mirrors of all of it),
flattened once (untimed) into one JSONL file per mirror with ``id``, ``text``, ``kind``. "1x" is the first half of
the mirrors (about 110 MB at ``--scale 8``), "2x" all of them.

(a) The seed, re-implemented: ``load_dataset("json")``, then per-example ``Dataset.filter`` for its length rule,
its paragraph repetition rule, fastText lid.176 on the whole text (keep ``en`` with score > 0.4) and a Python set
of text hashes for exact dedup, in one process; result written to Parquet.
(b) Ours: the pipeline (``spark_jobs.pipeline.run`` with ``--stages filter,langid,exact_dedup``) on local Spark:
our JSONL ingestion, the filter (length + full Gopher repetition set + code rules) and fastText language ID fused into
ingestion's pass, exact dedup, then ``cleaned/``, ``removed/`` and ``report.json``: everything the seed does and more.
Timed from the start of the run to its report, after two warm-up runs of the same pipeline on 300 documents in one file
per core (JIT, a Python worker per core, model load), as a long pipeline runs warm; session start plus warm-up is shown
apart.

Each side runs in its own subprocess. Memory: (a) is the process's peak RSS (``ru_maxrss``); for (b) a thread samples
``VmHWM`` (the kernel's per-process peak RSS) of every descendant of the driver: the JVM and the Python workers. Both
sides run at 1x and 2x: the ratio at each size, and (b)'s per-process peaks not growing with the input. Both sides also
report the CPU seconds they used (for (b): JVM, Python workers and driver), which, unlike wall clock, does not depend on
what else the machine is running.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SLM_SPARK_UI", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1e6


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- corpus ------------------------------------------------------------------------------------------------------


def _records(path: Path, kind: str) -> list[dict[str, Any]]:
    """Valid JSONL records of one demo-corpus file (malformed lines and null texts are ingestion's business)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec.get("text"), str):
            out.append({"text": rec["text"], "kind": rec.get("kind", kind)})
    return out


def prepare(work: Path, scale: int) -> tuple[list[str], list[str]]:
    """Write the flattened corpus; return the JSONL paths of 1x and of 2x."""
    from spark_jobs.demo_corpus import write_demo_corpus

    raw = work / "demo"
    write_demo_corpus(str(raw), scale=2 * scale, seed=0)
    groups = [sorted(raw.glob("*.jsonl")) + [raw / "code"]] + [
        sorted(m.iterdir()) for m in sorted(raw.glob("mirror-*"))
    ]
    paths, next_id = [], 0
    for index, group in enumerate(groups):
        records = []
        for path in group:
            if path.is_dir():
                for source in sorted(path.rglob("*.py")):
                    try:
                        records.append({"text": source.read_bytes().decode("utf-8"), "kind": "code"})
                    except UnicodeDecodeError:
                        continue
            else:
                records.extend(_records(path, "text"))
        target = work / f"part-{index:03d}.jsonl"
        with target.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps({"id": next_id, **rec}, ensure_ascii=False) + "\n")
                next_id += 1
        paths.append(str(target))
    return paths[:scale], paths


def describe(paths: list[str]) -> str:
    sizes = {"text": 0, "code": 0}
    docs = 0
    for path in paths:
        for line in Path(path).open(encoding="utf-8"):
            rec = json.loads(line)
            sizes[rec["kind"]] += len(rec["text"].encode())
            docs += 1
    total = sum(sizes.values())
    return f"{docs:,} docs, {total / MB:.1f} MB of text (prose {sizes['text'] / MB:.1f} MB, code {sizes['code'] / MB:.1f} MB)"


# --- (a) the seed's approach -------------------------------------------------------------------------------------


def run_seed(paths: list[str], out: Path) -> dict[str, Any]:
    """The seed pipeline: per-example `datasets` filters and a Python set, one process."""
    import hashlib
    import re

    import datasets
    import fasttext

    from spark_jobs.langid import default_model_path

    datasets.disable_progress_bars()
    times: dict[str, float] = {}
    cpu_before = own_cpu_seconds()
    start = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=paths, split="train", cache_dir=str(out / "hf-cache"))
    docs_in = len(ds)
    times["load"] = time.perf_counter() - start

    def long_enough(example: dict) -> bool:
        lines = example["text"].split("\n")
        return len(lines) >= 3 and sorted(map(len, lines))[-3] >= 3

    paragraph_break = re.compile(r"\n{2,}")

    def not_repetitive(example: dict) -> bool:
        text = example["text"]
        paragraphs = paragraph_break.split(text.strip())
        seen, dup, dup_chars = set(), 0, 0
        for p in paragraphs:
            if p in seen:
                dup, dup_chars = dup + 1, dup_chars + len(p)
            seen.add(p)
        return dup / len(paragraphs) <= 0.3 and dup_chars / max(1, len(text)) <= 0.2

    model = fasttext.load_model(default_model_path())

    def english(example: dict) -> bool:
        labels, scores = model.predict(example["text"].replace("\n", " "), k=1)
        return labels[0] == "__label__en" and scores[0] > 0.4

    hashes: set[bytes] = set()

    def first_copy(example: dict) -> bool:
        digest = hashlib.md5(example["text"].encode()).digest()
        if digest in hashes:
            return False
        hashes.add(digest)
        return True

    for name, keep in (
        ("length", long_enough),
        ("repetition", not_repetitive),
        ("langid", english),
        ("dedup", first_copy),
    ):
        step = time.perf_counter()
        ds = ds.filter(keep)
        times[name] = time.perf_counter() - step
    step = time.perf_counter()
    ds.to_parquet(str(out / "seed.parquet"))
    times["write"] = time.perf_counter() - step
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": own_cpu_seconds() - cpu_before,
        "stages": times,
        "docs_in": docs_in,
        "kept": len(ds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB,
    }


# --- (b) our stages on Spark ----------------------------------------------------------------------------------------


class ProcessMonitor(threading.Thread):
    """Samples every descendant process until stopped: its kind (JVM, Python worker), VmHWM (the kernel's record
    of its peak RSS) and CPU seconds (utime + stime), so CPU spent inside a time window can be summed."""

    CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.procs: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def _descendants(self) -> dict[int, tuple[int, float]]:
        """pid -> (parent pid, CPU seconds) for every process."""
        table = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.CLOCK_TICKS)
        return table

    @staticmethod
    def _kind_and_hwm(pid: int) -> tuple[str, int] | None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        hwm = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        if "java" in cmdline.split(" ", 1)[0]:
            return "jvm", hwm
        if "pyspark.daemon" in cmdline or "pyspark.worker" in cmdline:
            return "python_worker", hwm
        return "other", hwm

    def sample(self) -> None:
        table = self._descendants()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = [os.getpid()]
        with self._lock:
            while todo:
                for pid in children.get(todo.pop(), []):
                    todo.append(pid)
                    found = self._kind_and_hwm(pid)
                    if found:
                        proc = self.procs.setdefault(pid, {"hwm": 0, "cpu": 0.0, "cpu_at_mark": 0.0})
                        proc["kind"] = found[0]  # spark-submit's shell scripts exec the JVM under the same pid
                        proc["hwm"] = max(proc["hwm"], found[1])
                        proc["cpu"] = max(proc["cpu"], table[pid][1])

    def mark(self) -> None:
        """Start of the timed window: CPU before it is not counted."""
        self.sample()
        with self._lock:
            for proc in self.procs.values():
                proc["cpu_at_mark"] = proc["cpu"]

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.interval)

    def stop(self) -> tuple[dict[str, float], dict[str, float]]:
        """(peak RSS in MB by kind, CPU seconds since :meth:`mark` by kind); call before the processes exit."""
        self.sample()
        self._stop_event.set()
        self.join()
        peaks: dict[str, float] = {"python_workers": 0}
        cpu: dict[str, float] = {}
        for proc in self.procs.values():
            peaks[proc["kind"]] = max(peaks.get(proc["kind"], 0.0), proc["hwm"] / MB)
            peaks["python_workers"] += proc["kind"] == "python_worker"
            cpu[proc["kind"]] = cpu.get(proc["kind"], 0.0) + proc["cpu"] - proc["cpu_at_mark"]
        return peaks, cpu


def run_spark(paths: list[str], out: Path, cores: int) -> dict[str, Any]:
    """The pipeline itself (``spark_jobs.pipeline.run``, stages filter, langid, exact_dedup) on local Spark: our
    ingestion of the JSONL files, the fused row stages, exact dedup, ``cleaned/`` and ``removed/`` with the report.

    A warm-up runs the same pipeline twice on a few hundred documents first, one file per core (JVM JIT, a Python worker
    per core, fastText model), as a long pipeline would be warm; its time is reported apart with the session start.
    """
    from spark_jobs.config import PipelineConfig
    from spark_jobs.pipeline import run
    from spark_jobs.session import get_spark

    monitor = ProcessMonitor()
    monitor.start()
    started = time.perf_counter()
    spark = get_spark(master=f"local[{cores}]", app_name="bench-clean", ui=False)
    stages = "filter,langid,exact_dedup"
    for old in ("warmup", "run"):  # an earlier run's finished stages would be reused, not timed
        shutil.rmtree(out / old, ignore_errors=True)
    # One small file per core: the fused pass runs one task per file, so every core's Python worker starts (imports,
    # model load) during the warm-up, as in a long pipeline, not in the timed run.
    warmup = out / "warmup-in"
    shutil.rmtree(warmup, ignore_errors=True)
    warmup.mkdir()
    with open(paths[0], encoding="utf-8") as src:
        lines = [line for _, line in zip(range(300), src, strict=False)]
    for core in range(cores):
        (warmup / f"part-{core}.jsonl").write_text("".join(lines[core::cores]), encoding="utf-8")
    for _ in range(2):  # the JVM's JIT needs more than one pass to settle
        shutil.rmtree(out / "warmup", ignore_errors=True)
        run(PipelineConfig(input=[str(warmup)], output=str(out / "warmup"), stages=stages), spark)
    warm_seconds = time.perf_counter() - started
    monitor.mark()
    cpu_before = own_cpu_seconds()
    start = time.perf_counter()
    report = run(PipelineConfig(input=paths, output=str(out / "run"), stages=stages), spark)
    seconds = time.perf_counter() - start
    driver_cpu = own_cpu_seconds() - cpu_before
    peaks, cpu = monitor.stop()
    spark.stop()
    peaks["driver_python"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    cpu["driver_python"] = driver_cpu
    times = {
        marker.parent.name: json.loads(marker.read_text())["seconds"]
        for marker in sorted((out / "run" / "_stages").glob("*/_stage.json"))
    }
    times["cleaned+removed+report"] = seconds - sum(times.values())
    return {
        "seconds": seconds,
        "warm_seconds": warm_seconds,
        "stages": times,
        "docs_in": report["accounting"]["input"],
        "kept": report["accounting"]["cleaned"],
        "peak_rss_mb": peaks,
        "cpu_seconds": cpu,
    }


# --- orchestration -------------------------------------------------------------------------------------------------


def in_subprocess(role: str, paths: list[str], out: Path, cores: int) -> dict[str, Any]:
    """Run one side in a fresh process (its own peak RSS, its own JVM); the result is its last stdout line."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--role", role, "--cores", str(cores), "--out", str(out), "--paths", *paths]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_times(result: dict[str, Any]) -> str:
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["stages"].items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=8, help="mirrors in the 1x corpus (8: about 110 MB)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", default=None, help="work directory (default: a new temporary one)")
    p.add_argument("--role", choices=("seed", "spark"), help=argparse.SUPPRESS)
    p.add_argument("--paths", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "seed":
        print(json.dumps(run_seed(args.paths, Path(args.out))))
        return
    if args.role == "spark":
        print(json.dumps(run_spark(args.paths, Path(args.out), args.cores)))
        return

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-clean-"))
    work.mkdir(parents=True, exist_ok=True)
    one, two = prepare(work, args.scale)
    print(f"work dir {work}; {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    print(f"corpus 1x: {describe(one)}")
    print(f"corpus 2x: {describe(two)}")

    seeds, ours, loads = {}, {}, {}
    for size, paths in (("1x", one), ("2x", two)):
        seeds[size] = in_subprocess("seed", paths, work / f"seed-{size}", args.cores)
        loads[f"seed {size}"] = os.getloadavg()[0]
        ours[size] = in_subprocess("spark", paths, work / f"spark-{size}", args.cores)
        loads[size] = os.getloadavg()[0]

    print()
    for size, seed in seeds.items():
        print(
            f"(a) seed, HF datasets, 1 process, {size}: {seed['seconds']:.1f} s ({stage_times(seed)}), "
            f"{seed['cpu_seconds']:.1f} CPU s; {seed['docs_in']:,} docs -> {seed['kept']:,} kept; "
            f"peak RSS {seed['peak_rss_mb']:.0f} MB; load average after {loads['seed ' + size]:.1f}"
        )
    for size, run in ours.items():
        mem, cpu = run["peak_rss_mb"], run["cpu_seconds"]
        print(
            f"(b) ours, Spark local[{args.cores}], {size}: {run['seconds']:.1f} s ({stage_times(run)}) "
            f"after {run['warm_seconds']:.1f} s session start + warm-up; {run['docs_in']:,} docs -> "
            f"{run['kept']:,} kept; CPU s: JVM {cpu.get('jvm', 0):.1f}, Python workers "
            f"{cpu.get('python_worker', 0):.1f}, driver {cpu['driver_python']:.1f}; peak RSS per process: "
            f"JVM {mem.get('jvm', 0):.0f} MB, Python worker {mem.get('python_worker', 0):.0f} MB "
            f"(max of {mem['python_workers']:.0f}), driver {mem['driver_python']:.0f} MB; load average after "
            f"{loads[size]:.1f}"
        )
    print()
    for size, run in ours.items():
        seed, our_cpu = seeds[size], sum(run["cpu_seconds"].values())
        print(
            f"speed (a)/(b) at {size}, wall clock: {seed['seconds'] / run['seconds']:.2f}x steady state, "
            f"{seed['seconds'] / (run['seconds'] + run['warm_seconds']):.2f}x counting session start and warm-up "
            f"(target >= 3x); CPU seconds {seed['cpu_seconds']:.1f} / {our_cpu:.1f} = "
            f"{seed['cpu_seconds'] / our_cpu:.2f}x less CPU"
        )
    m1, m2 = ours["1x"]["peak_rss_mb"], ours["2x"]["peak_rss_mb"]
    for kind in ("jvm", "python_worker", "driver_python"):
        print(
            f"peak RSS {kind:<14} 1x {m1.get(kind, 0):7.0f} MB   2x {m2.get(kind, 0):7.0f} MB   "
            f"ratio {m2.get(kind, 0) / max(m1.get(kind, 0), 1e-9):.2f}"
        )


if __name__ == "__main__":
    main()
