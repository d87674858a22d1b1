"""What the ``quality`` stage removes from the demo corpus, rule by rule, and what it adds to the fused pass (not a test)

    .venv/bin/python bench/bench_quality.py [--scale 1] [--repeat 3]

The corpus is the demo corpus (``common.corpus``) in Arrow batches of the pipeline's size. The fused pass's row
stages are run in-process, as the Spark worker runs them (:class:`~spark_jobs.batches.RowChain`): ``filter``,
``filter,quality``, the default ``filter,langid`` and ``filter,quality,langid``, in turns, ``--repeat`` times; the
medians are printed (ingestion's reading, Spark's transfers and the Parquet write, the same for all, are left out,
so the ratios are upper bounds of what ``quality`` adds to a run's fused pass).
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
from spark_jobs.langid.stage import LangIdStage  # noqa: E402
from spark_jobs.quality.rules import BatchText  # noqa: E402
from spark_jobs.quality.stage import QualityOptions, QualityRules  # noqa: E402
from spark_jobs.session import ARROW_BATCH_ROWS  # noqa: E402


def batches(paths: list[str]) -> list[pa.RecordBatch]:
    """The corpus's ``doc_id``, ``text`` and ``kind`` in batches of the pipeline's size."""
    tables = [pj.read_json(path) for path in paths]
    table = pa.concat_tables(
        [t.select(["id", "text", "kind"]).rename_columns(["doc_id", "text", "kind"]) for t in tables]
    )
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
    langid = LangIdStage().batch_fn(cfg.options(LangIdStage.Options), None)
    quality = QualityRules.from_options(cfg.options(QualityOptions))
    alone = RowChain((filter_chain,), schema)
    chains = {
        "filter": alone,
        "filter,quality": RowChain((filter_chain, quality), schema),
        "filter,langid": RowChain((filter_chain, langid), schema),
        "filter,quality,langid": RowChain((filter_chain, quality, langid), schema),
    }
    timed(chains["filter,langid"], data)  # loads the language model
    times: dict[str, list[float]] = {name: [] for name in chains}
    for _ in range(args.repeat):
        for name, chain in chains.items():
            times[name].append(timed(chain, data))
    docs = sum(b.num_rows for b in data)
    chars = sum(pc.sum(pc.utf8_length(b.column("text"))).as_py() for b in data)
    print(f"{docs} documents, {chars / 1e6:.1f} M characters, batches of {ARROW_BATCH_ROWS}")
    for name, runs in times.items():
        print(f"{name:<22} median {statistics.median(runs):.3f} s  min {min(runs):.3f} s  "
              f"runs {', '.join(f'{t:.3f}' for t in runs)}")  # fmt: skip
    for base, added in (("filter", "filter,quality"), ("filter,langid", "filter,quality,langid")):
        ratio = statistics.median(times[added]) / statistics.median(times[base])
        print(f"{added} / {base}: {ratio:.2f} (medians)")

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
