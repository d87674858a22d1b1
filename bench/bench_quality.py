"""What the ``quality`` stage removes from the demo corpus, rule by rule, and what it adds to the fused pass (not a test)

    .venv/bin/python bench/bench_quality.py [--scale 1] [--repeat 3]

The corpus is the demo corpus (``common.corpus``) in Arrow batches of the pipeline's size. The fused pass's Python
work is run in-process, as the Spark worker runs it (:class:`~spark_jobs.batches.RowChain`): ``filter`` alone, then
``filter`` and ``quality``, in turns, ``--repeat`` times; the medians are printed (ingestion's reading and Spark's
transfers, the same for both, are left out, so the ratio is an upper bound of what ``quality`` adds to a run).
Then a Markdown table of the share of the prose documents that ``filter`` keeps which each quality rule removes
alone (any order) and as the first rule that fires (what ``report.json`` counts).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import corpus  # noqa: E402

from spark_jobs.batches import RowChain  # noqa: E402
from spark_jobs.config import PipelineConfig  # noqa: E402
from spark_jobs.documents import annotated_schema, arrow_schema  # noqa: E402
from spark_jobs.filters import FilterChain, FilterStage  # noqa: E402
from spark_jobs.quality.rules import BatchText  # noqa: E402
from spark_jobs.quality.stage import QualityOptions, QualityRules  # noqa: E402
from spark_jobs.session import ARROW_BATCH_ROWS  # noqa: E402


def batches(paths: list[str]) -> list[pa.RecordBatch]:
    """The corpus's ``doc_id``, ``text`` and ``kind`` in batches of the pipeline's size."""
    tables = [pj.read_json(path) for path in paths]
    table = pa.concat_tables([t.select(["id", "text", "kind"]).rename_columns(["doc_id", "text", "kind"]) for t in tables])
    return table.to_batches(max_chunksize=ARROW_BATCH_ROWS)


def timed(chain: RowChain, data: list[pa.RecordBatch]) -> float:
    started = time.perf_counter()
    for batch in data:
        chain(batch)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=1, help="demo corpus scale (1: about 2 MB)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as work:
        data = batches(corpus(Path(work), args.scale))
    cfg = PipelineConfig()
    schema = arrow_schema(annotated_schema())
    filter_chain = FilterChain.from_config(cfg.options(FilterStage.Options))
    quality = QualityRules.from_options(cfg.options(QualityOptions))
    alone, fused = RowChain((filter_chain,), schema), RowChain((filter_chain, quality), schema)
    times: dict[str, list[float]] = {"filter": [], "filter+quality": []}
    for _ in range(args.repeat):
        times["filter"].append(timed(alone, data))
        times["filter+quality"].append(timed(fused, data))
    docs = sum(b.num_rows for b in data)
    chars = sum(pc.sum(pc.utf8_length(b.column("text"))).as_py() for b in data)
    print(f"{docs} documents, {chars / 1e6:.1f} M characters, batches of {ARROW_BATCH_ROWS}")
    for name, runs in times.items():
        print(f"{name:<15} median {statistics.median(runs):.3f} s  min {min(runs):.3f} s  runs {', '.join(f'{t:.3f}' for t in runs)}")
    ratio = statistics.median(times["filter+quality"]) / statistics.median(times["filter"])
    print(f"filter+quality / filter: {ratio:.2f}")

    kept = [b.filter(pc.and_(pc.is_null(alone(b).column("reason")), pc.equal(b.column("kind"), "text"))) for b in data]
    texts = pa.concat_arrays([b.column("text") for b in kept if b.num_rows])
    measured = BatchText(texts)
    first = [rule.split(":")[0] if rule else None for rule in quality.rules(texts)]
    print(f"\nprose documents kept by filter: {len(texts)}\n")
    print("| rule | removes alone | removes first |")
    print("|---|---:|---:|")
    for unit in quality.units:
        fires = int(np.count_nonzero(unit.fires(unit.measure(measured))))
        decided = first.count(unit.name)
        print(f"| `{unit.name}` | {fires / len(texts):.1%} | {decided / len(texts):.1%} |")
    removed = sum(rule is not None for rule in first)
    print(f"| all rules | | {removed / len(texts):.1%} |")


if __name__ == "__main__":
    main()
