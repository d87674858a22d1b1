"""Ingestion's readers on clean input, a git revision's against the working tree's, plain Python (not a test).

    .venv/bin/python bench/bench_readers.py BASE [--docs 20000] [--repeat 9] [--check-rows 0]

Generates clean documents (prose with accents, CJK and emoji) as JSONL twice (ASCII escapes as Python's ``json``
writes them, and raw UTF-8) and as Parquet, then reads each file with BASE's ``spark_jobs/ingest/readers.py`` and
with the working tree's, in turns (the order swapped every turn), and prints the CPU seconds of the reading process:
what per-record checks cost where Spark is not in the way. ``--check-rows N`` also times
:func:`spark_jobs.ingest.check_ingested` (the aggregate run on ingestion's written copy) on N rows in a local[2]
session.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spark_jobs.ingest import readers as head  # noqa: E402

WORDS = "the of and to in data model train token é 中文 naïve 😀 café line".split()


def revision_readers(rev: str, work: Path):
    source = subprocess.run(["git", "show", f"{rev}:spark_jobs/ingest/readers.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    path = work / "base_readers.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("base_readers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["base_readers"] = module
    spec.loader.exec_module(module)
    return module


def inputs(work: Path, docs: int) -> dict[str, tuple[str, Path]]:
    rng = random.Random(0)

    def text() -> str:
        lines = rng.randint(3, 40)
        return "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(lines))

    records = [{"id": i, "text": text(), "url": f"https://example.org/{i}"} for i in range(docs)]
    files = {}
    for ascii_only in (True, False):
        path = work / f"docs_{'ascii' if ascii_only else 'utf8'}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records))
        files[path.name] = ("jsonl", path)
    pq.write_table(pa.Table.from_pylist(records), work / "docs.parquet", row_group_size=5000)
    files["docs.parquet"] = ("parquet", work / "docs.parquet")
    return files


def read_all(module, fmt: str, path: Path) -> tuple[float, int]:
    if fmt == "parquet":
        groups = pq.ParquetFile(path).metadata.num_row_groups
        unit = module.ReadUnit(fmt=fmt, uri=str(path), source=str(path), rg_start=0, rg_end=groups)
    else:
        unit = module.ReadUnit(fmt=fmt, uri=str(path), source=str(path), size=path.stat().st_size)
    started = time.process_time()
    rows = sum(batch.num_rows for batch in module.read_unit(unit, module.ReadOptions()))
    return time.process_time() - started, rows


def time_check(rows: int, work: Path) -> None:
    from pyspark.sql import functions as F

    from spark_jobs.ingest import check_ingested
    from spark_jobs.pipeline import write_parquet
    from spark_jobs.session import get_spark

    spark = get_spark(master="local[2]", app_name="bench-readers", shuffle_partitions=8, driver_memory="2g", ui=False)
    source = F.concat(F.lit("file:///data/part-"), (F.col("id") % 8).cast("string"), F.lit(".jsonl"))
    frame = spark.range(rows).select(
        F.xxhash64("id").alias("doc_id"),
        F.lit("x" * 200).alias("text"),
        source.alias("source"),
        F.lit(None).cast("string").alias("reason"),
        F.lit(None).cast("string").alias("rule"),
    )
    written = write_parquet(frame.repartition(8), str(work / "copy"))
    for kind, job in (("check_ingested", lambda: check_ingested(written)), ("count()", written.count)):
        seconds = []
        for _ in range(4):
            started = time.perf_counter()
            job()
            seconds.append(time.perf_counter() - started)
        print(f"{kind} on {rows:,} rows: wall s {[round(s, 2) for s in seconds]} (the first one cold)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("--docs", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--check-rows", type=int, default=0)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-readers-"))
    base = revision_readers(args.base, work)
    for name, (fmt, path) in inputs(work, args.docs).items():
        times: dict[str, list[float]] = {"base": [], "head": []}
        for turn in range(args.repeat):
            pair = [("base", base), ("head", head)]
            for label, module in pair if turn % 2 else pair[::-1]:
                seconds, rows = read_all(module, fmt, path)
                times[label].append(seconds)
        b, h = statistics.median(times["base"]), statistics.median(times["head"])
        print(f"{name} ({path.stat().st_size / 1e6:.1f} MB, {rows:,} docs): median CPU s {args.base} {b:.3f}, "
              f"working tree {h:.3f}, ratio {h / b:.3f}")  # fmt: skip
    if args.check_rows:
        time_check(args.check_rows, work)


if __name__ == "__main__":
    main()
