"""Near dedup: the pipeline's MinHash LSH against datasketch's ``MinHashLSH``, both scored against exact Jaccard
(not a test).

    .venv/bin/python bench/bench_near_dedup.py [--corpus demo|mixed] [--scale 8] [--multiple 1] [--repeat 1]
                                               [--cores 2] [--work DIR]

Corpus: the flattened demo corpus (``bench/common.py``; its mirrors hold exact, lightly edited and rewritten copies;
``--scale 8`` is about 107 MB), or with ``--corpus mixed`` ``common.mixed_corpus`` (a real dump's shape, about
94 MB), plus edited copies of a seeded sample of its documents at controlled word 5-gram Jaccard levels (0.5 ...
0.95: words replaced at spaced positions); ids are a seeded permutation, so which copy is the smallest, the one kept,
is random. ``--multiple K`` repeats all of it K times with new ids (exact copies, as ``bench_scale.py`` grows a
corpus). Each side is a cold process of its own, timed around the process.

* ours: ``python -m spark_jobs.pipeline --stages near_dedup --master local[CORES]``: ingestion, MinHash signatures,
  LSH bands, verified candidates, connected components on Spark, ``cleaned/``, ``removed/`` and ``report.json``;
* reference: datasketch ``MinHashLSH`` with the same bands and rows (read from our ``report.json``) in one process:
  documents inserted in id order, each queried first and dropped on any hit (greedy).

Ground truth is every pair at exact 5-gram Jaccard >= 0.5, by brute force (a sparse document x shingle matrix times
its transpose). Recall: the share of pairs at or above the threshold of which at most one document was kept.
Precision: the share of removed documents that have a kept document at Jaccard >= 0.7.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import xxhash
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, corpus, describe, measure, median_run, mixed_corpus, pipeline, row  # noqa: E402

LEVELS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams as the pipeline defines them: lowercased words split on any whitespace, joined by one space."""
    w = text.lower().split()
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def edited(text: str, target: float, rng: random.Random) -> str | None:
    """``text`` with spaced words replaced: k replacements 5+ words apart change 5k of S shingles on each side, so
    the 5-gram Jaccard is (S - 5k) / (S + 5k)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    k = round((len(spans) - 4) * (1 - target) / (5 * (1 + target)))
    if k < 1 or len(spans) // k < 6:
        return None
    stride, out, last = len(spans) // k, [], 0
    for i in range(k):
        start, end = spans[rng.randrange(i * stride + 2, (i + 1) * stride - 2)]
        out += [text[last:start], f"edit{rng.randrange(10**9)}"]
        last = end
    return "".join(out + [text[last:]])


def write_corpus(work: Path, scale: int, seed: int = 0, mixed: bool = False, multiple: int = 1) -> list[str]:
    rng = random.Random(seed)
    if mixed:
        mixed_corpus(work / "mixed.parquet")
        docs = pq.read_table(work / "mixed.parquet").to_pylist()
    else:
        docs = [json.loads(line) for path in corpus(work, scale) for line in open(path, encoding="utf-8")]
    for i in rng.sample(range(len(docs)), min(len(docs) // 12, 1200)):
        copy = edited(docs[i]["text"], rng.choice(LEVELS), rng)
        docs += [{**docs[i], "text": copy}] if copy else []
    docs *= multiple
    ids = list(range(len(docs)))
    rng.shuffle(ids)
    path = work / "near.jsonl"
    with path.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps({**d, "id": i}, ensure_ascii=False) + "\n" for d, i in zip(docs, ids, strict=True))
    return [str(path)]


def reference(path: str, b: int, r: int, num_perm: int, n: int) -> None:
    """Greedy datasketch dedup in id order; prints the removed ids as the last line (JSON)."""
    from datasketch import MinHash, MinHashLSH

    docs = sorted((json.loads(line) for line in open(path, encoding="utf-8")), key=lambda d: d["id"])
    lsh, removed = MinHashLSH(num_perm=num_perm, params=(b, r)), []
    for doc in docs:
        grams = shingles(doc["text"], n)
        if grams:
            m = MinHash(num_perm=num_perm)
            m.update_batch([s.encode() for s in grams])
            if lsh.query(m):
                removed.append(doc["id"])
            else:
                lsh.insert(doc["id"], m)
    print(json.dumps(removed))


def score(texts: list[str], kept: list[np.ndarray], n: int, threshold: float) -> list[tuple[float, float, str]]:
    """(recall, precision, detail) of each ``kept`` mask against brute-force exact Jaccard."""
    hashed = [np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in shingles(t, n)), np.uint64) for t in texts]
    _, cols = np.unique(np.concatenate(hashed), return_inverse=True)
    indptr = np.concatenate([[0], np.cumsum([len(h) for h in hashed])])
    m = sparse.csr_matrix((np.ones(len(cols), np.int32), cols, indptr), shape=(len(texts), int(cols.max()) + 1))
    sizes, mt, pairs = np.diff(indptr), m.T.tocsr(), []
    for lo in range(0, m.shape[0], 256):
        inter = (m[lo : lo + 256] @ mt).tocoo()
        i, j, k = inter.row + lo, inter.col, inter.data
        jac = k / (sizes[i] + sizes[j] - k)
        keep = (j > i) & (jac >= 0.5)
        pairs.append((i[keep], j[keep], jac[keep]))
    i, j, jac = (np.concatenate(x) for x in zip(*pairs, strict=True))
    results = []
    for mask in kept:
        true, close = jac >= threshold, jac >= 0.7
        missed = int((true & mask[i] & mask[j]).sum())
        justified = np.zeros(len(mask), bool)
        justified[i[close & mask[j]]] = justified[j[close & mask[i]]] = True
        removed = ~mask
        unjustified = int((removed & ~justified).sum())
        recall = 1 - missed / max(1, int(true.sum()))
        precision = 1 - unjustified / max(1, int(removed.sum()))
        detail = f"{missed} of {true.sum()} pairs missed, {unjustified} of {removed.sum()} removals unjustified"
        results.append((recall, precision, detail))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=8, help="demo corpus scale (8: about 107 MB; 1: about 2 MB)")
    p.add_argument(
        "--corpus",
        choices=("demo", "mixed"),
        default="demo",
        help="demo: the demo corpus at --scale; mixed: common.mixed_corpus (about 94 MB, --scale unused)",
    )
    p.add_argument("--multiple", type=int, default=1, help="the corpus (edited copies included) this many times over")
    p.add_argument("--repeat", type=int, default=1, help="runs of each side, in turns; the median is shown")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--reference", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        return reference(args.reference[0], *map(int, args.reference[1:]))

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-near-dedup-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = write_corpus(work, args.scale, mixed=args.corpus == "mixed", multiple=args.multiple)
    print(f"corpus: {describe(paths)} with edited copies; work dir {work}")
    ours_runs, ref_runs = [], []
    for _ in range(args.repeat):  # in turns, so that a slow spell of the machine falls on both sides
        shutil.rmtree(work / "ours", ignore_errors=True)  # a fresh output: nothing to reuse
        ours_runs.append(measure(pipeline(paths, work / "ours", "near_dedup", args.cores), work / "ours.log"))
        rep = json.loads((work / "ours" / "report.json").read_text())["stages"]["near_dedup"]
        bands = (str(rep[k]) for k in ("b", "r", "num_perm", "ngram"))
        ref_runs.append(measure([sys.executable, __file__, "--reference", paths[0], *bands], work / "ref.log"))
    ours, ref = median_run(ours_runs), median_run(ref_runs)

    docs = [json.loads(line) for line in open(paths[0], encoding="utf-8")]
    ids = np.array([d["id"] for d in docs])
    ours_removed = pq.read_table(work / "ours" / "removed", columns=["doc_id"]).column("doc_id").to_numpy()
    ref_removed = json.loads((work / "ref.log").read_text().strip().splitlines()[-1])
    masks = [~np.isin(ids, ours_removed), ~np.isin(ids, np.array(ref_removed, dtype=ids.dtype))]
    scores = score([d["text"] for d in docs], masks, rep["ngram"], rep["threshold"])
    print(f"threshold {rep['threshold']}, {rep['num_perm']} permutations, b={rep['b']} r={rep['r']}")
    print(HEADER)
    for name, m, (recall, precision, detail) in zip(
        (f"ours, Spark local[{args.cores}]", "reference, datasketch"), (ours, ref), scores, strict=True
    ):
        print(row(name, m, f"recall {recall:.4f}, precision {precision:.4f} ({detail})"))
    if args.repeat > 1:
        print(f"runs (s): ours {[round(r['seconds'], 1) for r in ours_runs]}, "
              f"reference {[round(r['seconds'], 1) for r in ref_runs]}; the median run of each is shown")  # fmt: skip
    print(f"reference / ours: wall clock {ref['seconds'] / ours['seconds']:.2f}x, CPU seconds "
          f"{ref['cpu_s'] / ours['cpu_s']:.2f}x (above 1: ours is faster, uses less CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
