"""Benchmark of the near_dedup stage: accuracy against brute-force exact Jaccard, speed against datasketch.

    .venv/bin/python bench/bench_near_dedup.py --out /tmp/bench_near_dedup [--target-mb 100] [--seed 0]

Corpus (written under ``--out``, never committed): what a Python installation carries, which is full of real
near-duplicates: licence files, the standard library, and every top-level package that both the project's
virtualenv and the interpreter's own site-packages hold (the same package in two versions, or the same version
twice: vendored pip/setuptools, numpy, sympy, ...), plus edited copies of a seeded sample of files at controlled
Jaccard levels (0.5 ... 0.95; words replaced at spaced positions, original whitespace kept). doc_ids are a seeded
permutation, so which copy is "the smallest" is random.

Ground truth: every pair with exact n-gram Jaccard >= 0.5, by brute force: a binary document x shingle sparse
matrix (shingles from the reference ``shingle_set``, hashed to 64 bits), ``M[rows] @ M.T`` in row chunks for the
intersections, sizes for the unions. Metrics:

* recall: share of true pairs (Jaccard >= threshold) of which at most one document was kept (target >= 0.995);
* precision: share of removed documents that still have a kept document at Jaccard >= 0.7 (target >= 0.995).

Speed: the stage (read Parquet -> annotate -> write Parquet, Spark local[2], session already started) against a
single-process datasketch baseline on the same texts in the same run: ``MinHashLSH`` with the same (b, r), documents
inserted in doc_id order, each queried before insertion and dropped on any hit (default SHA-1 shingle hashing, as
datasketch is normally used). Both are scored with the same metrics. The two alternate ``--repeat`` times so both
see the same machine load (this machine is shared); ours' first run also pays the JVM's code generation and the
Python workers' start, which a pipeline pays once for all its stages, so every run is printed and the best compared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spark_jobs.config import PipelineConfig  # noqa: E402
from spark_jobs.dedup.minhash import choose_bands, shingle_set  # noqa: E402

VENV_SITE = Path(sysconfig.get_paths()["purelib"])
BASE_LIB = Path(sysconfig.get_paths()["stdlib"])
BASE_SITE = BASE_LIB / "site-packages"
MAX_FILE_BYTES = 1_000_000
EDIT_LEVELS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)
LICENCE_NAMES = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)
WORD = re.compile(r"\S+")  # the same separators as str.split()


# --- corpus -------------------------------------------------------------------------------------------------------


def licence_files() -> list[Path]:
    found = set()
    for root in (VENV_SITE, BASE_LIB):
        for path in root.rglob("*"):
            if LICENCE_NAMES.match(path.name) and path.is_file():
                found.add(path)
    return sorted(found)


def python_files(root: Path, exclude: Path | None = None) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if p.is_file() and (exclude is None or exclude not in p.parents))


def shared_packages() -> list[str]:
    """Top-level packages installed in both site-packages: the same code twice, often in two versions."""

    def names(site: Path) -> set[str]:
        return {p.name for p in site.iterdir() if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_")}

    return sorted(names(VENV_SITE) & names(BASE_SITE)) if BASE_SITE.is_dir() else []


def read_text(path: Path) -> str | None:
    if path.stat().st_size > MAX_FILE_BYTES:
        return None
    return path.read_bytes().decode("utf-8", errors="replace")


def edited_copy(text: str, target: float, rng: random.Random) -> str | None:
    """``text`` with spaced words replaced so its 5-gram Jaccard to the original is about ``target``.

    k replacements at least 5 words apart change 5k of S shingles on each side: J = (S - 5k) / (S + 5k).
    """
    spans = [m.span() for m in WORD.finditer(text)]
    shingles = len(spans) - 4
    k = round(shingles * (1 - target) / (5 * (1 + target)))
    if k < 1 or len(spans) // k < 6:
        return None
    stride = len(spans) // k
    chosen = [rng.randrange(i * stride + 2, (i + 1) * stride - 2) for i in range(k)]
    out, last = [], 0
    for idx in chosen:
        start, end = spans[idx]
        out += [text[last:start], f"edit{rng.randrange(10**9)}"]
        last = end
    return "".join(out + [text[last:]])


def build_corpus(out: Path, target_mb: float, seed: int) -> Path:
    """Write ``corpus.parquet`` (doc_id, text, kind, source) and return its path."""
    rng = random.Random(seed)
    sources = [(p, "text") for p in licence_files()] + [(p, "code") for p in python_files(BASE_LIB, BASE_SITE)]
    for name in shared_packages():
        sources += [(p, "code") for site in (VENV_SITE, BASE_SITE) for p in python_files(site / name)]
    docs: list[tuple[str, str, str]] = []
    total, budget = 0, int(target_mb * 1e6)
    for path, kind in sources:
        text = read_text(path)
        if text is not None:
            docs.append((text, kind, str(path)))
            total += len(text.encode())
        if total >= budget:
            break
    originals = list(docs)
    for i in rng.sample(range(len(originals)), min(len(originals) // 12, 1200)):
        text, kind, source = originals[i]
        target = rng.choice(EDIT_LEVELS)
        copy = edited_copy(text, target, rng)
        if copy is not None:
            docs.append((copy, kind, f"{source}#edit{target}"))
    ids = list(range(len(docs)))
    rng.shuffle(ids)
    table = pa.table(
        {
            "doc_id": pa.array(ids, pa.int64()),
            "text": [d[0] for d in docs],
            "kind": [d[1] for d in docs],
            "source": [d[2] for d in docs],
        }
    )
    path = out / "corpus.parquet"
    pq.write_table(table, path, row_group_size=512)
    print(
        f"corpus: {len(docs)} docs ({len(originals)} files + {len(docs) - len(originals)} edited copies), "
        f"{sum(len(d[0].encode()) for d in docs) / 1e6:.1f} MB -> {path}"
    )
    return path


# --- ground truth -------------------------------------------------------------------------------------------------


def shingle_matrix(texts: list[str], n: int) -> sparse.csr_matrix:
    """Binary documents x shingles matrix from the reference n-gram sets (shingles as 64-bit hashes)."""
    hashed = [np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in shingle_set(t, n)), np.uint64) for t in texts]
    sizes = np.array([len(h) for h in hashed])
    _, cols = np.unique(np.concatenate(hashed), return_inverse=True)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    data = np.ones(len(cols), dtype=np.int32)
    return sparse.csr_matrix((data, cols.astype(np.int64), indptr), shape=(len(texts), int(cols.max()) + 1))


def similar_pairs(m: sparse.csr_matrix, min_jaccard: float, chunk: int = 256) -> tuple[np.ndarray, ...]:
    """All pairs (i < j) with exact Jaccard >= ``min_jaccard``: (i, j, jaccard) arrays."""
    sizes = np.asarray(m.sum(axis=1)).ravel()
    mt = m.T.tocsr()
    out_i, out_j, out_s = [], [], []
    for lo in range(0, m.shape[0], chunk):
        inter = (m[lo : lo + chunk] @ mt).tocoo()
        i, j = inter.row + lo, inter.col
        keep = j > i
        i, j, k = i[keep], j[keep], inter.data[keep]
        jac = k / (sizes[i] + sizes[j] - k)
        hit = jac >= min_jaccard
        out_i.append(i[hit])
        out_j.append(j[hit])
        out_s.append(jac[hit])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)


def accuracy(pairs: tuple[np.ndarray, ...], kept: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recall over true pairs and precision over removed documents (``kept``: boolean per row)."""
    i, j, jac = pairs
    true = jac >= threshold
    caught = ~(kept[i] & kept[j])
    close = jac >= 0.7
    justified = np.zeros(len(kept), dtype=bool)
    justified[i[close & kept[j]]] = True
    justified[j[close & kept[i]]] = True
    removed = ~kept
    return {
        "true_pairs": int(true.sum()),
        "recall": float(caught[true].mean()) if true.any() else 1.0,
        "missed_pairs": int((true & ~caught).sum()),
        "removed": int(removed.sum()),
        "precision": float(justified[removed].mean()) if removed.any() else 1.0,
        "unjustified_removals": int((removed & ~justified).sum()),
    }


# --- the two systems ----------------------------------------------------------------------------------------------


def start_spark() -> tuple[Any, float]:
    """A local[2] session, warmed by one trivial job; and the seconds that took (not part of the stage timing)."""
    from spark_jobs.session import get_spark

    started = time.time()
    spark = get_spark(master="local[2]", app_name="bench-near-dedup", ui=False)
    spark.sparkContext.setLogLevel("ERROR")
    spark.range(1).count()
    return spark, time.time() - started


def run_ours(spark: Any, corpus: Path, out: Path, cfg: PipelineConfig) -> tuple[Any, float]:
    """The stage as the pipeline runs it: read Parquet, annotate, write Parquet. Returns (stage, seconds)."""
    from pyspark.sql import functions as F

    from spark_jobs.dedup.near import NearDedupStage

    started = time.time()
    docs = spark.read.parquet(str(corpus)).select(
        "doc_id",
        "text",
        "kind",
        "source",
        F.lit(None).cast("string").alias("lang"),
        F.lit(None).cast("double").alias("lang_score"),
        F.lit(None).cast("map<string,string>").alias("meta"),
    )
    stage = NearDedupStage()
    stage.annotate(docs, cfg).write.mode("overwrite").parquet(str(out / "annotated"))
    return stage, time.time() - started


def run_datasketch(ids: np.ndarray, texts: list[str], cfg: PipelineConfig) -> tuple[set[int], float]:
    """Greedy single-process MinHashLSH dedup in doc_id order: the ids it removes, and its seconds."""
    from datasketch import MinHash, MinHashLSH

    started = time.time()
    bands = choose_bands(cfg.dedup_threshold, cfg.num_perm, cfg.dedup_fp_weight, cfg.dedup_fn_weight)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(bands.b, bands.r))
    removed = set()
    for row in np.argsort(ids, kind="stable"):
        shingles = shingle_set(texts[row], cfg.ngram)
        if not shingles:
            continue
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([s.encode() for s in shingles])
        if lsh.query(m):
            removed.add(int(ids[row]))
        else:
            lsh.insert(int(ids[row]), m)
    return removed, time.time() - started


def direct_jaccard(m: sparse.csr_matrix, rows: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Exact Jaccard of each ``rows[k]`` with ``other[k]`` (row-wise products of the shingle matrix)."""
    inter = np.asarray(m[rows].multiply(m[other]).sum(axis=1)).ravel()
    sizes = np.asarray(m.sum(axis=1)).ravel()
    return inter / (sizes[rows] + sizes[other] - inter)


# --- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/bench_near_dedup", help="work dir for corpus and outputs")
    p.add_argument("--target-mb", type=float, default=100.0, help="MB of original files before edited copies")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each system, alternating (best is compared)")
    p.add_argument("--skip-baseline", action="store_true", help="skip the datasketch baseline")
    args = p.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig(input=["bench"], output=str(out / "pipeline"), seed=args.seed)

    corpus = build_corpus(out, args.target_mb, args.seed)
    table = pq.read_table(corpus, columns=["doc_id", "text"])
    ids, texts = table.column("doc_id").to_numpy(), table.column("text").to_pylist()

    spark, session_s = start_spark()
    print(f"spark session start (not counted): {session_s:.1f} s")
    seconds: dict[str, list[float]] = {"ours": [], "datasketch": []}
    for attempt in range(1, args.repeat + 1):  # alternating, so both see the same machine load
        stage, took = run_ours(spark, corpus, out, cfg)
        seconds["ours"].append(round(took, 2))
        print(f"run {attempt}: ours (read, annotate, write on Spark local[2]) {took:.1f} s", flush=True)
        if not args.skip_baseline:
            base_removed, took = run_datasketch(ids, texts, cfg)
            seconds["datasketch"].append(round(took, 2))
            print(f"run {attempt}: datasketch greedy (one process) {took:.1f} s", flush=True)
    annotated = spark.read.parquet(str(out / "annotated"))
    report = stage.report(annotated, cfg)
    dup_of = {r["doc_id"]: r["duplicate_of"] for r in annotated.select("doc_id", "duplicate_of").collect()}
    spark.stop()

    started = time.time()
    matrix = shingle_matrix(texts, cfg.ngram)
    pairs = similar_pairs(matrix, 0.5)
    print(f"ground truth: {len(pairs[0])} pairs with Jaccard >= 0.5 in {time.time() - started:.1f} s")
    row_of = {int(d): r for r, d in enumerate(ids)}
    removed_rows = np.array([row_of[d] for d, kept in dup_of.items() if kept is not None], dtype=np.int64)
    kept_rows = np.array([row_of[dup_of[int(ids[r])]] for r in removed_rows], dtype=np.int64)
    to_kept = direct_jaccard(matrix, removed_rows, kept_rows)
    results: dict[str, Any] = {
        "corpus": {"docs": len(ids), "mb": round(sum(len(t.encode()) for t in texts) / 1e6, 1), "pairs": len(pairs[0])},
        "ours": {
            "seconds": seconds["ours"],
            **accuracy(pairs, np.array([dup_of[int(d)] is None for d in ids]), cfg.dedup_threshold),
            "removed_at_threshold_to_kept": float(np.mean(to_kept >= cfg.dedup_threshold)) if len(to_kept) else 1.0,
        },
        "report": report,
    }
    if not args.skip_baseline:
        base_kept = np.array([int(d) not in base_removed for d in ids])
        results["datasketch"] = {"seconds": seconds["datasketch"], **accuracy(pairs, base_kept, cfg.dedup_threshold)}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    print(f"b={report['b']} r={report['r']}, {report['components']} components, sizes {report['component_sizes']}")
    print(
        f"ours: removed documents at Jaccard >= {cfg.dedup_threshold} to their kept one (not only via a chain): "
        f"{results['ours']['removed_at_threshold_to_kept']:.4f}"
    )
    for name in ("ours", "datasketch"):
        if name in results:
            r = results[name]
            missed = f"{r['missed_pairs']} of {r['true_pairs']} pairs missed"
            unjustified = f"{r['unjustified_removals']} of {r['removed']} removed"
            print(
                f"{name:>10}: best {min(r['seconds']):6.1f} s  recall {r['recall']:.4f} ({missed})  "
                f"precision {r['precision']:.4f} ({unjustified})"
            )
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
