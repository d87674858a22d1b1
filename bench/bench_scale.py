"""Scaling on the hard layout: the cleaning of ``bench_clean.py`` (and packing) on 1x, 2x and 4x a corpus written as
ONE Parquet file with ONE row group, ours against the "Pretraining LLMs" course's one-process ``datasets`` pipeline
(not a test).

    .venv/bin/python bench/bench_scale.py [--corpus demo|mixed] [--scale 8] [--stages S] [--seq-len 32]
                                          [--multiples 1,2,4] [--repeat 1] [--cores 2] [--work DIR] [--png FILE]

The corpus is ``common.corpus`` at ``--scale`` (8: about 107 MB, 83% code) or ``common.mixed_corpus`` (about 94 MB:
31,000 short documents in many languages, legal texts, source files with a few huge ones, some prose), then 2x and
4x of it: copies of its rows with new ids, as the demo corpus's mirrors are (exact copies, which exact dedup
removes). Each size is one Parquet file written by pyarrow with ``row_group_size`` = its row count: a reader that
splits by row groups alone gets one task. Both sides are cold processes of their own, timed around the process
(wall and CPU seconds, peak RSS of the process tree and of its largest driver, JVM and Python worker process:
``bench/common.py``):

* ours: ``python -m spark_jobs.pipeline --stages STAGES --master local[CORES]`` (default
  ``filter,langid,exact_dedup``; with ``pack``, ``--seq-len`` too);
* reference: ``bench_clean.py``'s (``load_dataset("parquet")``, the course's filters, fastText, a hash set), and
  when ours packs, the course's packing (``Dataset.map`` tokenizing with the same tokenizer, one concatenation, rows
  of ``--seq-len``).

Prints a table and writes a PNG (default ``WORK/bench_scale.png``) and its figures as JSON: time and peak memory
against input size, both sides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, corpus, measure, median_run, mixed_corpus, one_row_group, pipeline, row  # noqa: E402


def plot(results: list[dict], png: Path, stages: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = [r["mb"] for r in results]
    for side, style in (("ours", "o-"), ("reference", "s--")):
        time_ax.plot(sizes, [r[side]["seconds"] for r in results], style, label=side)
        mem_ax.plot(sizes, [r[side]["tree_peak_mb"] for r in results], style, label=f"{side}: process tree")
    for kind, style in (("jvm", "^:"), ("worker", "v:"), ("driver", "d:")):  # ours, each process by itself
        peaks = [r["ours"].get("peaks_mb", {}).get(kind) for r in results]
        if None not in peaks:
            mem_ax.plot(sizes, peaks, style, label=f"ours: largest {kind} process")
    time_ax.set(xlabel="MB of text (one Parquet file, one row group)", ylabel="wall seconds, cold process")
    mem_ax.set(xlabel="MB of text (one Parquet file, one row group)", ylabel="peak RSS, MB")
    for axes in (time_ax, mem_ax):
        axes.legend()
        axes.set_ylim(bottom=0)
    figure.suptitle(f"{stages} on one-row-group Parquet: ours vs the course's datasets pipeline")
    figure.savefig(png, dpi=120, bbox_inches="tight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=8, help="demo corpus scale of 1x (8: about 107 MB; 1: about 2 MB)")
    p.add_argument("--cores", type=int, default=2, help="cores of our local Spark (the reference uses one)")
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--png", type=Path, help="the plot (default WORK/bench_scale.png)")
    p.add_argument(
        "--corpus",
        choices=("demo", "mixed"),
        default="demo",
        help="demo: the demo corpus at --scale; mixed: common.mixed_corpus (about 94 MB, --scale unused)",
    )
    p.add_argument("--stages", default="filter,langid,exact_dedup", help="our stages; with pack, both sides pack")
    p.add_argument("--seq-len", type=int, default=32, help="sequence length of both sides' packing")
    p.add_argument("--multiples", default="1,2,4", help="sizes to run, as multiples of the corpus")
    p.add_argument("--repeat", type=int, default=1, help="runs of each side per size, in turns; the median is shown")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.corpus == "mixed":
        mixed_corpus(work / "mixed.parquet")
        paths = [str(work / "mixed.parquet")]
    else:
        paths = corpus(work, args.scale)
    packs = "pack" in args.stages.split(",")
    ours_extra = ["--seq-len", str(args.seq_len)] if packs else []
    clean = str(Path(__file__).with_name("bench_clean.py"))
    results = []
    for multiple in map(int, args.multiples.split(",")):
        data = work / f"x{multiple}"
        data.mkdir(exist_ok=True)
        docs, mb = one_row_group(paths, data / "corpus.parquet", multiple)
        inputs = [str(data / "corpus.parquet")]
        ours_runs, ref_runs = [], []
        for _ in range(args.repeat):  # in turns, so that a slow spell of the machine falls on both sides
            shutil.rmtree(work / f"ours-x{multiple}", ignore_errors=True)  # a fresh output: nothing to reuse
            ours_runs.append(measure(pipeline(inputs, work / f"ours-x{multiple}", args.stages, args.cores,
                                              *ours_extra), work / f"ours-x{multiple}.log"))  # fmt: skip
            (work / f"ref-x{multiple}").mkdir(exist_ok=True)
            ref_runs.append(measure([sys.executable, clean, "--reference", str(work / f"ref-x{multiple}"), *inputs,
                                     *ours_extra], work / f"ref-x{multiple}.log"))  # fmt: skip
        kept = json.loads((work / f"ours-x{multiple}" / "report.json").read_text())["accounting"]["cleaned"]
        ref_kept = json.loads((work / f"ref-x{multiple}.log").read_text().strip().splitlines()[-1])["kept"]
        results.append({"multiple": multiple, "docs": docs, "mb": mb, "ours": median_run(ours_runs),
                        "reference": median_run(ref_runs), "ours_runs_s": [round(r["seconds"], 1) for r in ours_runs],
                        "ref_runs_s": [round(r["seconds"], 1) for r in ref_runs], "kept": kept,
                        "ref_kept": ref_kept})  # fmt: skip
        print(f"{multiple}x: {docs:,} docs, {mb:.1f} MB of text, one row group", flush=True)
    print(f"corpus {args.corpus} (scale {args.scale}), stages {args.stages}, one Parquet file of one row group per "
          f"size; ours on local[{args.cores}]")  # fmt: skip
    print(HEADER)
    for r in results:
        runs = f"; runs {r['ours_runs_s']}" if args.repeat > 1 else ""
        print(row(f"{r['multiple']}x ours", r["ours"],
                  f"{r['mb']:.1f} MB, {r['docs']:,} docs -> {r['kept']:,} kept{runs}"))  # fmt: skip
        ratio = r["reference"]["seconds"] / r["ours"]["seconds"]
        runs = f"; runs {r['ref_runs_s']}" if args.repeat > 1 else ""
        print(row(f"{r['multiple']}x reference", r["reference"], f"-> {r['ref_kept']:,} kept; reference / ours "
                  f"wall {ratio:.2f}x (above 1: ours is faster){runs}"))  # fmt: skip
    png = args.png or work / "bench_scale.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(results, png, args.stages)
    facts = {"corpus": args.corpus, "scale": args.scale, "stages": args.stages, "cores": args.cores}
    png.with_suffix(".json").write_text(json.dumps({**facts, "results": results}, indent=1))
    print(f"wrote {png} and {png.with_suffix('.json')}")


if __name__ == "__main__":
    main()
