"""``python -m train.ablate`` end to end: real pipeline subprocesses (Spark), real training, a real language effect.

The corpus is a quarter English prose and three quarters German- and French-looking prose. The ``langid`` variant
keeps only the English; ``none`` keeps everything. Both models train for the same tokens from the same seeds, and
both are evaluated on the held-out English documents, so the model that saw only English must reach the lower loss,
by more than the two seeds scatter. The corpus is written at test time from seeded generators.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spark_jobs.generated_docs import de_sentence, en_sentence, fr_sentence, prose
from tests.train_fixtures import write_packed
from train.ablate import base_of, fullest, run_order, table

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
TINY = "num_hidden_layers=2,hidden_size=64,ffn_dim=256,num_attention_heads=4"
SEQ_LEN, BATCH, STEPS = 32, 8, 12


def write_corpus(path: Path, english: int = 100, other: int = 300) -> None:
    rng = random.Random(0)
    docs = [prose(rng, en_sentence) for _ in range(english)]
    docs += [prose(rng, de_sentence if i % 2 else fr_sentence) for i in range(other)]
    rng.shuffle(docs)
    path.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(docs)))


def test_langid_beats_no_filtering_on_held_out_english(tmp_path: Path) -> None:
    corpus, out = tmp_path / "corpus.jsonl", tmp_path / "ablation"
    write_corpus(corpus)
    cmd = [
        sys.executable, "-m", "train.ablate", "--input", str(corpus), "--output", str(out),
        "--variants", "none,langid", "--train-tokens", str(STEPS * BATCH * SEQ_LEN), "--seq-len", str(SEQ_LEN),
        "--val-fraction", "0.1", "--model-overrides", TINY, "--seeds", "2", "--batch-size", str(BATCH),
        "--lr", "3e-3", "--eval-every", str(STEPS // 2), "--train-options", "--report-to none",
        "--num-shards", "2", "--seed", "3",  # pipeline options, passed through to both pipeline runs
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ablation = json.loads((out / "ablation.json").read_text())
    variants = ablation["variants"]
    assert list(variants) == ["none", "langid"]
    assert ablation["eval_set"]["variant"] == "langid" and ablation["max_steps"] == STEPS
    for name, v in variants.items():
        assert {"docs", "tokens", "eval_loss", "eval_ppl", "curve", "seeds"} <= v.keys()
        assert [s["seed"] for s in v["seeds"]] == [0, 1]
        report = json.loads((out / "data" / name / "report.json").read_text())
        assert report["config"]["seed"] == 3 and report["config"]["num_shards"] == 2  # passed through
        assert v["docs"] == report["accounting"]["cleaned"]
        for seed in v["seeds"]:
            assert [p[0] for p in seed["curve"]] == [STEPS // 2 * BATCH * SEQ_LEN, STEPS * BATCH * SEQ_LEN]
        assert v["eval_loss"] == pytest.approx(sum(s["eval_loss"] for s in v["seeds"]) / 2)
    assert variants["none"]["docs"] == 400 and variants["langid"]["docs"] < 400
    assert variants["langid"]["tokens"] < variants["none"]["tokens"]

    # The effect, beyond the spread across seeds: langid's worst seed beats none's best.
    assert variants["langid"]["loss_max"] < variants["none"]["loss_min"], variants
    assert "no two variants overlap across seeds" in done.stdout

    # The eval set is langid's val split: documents routed there by id hash, which pack routed to val in none too,
    # so neither model trained on any of them.
    held = {name: held_out_ids(out / "data" / name) for name in variants}
    assert held["langid"] and held["langid"] < held["none"]
    assert ablation["eval_set"]["documents"] == len(held["langid"])
    # langid started from a hard-linked copy of none's outputs, reused nothing (its fused ingest pass differs),
    # and the copy left none's outputs as they were.
    assert not any(variants["langid"]["reused"].values())
    first_pass = next((out / "data" / "none" / "_stages" / "00-ingest").glob("*.parquet"))
    assert (
        out / "data" / "langid" / "_stages" / "00-ingest" / first_pass.name
    ).stat().st_ino == first_pass.stat().st_ino
    assert json.loads((out / "data" / "none" / "report.json").read_text())["config"]["stages"] == "pack"
    none_manifest = json.loads((out / "data" / "none" / "packed" / "manifest.json").read_text())
    assert none_manifest["totals"]["documents"] == 400
    assert (out / "ablation.png").stat().st_size > 5000


def held_out_ids(data: Path) -> set[int]:
    """The kept doc_ids that pack routes to val, recomputed from the documented hash, and checked against the count
    pack wrote to the manifest."""
    import pyarrow.parquet as pq
    import xxhash

    manifest = json.loads((data / "packed" / "manifest.json").read_text())
    limit = int(json.loads((data / "report.json").read_text())["config"]["val_fraction"] * 2**53)
    ids = pq.read_table(data / "cleaned", columns=["doc_id"]).column("doc_id").to_pylist()
    held = {i for i in ids if xxhash.xxh64_intdigest(f"{manifest['seed']}:val:{i}".encode(), seed=42) >> 11 < limit}
    assert manifest["totals"]["val"]["documents"] == len(held)
    return held


def test_variants_run_shortest_first_from_their_longest_finished_prefix() -> None:
    variants = ["filter+langid+exact_dedup", "none", "filter+langid", "filter", "langid"]
    order = run_order(variants)
    assert order == ["none", "filter", "langid", "filter+langid", "filter+langid+exact_dedup"]
    assert [base_of(v, order[:i]) for i, v in enumerate(order)] == [None, "none", "none", "filter", "filter+langid"]
    assert fullest(variants) == "filter+langid+exact_dedup"


def test_table_names_variants_within_the_seed_spread() -> None:
    def result(low: float, high: float) -> dict:
        return {"docs": 10, "tokens": 1000, "eval_loss": (low + high) / 2, "eval_ppl": 1.0, "loss_min": low,
                "loss_max": high, "loss_std": 0.0}  # fmt: skip

    results = {"a": result(5.0, 5.2), "b": result(5.1, 5.3), "c": result(5.4, 5.5)}
    text = table(results, train_tokens=500, seeds=2)
    assert text.splitlines()[-1] == "within the spread across seeds: a and b"
    assert [line.split()[0] for line in text.splitlines()[2:5]] == ["a", "b", "c"]  # best first
    assert "within" not in table({"a": results["a"], "c": results["c"]}, train_tokens=500, seeds=2)


def test_eval_data_packed_with_another_tokenizer_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--eval-data`` whose saved tokenizer differs (one vocabulary entry renamed) stops before the first step with
    one line, exit 2, although its manifest names the same tokenizer; so does one without a val split."""
    from train.__main__ import main

    data = write_packed(tmp_path / "a", seq_len=32)
    other = tmp_path / "b" / "packed"
    shutil.copytree(data, other)
    saved = json.loads((other / "tokenizer" / "tokenizer.json").read_text())
    vocab = saved["model"]["vocab"]
    vocab["renamed"] = vocab.pop(next(iter(vocab)))
    (other / "tokenizer" / "tokenizer.json").write_text(json.dumps(saved))
    args = ["--data", str(data), "--eval-data", str(other), "--model", "preset:opt-125m", "--output",
            str(tmp_path / "run"), "--model-overrides", TINY, "--max-steps", "1", "--num-workers", "0",
            "--report-to", "none"]  # fmt: skip
    assert main(args) == 2
    expected = f"error: --eval-data: {other} was packed with another tokenizer than the training data {data}"
    assert capsys.readouterr().err.strip() == expected
    assert not (tmp_path / "run" / "metrics.jsonl").exists()

    without_val = write_packed(tmp_path / "c", seq_len=32, val_files=())
    args[args.index(str(other))] = str(without_val)
    assert main(args) == 2  # asked for, so not silently skipped as a missing val split of --data is
    assert capsys.readouterr().err.strip() == f"error: --eval-data: no val split under {without_val}"
