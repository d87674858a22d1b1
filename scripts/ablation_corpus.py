"""A small crawl-like corpus for ``python -m train.ablate``: English prose buried in what the pipeline removes.

``python scripts/ablation_corpus.py OUT.jsonl`` writes about 3 MB of JSONL, built at run time (nothing downloaded)
from the demo corpus's parts: the English prose (``pydoc`` topics and standard-library docstrings) once, plus, as a
crawl has them, an exact copy or a lightly edited copy of each prose document (near_dedup and exact_dedup),
documents in the demo's other languages, each its paragraph with half the words swapped for others of it, so
that they are not duplicates of one another (langid), and pages of repeated boilerplate (filter). README.md's "Data ablations" plot is an ablation
on it.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from spark_jobs.demo_corpus import (
    BOILERPLATE,
    DEMO_CODE_PACKAGES,
    OTHER_LANGUAGES,
    docstring_documents,
    near_copy,
    pydoc_topics,
    stdlib_py_files,
)


def documents(seed: int = 0, per_language: int = 60) -> list[str]:
    rng = random.Random(seed)
    prose = pydoc_topics() + list(docstring_documents(stdlib_py_files(DEMO_CODE_PACKAGES)))
    docs = list(prose)
    docs += [text if rng.random() < 0.5 else near_copy(text, rng, 0.02) for text in prose]
    for paragraph in OTHER_LANGUAGES.values():
        lines = paragraph.replace("。", "。\n").replace(". ", ".\n").strip()
        docs += [near_copy(lines, rng, 0.5) for _ in range(per_language)]
    docs += [BOILERPLATE * rng.randint(3, 12) for _ in range(200)]
    rng.shuffle(docs)
    return docs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    docs = documents(args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with Path(args.output).open("w", encoding="utf-8") as fh:
        for i, text in enumerate(docs):
            fh.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    print(f"{len(docs)} documents, {Path(args.output).stat().st_size / 1e6:.1f} MB in {args.output}")


if __name__ == "__main__":
    main()
