"""Two revisions of this repository, the same pipeline command, cold, in turns: did a change cost speed? (not a test)

    .venv/bin/python bench/bench_revisions.py BASE [HEAD] [--scale 8] [--repeat 3] [--stages ...] [--cores 2]
        [--one-row-group] [--corpus demo|mixed]

Each revision is checked out in a git worktree of the work directory and run from there (``python -m`` imports the
packages of its working directory first), on the same corpus (``common.corpus``), into a fresh output directory
every time, alternating BASE, HEAD, BASE, HEAD, ... so that load from elsewhere falls on both. Prints every run and
the medians; a revision's outputs are compared with the other's (same row counts in ``cleaned/``, ``removed/``).
``--one-row-group`` gives both the corpus as one Parquet file of one row group (``common.one_row_group``) instead
of its JSONL files; ``--corpus mixed`` gives both ``common.mixed_corpus`` (a real dump's shape, one row group).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, ROOT, corpus, describe, measure, mixed_corpus, one_row_group, pipeline, row  # noqa: E402


def checkout(rev: str, work: Path) -> tuple[str, Path]:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True)
    tree = work / f"rev-{sha.stdout.strip()}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
    return sha.stdout.strip(), tree


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("head", nargs="?", default="HEAD")
    p.add_argument("--scale", type=int, default=8, help="demo corpus scale (8: about 107 MB)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each revision")
    p.add_argument("--stages", default="filter,langid,exact_dedup,pack")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--one-row-group", action="store_true", help="read the corpus as one Parquet file, one row group")
    p.add_argument(
        "--corpus",
        choices=("demo", "mixed"),
        default="demo",
        help="demo: common.corpus at --scale; mixed: common.mixed_corpus (one Parquet file, one row group)",
    )
    args, extra = p.parse_known_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.corpus == "mixed":
        docs, mb = mixed_corpus(work / "corpus.parquet")
        paths = [str(work / "corpus.parquet")]
        print(f"corpus: common.mixed_corpus, {docs:,} rows, {mb:.1f} MB of text, one row group; work dir {work}")
    else:
        paths = corpus(work, args.scale)
        print(f"corpus: {describe(paths)}; stages {args.stages}; work dir {work}")
    if args.one_row_group and args.corpus == "demo":
        docs, mb = one_row_group(paths, work / "corpus.parquet")
        paths = [str(work / "corpus.parquet")]
        print(f"read as {paths[0]}: {docs:,} rows, {mb:.1f} MB of text, one row group")
    trees = [checkout(rev, work) for rev in (args.base, args.head)]
    times: dict[str, list[float]] = {sha: [] for sha, _ in trees}
    print(HEADER)
    for turn in range(args.repeat):
        counts = []
        for sha, tree in trees:
            out = work / f"out-{sha}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = pipeline(paths, out, args.stages, args.cores, *extra)
            m = measure(cmd, work / f"{sha}-{turn}.log", cwd=tree)
            acc = json.loads((out / "report.json").read_text())["accounting"]
            counts.append(acc)
            times[sha].append(m["seconds"])
            print(row(f"{sha} run {turn + 1}", m, f"{acc['cleaned']:,} cleaned, {acc['removed']:,} removed"))
        if counts[0] != counts[1]:
            raise SystemExit(f"the revisions disagree: {counts}")
    (base, _), (head, _) = trees
    med = {sha: statistics.median(t) for sha, t in times.items()}
    print(f"median wall s: {base} {med[base]:.1f}, {head} {med[head]:.1f}; {base} / {head} = "
          f"{med[base] / med[head]:.3f} (above 1: {head} is faster)")  # fmt: skip
    for _, tree in trees:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
