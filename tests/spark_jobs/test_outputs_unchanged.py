"""Every output of two full runs, digested and compared with the digests recorded when the outputs were last meant to
change: a refactoring that changes one row, one token or one report figure fails here.

Two corpora: a cut of the demo corpus (prose, fixture records, standard-library code) and a multi-source corpus of
its own (a Parquet file with integer ids in several row groups, a gzipped JSONL file without ids whose records carry
a ``kind``, a directory of source files). Position-derived doc ids hash the source's URI, so the corpora are written
to the same place under the system's temporary directory on every run.

After an intended change of the outputs, rewrite the record with ``SLM_WRITE_OUTPUT_DIGESTS=1 pytest <this file>``
and say in the commit what changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.langid.samples import SAMPLE_PARAGRAPHS
from spark_jobs.pipeline import run
from tests.cluster_utils import small_corpus

RECORD = Path(__file__).with_name("outputs_unchanged.json")
ROOT = Path(tempfile.gettempdir()) / f"slm-outputs-unchanged-{os.getuid()}"
PACK_ARGS = ["--seq-len", "32", "--num-shards", "3", "--val-fraction", "0.1"]
WORDS = (
    "river stone market winter garden letter window morning station harbour village engine pencil orchard "
    "bridge lantern meadow kettle ladder compass thunder blanket canvas copper island mirror"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."


def prose(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(sentence(rng) for _ in range(3)) for _ in range(lines))


def write_multi_source(root: Path) -> list[str]:
    """Parquet with ids (3 row groups), gzipped JSONL without ids (text and code records, one malformed line),
    and a directory of Python files; with short, repetitive, German, exactly and nearly duplicated documents."""
    rng = random.Random(7)
    base = [prose(rng, 6) for _ in range(40)]
    texts = list(base)
    texts += [base[i] for i in range(0, 40, 5)]  # exact copies
    texts += [base[i].replace(" ", "  ", 3) for i in range(1, 40, 7)]  # whitespace-only copies
    texts += [" ".join(w if rng.random() > 0.03 else "zebra" for w in base[i].split(" ")) for i in range(2, 40, 6)]
    texts += ["too short", "one\ntwo", ""]
    texts += ["same line again\n" * 12, ("a b c d e f " * 40 + "\n") * 4]
    texts += ["\n".join(SAMPLE_PARAGRAPHS["de"]), "\n".join(SAMPLE_PARAGRAPHS["fr"])]
    rng.shuffle(texts)
    table = pa.table(
        {
            "id": list(range(1000, 1000 + len(texts))),
            "text": texts,
            "site": [("a", "b")[i % 2] for i in range(len(texts))],
        }
    )
    root.mkdir(parents=True)
    pq.write_table(table, root / "web.parquet", row_group_size=25)

    records: list[dict[str, Any]] = [{"text": prose(rng, 4), "lang_hint": "en"} for _ in range(30)]
    records += [{"text": records[3]["text"]}, {"text": None}, {"text": 12}]
    records += [
        {"text": f"def f{i}(x):\n    y = x * {i}\n    return y + {i}\n\n\nprint(f{i}(2))\n", "kind": "code"}
        for i in range(5)
    ]
    with gzip.open(root / "dump.jsonl.gz", "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
        fh.write('{"text": "cut off\n')

    code = root / "repo" / "pkg"
    code.mkdir(parents=True)
    for i in range(6):
        body = "\n".join(f"def handler_{i}_{j}(event):\n    return event.get('{WORDS[j]}', {j})\n" for j in range(8))
        (code / f"mod{i}.py").write_text(f'"""Module {i}."""\n\n{body}')
    (code / "copy.py").write_text((code / "mod0.py").read_text())
    (code / "tiny.py").write_text("x = 1\n")
    return [str(root / "web.parquet"), str(root / "dump.jsonl.gz"), str(root / "repo")]


def rows_digest(folder: Path) -> dict[str, Any]:
    """Rows of a Parquet directory in file order (the order a reader sees), as a SHA-256 and a count."""
    rows = [
        json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
        for path in sorted(folder.glob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    return {
        "rows": len(rows),
        "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
    }


def digest(out: Path) -> dict[str, Any]:
    """What a run wrote: cleaned/ and removed/ rows, every packed shard's rows in order, the manifest, the tokenizer
    files and the report's figures (without timings, reuse flags and the config echo)."""
    report = json.loads((out / "report.json").read_text())
    stages = {
        name: {k: v for k, v in stage.items() if k not in ("reused", "seconds")}
        for name, stage in report["stages"].items()
    }
    packed = out / "packed"
    return {
        "cleaned": rows_digest(out / "cleaned"),
        "removed": rows_digest(out / "removed"),
        "packed": {split: rows_digest(packed / split) for split in ("train", "val")},
        "manifest": json.loads((packed / "manifest.json").read_text()),
        "tokenizer": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((packed / "tokenizer").iterdir())
        },
        "report": {
            "accounting": report["accounting"],
            "input": {k: v for k, v in report["input"].items() if k != "sources"},
            "stages": stages,
        },
    }


def corpora(root: Path) -> dict[str, list[str]]:
    if root.exists():
        shutil.rmtree(root)
    return {
        "demo_cut": small_corpus(root / "demo", root / "demo_cut"),
        "multi_source": write_multi_source(root / "multi_source"),
    }


@pytest.fixture(scope="module")
def digests(spark) -> dict[str, Any]:
    found = {}
    for name, inputs in corpora(ROOT).items():
        out = ROOT / "out" / name
        run(PipelineConfig.from_args(["--input", *inputs, "--output", str(out), *PACK_ARGS]), spark)
        found[name] = json.loads(json.dumps(digest(out), default=str))
    if os.environ.get("SLM_WRITE_OUTPUT_DIGESTS"):
        RECORD.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    return found


@pytest.mark.parametrize("corpus", ["demo_cut", "multi_source"])
def test_outputs_equal_the_recorded_ones(digests, corpus):
    recorded = json.loads(RECORD.read_text())[corpus]
    found = digests[corpus]
    assert found["report"] == recorded["report"]
    for part in ("cleaned", "removed", "packed", "manifest", "tokenizer"):
        assert found[part] == recorded[part], part
