"""Packing: the pipeline's tokenize-and-pack against the raw Rust tokenizer on the same text and cores (not a test).

    .venv/bin/python bench/bench_pack.py [--scale 3] [--cores 2] [--seq-len 2048] [--work DIR]

Both sides read the same JSONL files (``bench/common.py``; ``--scale 3`` is about 40 MB) and each is a cold process
of its own, timed around the process (CPU seconds and peak RSS of its process tree).

* ours: ``python -m spark_jobs.pipeline --stages pack --seq-len N --master local[CORES]``: ingestion, the seeded
  shuffle into shards, tokenize, pack into sequences of exactly N tokens, Parquet shards, ``manifest.json`` and
  ``report.json``; Spark's start-up included, as a user meets it;
* reference: what the tokenizer alone does with all the cores: read the texts, then ``encode_batch_fast`` over
  1024-document batches with its own Rust thread pool (``RAYON_NUM_THREADS`` = cores), the ids taken out to Python,
  nothing written. Same tokenizer (``slm_common.tokenizer.load_tokenizer``, the pipeline's default), with
  ``encode_special_tokens`` on and no special tokens added, as the packer encodes.

The two token counts must agree (ours without the BOS/EOS it adds per document).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, ROOT, corpus, describe, measure, pipeline, row  # noqa: E402

BATCH = 1024


def reference(paths: list[str]) -> None:
    """Tokenize every text with the bare Rust tokenizer; print tokens and seconds as the last line (JSON)."""
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from slm_common.tokenizer import load_tokenizer

    tok = load_tokenizer().backend_tokenizer
    tok.encode_special_tokens = True
    texts = [json.loads(line)["text"] for path in paths for line in Path(path).open(encoding="utf-8")]
    ready = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), BATCH):
        tokens += sum(len(e.ids) for e in tok.encode_batch_fast(texts[i : i + BATCH], add_special_tokens=False))
    done = time.perf_counter()
    print(json.dumps({"tokens": tokens, "setup_s": ready - start, "encode_s": done - ready}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=3, help="demo corpus scale (3: about 40 MB; 1: about 2 MB)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--reference", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reference:
        return reference(args.reference)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-pack-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = corpus(work, args.scale)
    print(f"corpus: {describe(paths)}; work dir {work}")
    cmd = pipeline(paths, work / "ours", "pack", args.cores, "--seq-len", str(args.seq_len))
    ours = measure(cmd, work / "ours.log")
    report = json.loads((work / "ours" / "report.json").read_text())
    pack = report["stages"]["pack"]
    ours_tokens = pack["tokens"] + pack["dropped_tokens"] - 2 * pack["documents"]
    env = {"RAYON_NUM_THREADS": str(args.cores), "TOKENIZERS_PARALLELISM": "true"}
    ref = measure([sys.executable, __file__, "--reference", *paths], work / "ref.log", env)
    detail = json.loads((work / "ref.log").read_text().strip().splitlines()[-1])

    print(HEADER)
    print(row(f"ours, Spark local[{args.cores}]", ours, f"{pack['sequences']:,} sequences of {args.seq_len}; "
              f"{report['seconds']:.1f} s of it in the run after Spark's start (report.json)"))  # fmt: skip
    print(row(f"reference, {args.cores} Rust threads", ref, f"{detail['encode_s']:.1f} s encoding after "
              f"{detail['setup_s']:.1f} s loading the tokenizer and the texts"))  # fmt: skip
    same = "equal" if ours_tokens == detail["tokens"] else f"DIFFER: ours {ours_tokens:,}"
    print(f"tokens: {detail['tokens']:,} ({same})")
    for name, m in (("ours", ours), ("reference", ref)):
        print(f"{name:>9}: {detail['tokens'] / m['seconds']:,.0f} tokens/s over the whole process, "
              f"{detail['tokens'] / m['seconds'] / args.cores:,.0f} per core")  # fmt: skip
    print(f"ours / reference throughput: {ref['seconds'] / ours['seconds']:.1%} (wall clock), "
          f"{ref['cpu_s'] / ours['cpu_s']:.1%} (CPU seconds); against the reference's encoding alone: "
          f"{detail['encode_s'] / ours['seconds']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
