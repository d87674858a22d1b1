"""Pack throughput against the raw Rust tokenizer on the same text and the same cores (not a test).

    .venv/bin/python bench/bench_pack.py [--cores 2] [--max-mb 40] [--copies 1] [--repeats 5] [--task-cpus 1] [--java-options=...]

The corpus is this interpreter's standard library (``.py`` files, kind ``code``) plus the ``pydoc_data`` topics (kind
``text``), written once to Parquet as the pipeline writes ``cleaned/``: one file per task of its last pass (4 per core),
so Spark reads it with every core, as ``pack_corpus`` reads a real ``cleaned/``. The baseline is what the tokenizer
alone does with all the cores: ``encode_batch_fast`` over 1024-document batches with its own Rust thread pool
(RAYON_NUM_THREADS = cores), ids taken out to Python as any consumer must. The pack job is ``pack_corpus`` on a
local[cores] Spark session, all of it timed: load and save the tokenizer, read, seeded shuffle into shards, sort,
tokenize, pack, write Parquet shards and the manifest. Spark and its Python workers are warmed first by the same
query on 200 of the documents, so the figure is the steady state of a pipeline, not JVM start-up. The per-run costs
that do not grow with the corpus (the driver building the tokenizer, planning, one Python task per shard) stay in;
on this 32 MB corpus they are most of the gap that remains (the last line measures them).

Two ratios are printed. Wall clock is the target's measure, but on a shared machine other tenants' load drifts
between runs (the same raw run measured 10.1 to 13.5 CPU s in one hour here), so raw and pack runs alternate
(``--repeats``): the best of each counts, and the median ratio of adjacent pairs is shown too. CPU time (all threads of
the driver, the JVM and its Python workers) measures the work each side does, which that load barely moves.

A last line separates the per-run constant, measured as the same pack of the shortest documents, from the work that
grows with the corpus: the ratio without it is what a corpus much larger than 32 MB approaches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("SLM_SPARK_UI", "0")

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm_common.tokenizer import load_tokenizer  # noqa: E402
from spark_jobs.config import LOCAL_JAVA_OPTIONS, PipelineConfig  # noqa: E402
from spark_jobs.documents import KIND_CODE, KIND_TEXT, arrow_schema, doc_schema  # noqa: E402
from spark_jobs.pack import pack_corpus  # noqa: E402
from spark_jobs.session import ARROW_BATCH_ROWS, get_spark  # noqa: E402

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def corpus(max_bytes: int) -> list[dict]:
    """Pydoc topics and stdlib sources as doc_schema rows, in a fixed order, up to ``max_bytes`` of UTF-8."""
    import pydoc_data.topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = [(f"pydoc:{name}", text, KIND_TEXT) for name, text in sorted(pydoc_data.topics.topics.items())]
    docs += [
        (str(path), path.read_text(encoding="utf-8", errors="replace"), KIND_CODE)
        for path in sorted(stdlib.rglob("*.py"))
        if "site-packages" not in path.parts
    ]
    rows, size = [], 0
    for i, (source, text, kind) in enumerate(docs):
        size += len(text.encode())
        if size > max_bytes:
            break
        rows.append({"doc_id": i, "text": text, "kind": kind, "source": source})
    return rows


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of a process and all its descendants, live or reaped (the JVM and its Python workers)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited while we looked
                continue
            stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))  # ppid, u+s+cu+cs
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo += children.get(pid, [])
    return total / CLOCK_TICKS


def raw_tokenizer(tok: Tokenizer, texts: list[str]) -> tuple[int, float, float]:
    """Tokens, wall seconds and CPU seconds for the bare tokenizer with its own thread pool.

    One tokenizer serves every repeat, as each pack worker keeps its own. A new one per repeat made the process slower
    run after run, which flattered the pack: five one-thread runs over half the corpus took 5.5 -> 6.6 s and, in a
    slower hour, 7.9 -> 9.9 s with a new tokenizer each, against 5.1-5.4 s and 6.1-7.2 s with one kept.
    """
    wall, cpu, tokens = time.perf_counter(), time.process_time(), 0
    for i in range(0, len(texts), ARROW_BATCH_ROWS):
        batch = texts[i : i + ARROW_BATCH_ROWS]
        tokens += sum(len(e.ids) for e in tok.encode_batch_fast(batch, add_special_tokens=False))
    return tokens, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--max-mb", type=float, default=40.0, help="corpus size cap (the stdlib is about 32 MB)")
    p.add_argument(
        "--copies",
        type=int,
        default=1,
        help="repeat the corpus (new doc ids) for a larger run: about 1 s of the "
        "pack's time is per run (tokenizer save, one task per shard), which a 32 MB corpus does not amortise",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument(
        "--task-cpus",
        type=int,
        default=1,
        help="spark.task.cpus: tokenizer threads per shard task (more with fewer shards than slots)",
    )
    p.add_argument("--java-options", default=LOCAL_JAVA_OPTIONS, help="driver JVM options ('' for HotSpot's defaults)")
    args = p.parse_args()
    os.environ["PYSPARK_SUBMIT_ARGS"] = f"--conf spark.task.cpus={args.task_cpus} pyspark-shell"
    os.environ["RAYON_NUM_THREADS"] = str(args.cores)  # read when the Rust thread pool starts: set it first

    base = corpus(int(args.max_mb * 1e6))
    rows = [{**r, "doc_id": r["doc_id"] + k * len(base)} for k in range(args.copies) for r in base]
    mb = sum(len(r["text"].encode()) for r in rows) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    table = pa.Table.from_pylist(rows, schema=arrow_schema(doc_schema()))
    files = 4 * args.cores  # spark.default.parallelism (spark_jobs.session): a single row group would be one task
    shortest = table.take(pc.sort_indices(pc.utf8_length(table.column("text")))[: 2 * files])
    for name, part_rows in (
        ("cleaned", table),
        ("warmup-cleaned", table.slice(0, 200)),
        ("constant-cleaned", shortest),
    ):
        (work / name).mkdir()
        for part in range(files):
            start, stop = part * len(part_rows) // files, (part + 1) * len(part_rows) // files
            pq.write_table(part_rows.slice(start, stop - start), work / name / f"part-{part:05d}.parquet")
    print(
        f"corpus: {len(rows):,} documents, {mb:.1f} MB (stdlib .py + pydoc topics, {args.copies} cop"
        f"{'y' if args.copies == 1 else 'ies'}); load average {os.getloadavg()}"
    )

    spark = get_spark(master=f"local[{args.cores}]", app_name="bench-pack", ui=False, java_options=args.java_options)
    jvm_pid = spark.sparkContext._gateway.proc.pid
    cleaned = spark.read.parquet(str(work / "cleaned"))
    cfg = PipelineConfig(input=[str(work)], output=str(work), seq_len=args.seq_len)
    # The same query on 200 documents: starts the Python workers, loads their tokenizer, compiles the query's code.
    pack_corpus(spark.read.parquet(str(work / "warmup-cleaned")), cfg, str(work / "warmup"))
    # Warm, the same pack of the shortest documents (two per file) measures the per-run cost that does not grow with
    # the corpus: planning, the tokenizer, a task per shard.
    constant = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        pack_corpus(spark.read.parquet(str(work / "constant-cleaned")), cfg, str(work / "constant"))
        constant = min(constant, time.perf_counter() - start)

    texts = [r["text"] for r in rows]
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    tok = load_tokenizer().backend_tokenizer
    tok.encode_special_tokens = True  # as the packer encodes
    raw = pack = (float("inf"), float("inf"))
    pair_ratios = []
    for repeat in range(args.repeats):
        raw_tokens, raw_wall, raw_cpu = raw_tokenizer(tok, texts)
        raw = min(raw, (raw_wall, raw_cpu))
        wall, cpu = time.perf_counter(), time.process_time() + tree_cpu_seconds(jvm_pid)
        summary = pack_corpus(cleaned, cfg, str(work / "packed"))
        wall, cpu = time.perf_counter() - wall, time.process_time() + tree_cpu_seconds(jvm_pid) - cpu
        pack = min(pack, (wall, cpu))
        pair_ratios.append(raw_wall / wall)
        print(
            f"pair {repeat + 1}: raw {raw_wall:.2f} s ({raw_cpu:.2f} CPU s), pack {wall:.2f} s ({cpu:.2f} CPU s): "
            f"{raw_wall / wall:.1%}"
        )
    tokens = summary["tokens"] + summary["dropped_tokens"] - 2 * summary["documents"]  # without BOS/EOS
    assert tokens == raw_tokens, (tokens, raw_tokens)

    spark_name = f"spark local[{args.cores}], task.cpus {args.task_cpus}"
    for name, (wall, cpu) in (("raw tokenizer", raw), (spark_name, pack)):
        print(
            f"{name}: {tokens:,} tokens in {wall:.2f} s wall = {tokens / wall:,.0f} tokens/s "
            f"= {tokens / wall / args.cores:,.0f} tokens/s/core ({mb / wall:.2f} MB/s); "
            f"{cpu:.2f} CPU s = {tokens / cpu:,.0f} tokens per CPU second"
        )
    print(
        f"pack / raw: {raw[0] / pack[0]:.1%} of the raw tokenizer's wall-clock throughput, best against best "
        f"(target >= 85%); median of the adjacent pairs {statistics.median(pair_ratios):.1%}; "
        f"{raw[1] / pack[1]:.1%} of its CPU efficiency; load average {os.getloadavg()}"
    )
    print(
        f"per-run constant (the same pack of the {2 * files} shortest documents, best of 3): {constant:.2f} s; "
        f"without it, the pack's best run is {raw[0] / (pack[0] - constant):.1%} of the raw tokenizer's best: "
        "the ratio a much larger corpus approaches"
    )
    spark.stop()


if __name__ == "__main__":
    main()
