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
    """The flattened corpus (:func:`corpus`, or Parquet files such as :func:`mixed_corpus`'s), ``multiple`` times over (copies with new ids, as the demo corpus's
    mirrors are), as ONE Parquet file of ONE row group, the layout a reader that splits by row groups alone reads in
    one task; its rows and MB of text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    base = pa.concat_tables(pq.read_table(p) if p.endswith(".parquet") else pj.read_json(p) for p in paths)
    base = base.select(["id", "text", "kind"])
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
    largest single process, and ``peaks_mb`` the largest process of each kind (:func:`process_kind`). Output goes to
    ``log``; a failure raises with its last lines."""
    cpu: dict[int, float] = {}
    tree_peak = proc_peak = 0
    peaks: dict[str, int] = {}
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
                    times, rss, kind = p.cpu_times(), p.memory_info().rss, process_kind(p, root)
                except psutil.Error:  # gone, or going (an exiting JVM still has its memory but no name)
                    continue
                cpu[p.pid] = times.user + times.system
                total, proc_peak = total + rss, max(proc_peak, rss)
                peaks[kind] = max(peaks.get(kind, 0), rss)
            tree_peak = max(tree_peak, total)
            time.sleep(interval)
    seconds = time.perf_counter() - started
    if proc.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (rc {proc.returncode}):\n{tail}")
    return {"seconds": seconds, "cpu_s": sum(cpu.values()), "tree_peak_mb": tree_peak / MB,
            "proc_peak_mb": proc_peak / MB, "peaks_mb": {k: round(v / MB) for k, v in sorted(peaks.items())}}  # fmt: skip


def process_kind(p: psutil.Process, root: psutil.Process) -> str:
    """``driver`` (the command's own process), ``jvm`` (Spark's, and spark-submit's launcher before it), ``worker``
    (any other Python process: Spark's worker daemon and its forks) or ``other``."""
    if p.pid == root.pid:
        return "driver"
    name = p.name()
    return "jvm" if name == "java" else "worker" if name.startswith("python") else "other"


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time (the upper one of an even count), with its own CPU and memory figures."""
    return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]


def row(name: str, m: dict[str, Any], note: str = "") -> str:
    """One line of a benchmark's table."""
    kinds = m.get("peaks_mb", {})
    each = " ".join(f"{kinds[k]:>6}" if k in kinds else f"{'-':>6}" for k in ("driver", "jvm", "worker"))
    return (f"{name:<28} {m['seconds']:8.1f} {m['cpu_s']:8.1f} {m['tree_peak_mb']:10.0f} {m['proc_peak_mb']:10.0f}"
            f" {each}  {note}")  # fmt: skip


HEADER = (f"{'':<28} {'wall s':>8} {'CPU s':>8} {'tree MB':>10} {'proc MB':>10} {'driver':>6} {'jvm':>6}"
          f" {'worker':>6}")  # fmt: skip


# The "mixed" corpus: the shape of a real crawl-and-code dump, built from files this machine already has.
SOURCE_SUFFIXES = (".py", ".js", ".c", ".h", ".java", ".scala", ".rs", ".go", ".sh", ".pyx")


def mixed_corpus(target: Path, short_docs: int = 31_000, code_mb: float = 60.0) -> tuple[int, float]:
    """A corpus shaped like a real dump (many tiny documents in many languages, legal texts full of boilerplate,
    source files with a few huge vendored ones, some English prose), written as ONE Parquet file of ONE row group
    (``id``, ``text``, ``kind``); its rows and MB of text. Everything is read from this machine, in a fixed order:

    * short documents: the translations in the gettext catalogs under ``/usr/share/locale`` (one language per
      catalog), a few messages to a document of a few hundred bytes: the first few of every catalog, then
      ``short_docs`` of them chosen by a hash of their text;
    * legal texts: Debian's ``/usr/share/doc/*/copyright`` files and ``/usr/share/common-licenses``, and the licence
      files of the installed Python packages;
    * code: source files of the installed Python packages and the standard library (every file over 1 MB, then
      others by a hash of their path until about ``code_mb`` MB);
    * prose: the Python documentation's topics (``pydoc_data``) and the standard library's module docstrings.

    On a machine without some of these (no gettext catalogs, say), that part is smaller; the table printed with the
    figures says what was read."""
    import hashlib
    import sysconfig

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    catalogs = sorted(Path("/usr/share/locale").glob("*/LC_MESSAGES/*.mo"))
    each = 2 * short_docs // max(1, len(catalogs)) + 1
    short = [doc for mo in catalogs for doc in _catalog_documents(mo.read_bytes())[:each]]
    short = sorted(short, key=lambda t: hashlib.md5(t.encode()).digest())[:short_docs]
    texts = [(doc, "text") for doc in short]
    print(f"mixed corpus: {len(texts):,} short documents from {len(catalogs):,} gettext catalogs", flush=True)
    legal = sorted(Path("/usr/share/doc").glob("*/copyright")) + sorted(
        p for p in Path("/usr/share/common-licenses").glob("*") if p.is_file()
    )
    roots = sorted({Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib", "stdlib")})
    for root in roots:
        legal += sorted(
            p for p in root.glob("*.dist-info/**/*") if p.name.upper().startswith(("LICEN", "COPYING")) and p.is_file()
        )
    texts += [(t, "text") for t in map(_read, legal) if t.strip()]
    print(f"mixed corpus: {len(legal):,} legal texts", flush=True)
    sources = sorted({p for root in roots for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()})
    sizes = {p: p.stat().st_size for p in sources}
    chosen = [p for p in sources if sizes[p] > 1_000_000]
    budget = code_mb * MB - sum(sizes[p] for p in chosen)
    for p in sorted(sources, key=lambda p: hashlib.md5(str(p).encode()).digest()):
        if budget <= 0:
            break
        if p not in chosen and sizes[p] > 0:
            chosen.append(p)
            budget -= sizes[p]
    texts += [(t, "code") for t in map(_read, sorted(chosen)) if t.strip()]
    print(f"mixed corpus: {len(chosen):,} source files, {sum(sizes[p] for p in chosen) / MB:.1f} MB", flush=True)
    import pydoc_data.topics

    texts += [(t, "text") for t in pydoc_data.topics.topics.values() if len(t) > 200]
    order = sorted(range(len(texts)), key=lambda i: hashlib.md5(texts[i][0].encode()).digest())  # kinds mixed
    table = pa.table({"id": pa.array(range(len(order)), pa.int64()), "text": [texts[i][0] for i in order],
                      "kind": [texts[i][1] for i in order]})  # fmt: skip
    pq.write_table(table, target, row_group_size=table.num_rows)
    return table.num_rows, pc.sum(pc.binary_length(table["text"])).as_py() / MB


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _catalog_documents(data: bytes, size: int = 300) -> list[str]:
    """The translated messages of one gettext ``.mo`` catalog (the format's header: magic, revision, count, offsets of
    the original and translated tables), grouped into documents of about ``size`` bytes."""
    import struct

    if len(data) < 20:
        return []
    endian = "<" if data[:4] == b"\xde\x12\x04\x95" else ">"
    count, _, translated = struct.unpack(endian + "III", data[8:20])
    docs, current = [], ""
    for i in range(1, count):  # entry 0 is the catalog's own header
        length, offset = struct.unpack(endian + "II", data[translated + 8 * i : translated + 8 * i + 8])
        message = data[offset : offset + length].split(b"\0")[0].decode("utf-8", errors="replace").strip()
        if message:
            current = f"{current}\n{message}" if current else message
        if len(current) >= size:
            docs.append(current)
            current = ""
    return docs
