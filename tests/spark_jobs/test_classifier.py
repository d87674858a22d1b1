"""The ``classifier`` stage with a real fastText model trained here: generated English prose labelled ``__label__hq``
against generated boilerplate labelled ``__label__lq``, by floret (explosion's fastText fork, a training binding
whose module is not ``fasttext``, so the runtime's predict-only ``fasttext`` stays), saved in fastText's own format
and read by the pipeline's ``fasttext`` loader. Then a real pipeline run with ``--stages filter,classifier``."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import floret
import pyarrow.parquet as pq
import pytest

from spark_jobs.classifier import SCORE_COLUMN, label_score
from spark_jobs.config import PipelineConfig
from spark_jobs.langid.model import load_model
from spark_jobs.pipeline import run
from tests.spark_jobs.generated_docs import EN_NOUNS, en_sentence, python_module

JUNK = "home login sign up cookie policy terms privacy menu share subscribe click here buy now free shipping".split()
FLORET_FIELDS = slice(13 * 4, 15 * 4)
"""floret's header has two int32 fields of its own (mode, hash count) after fastText's ``maxn``; without them the
file is fastText's format (the rest is written by fastText's code)."""


def junk(rng: random.Random) -> str:
    """Boilerplate-looking text: navigation words and a few nouns, short lines."""
    return "\n".join(" ".join(rng.choice(JUNK + EN_NOUNS[:5]) for _ in range(rng.randint(3, 8))) for _ in range(12))


def prose(rng: random.Random) -> str:
    return "\n".join(" ".join(en_sentence(rng) for _ in range(3)) for _ in range(4))


def train_classifier(directory: Path) -> Path:
    """A small supervised fastText model, trained by floret in fastText mode and written as a fastText file."""
    rng = random.Random(11)
    lines = [f"__label__hq {prose(rng)}" for _ in range(150)] + [f"__label__lq {junk(rng)}" for _ in range(150)]
    rng.shuffle(lines)
    train = directory / "train.txt"
    train.write_text("".join(line.replace("\n", " ") + "\n" for line in lines))
    model = floret.train_supervised(
        input=str(train), mode="fasttext", epoch=10, dim=16, wordNgrams=1, thread=1, seed=1, verbose=0
    )
    written = directory / "floret.bin"
    model.save_model(str(written))
    data = written.read_bytes()
    assert struct.unpack("<2i", data[FLORET_FIELDS]) == (1, 1), "floret's header changed"
    out = directory / "quality.bin"
    out.write_bytes(data[: FLORET_FIELDS.start] + data[FLORET_FIELDS.stop :])
    return out


@pytest.fixture(scope="module")
def classifier_run(spark, tmp_path_factory):
    """30 prose and 12 junk documents, 2 too short for the filter, one code file junk by its words: the pipeline
    with ``--stages filter,classifier``: (documents, model, output, report)."""
    root = tmp_path_factory.mktemp("classifier")
    model = train_classifier(root)
    rng = random.Random(5)
    docs = [{"id": i, "text": prose(rng)} for i in range(30)]
    docs += [{"id": 100 + i, "text": junk(rng)} for i in range(12)]
    docs += [{"id": 97, "text": "too short"}, {"id": 98, "text": "one\ntwo"}]
    docs.append({"id": 99, "text": python_module(rng) + "# login sign up cookie policy\n", "kind": "code"})
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = root / "out"
    args = ["--input", str(source), "--output", str(out), "--stages", "filter,classifier"]
    cfg = PipelineConfig.from_args([*args, "--classifier-model", str(model), "--classifier-label", "__label__hq"])
    return docs, model, out, run(cfg, spark)


def test_the_trained_model_loads_in_the_runtime_binding_and_separates_the_classes(tmp_path):
    model = load_model(str(train_classifier(tmp_path)))
    rng = random.Random(2)
    assert all(label_score(model, prose(rng), "__label__hq") > 0.9 for _ in range(10))
    assert all(label_score(model, junk(rng), "__label__hq") < 0.1 for _ in range(10))


def test_a_run_removes_low_scores_keeps_the_score_column_and_reports(classifier_run):
    docs, model, out, report = classifier_run
    texts = {d["id"]: d["text"] for d in docs}
    removed = {r["doc_id"]: r for r in pq.read_table(out / "removed").to_pylist()}
    cleaned = {r["doc_id"]: r for r in pq.read_table(out / "cleaned").to_pylist()}
    loaded = load_model(str(model))
    expected = {i: label_score(loaded, texts[i], "__label__hq") for i in texts if i not in (97, 98, 99)}
    low = {i for i, score in expected.items() if score < 0.5}
    assert low == set(range(100, 112))
    assert {i for i, r in removed.items() if r["reason"] == "classifier"} == low
    assert {i for i, r in removed.items() if r["reason"] != "classifier"} == {97, 98}
    for i in low:
        assert removed[i]["rule"] == f"classifier: __label__hq score={expected[i]:.4g} < 0.5"
        assert removed[i][SCORE_COLUMN] == pytest.approx(expected[i], abs=1e-6)
    assert set(cleaned) == set(expected) - low | {99}
    assert all(cleaned[i][SCORE_COLUMN] == pytest.approx(expected[i], abs=1e-6) for i in cleaned if i != 99)
    assert cleaned[99][SCORE_COLUMN] is None and removed[97][SCORE_COLUMN] is None
    stage = report["stages"]["classifier"]
    assert stage["removed_by_reason"] == {"classifier": len(low)} and stage["scored_docs"] == len(expected)
    assert stage["docs_in"] == report["stages"]["filter"]["docs_out"] == stage["docs_out"] + len(low)
    assert stage["score_quantiles"]["p10"] < 0.5 < stage["score_quantiles"]["p90"]
    acc = report["accounting"]
    assert acc["input"] == len(docs) == acc["cleaned"] + acc["removed"]


def test_a_wrong_model_or_label_fails_in_one_line_before_any_work(classifier_run, spark, tmp_path):
    docs, model, _, _ = classifier_run
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_text("not a model")
    source = tmp_path / "in" / "docs.jsonl"
    source.parent.mkdir()
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    base = ["--input", str(source), "--output", str(tmp_path / "o"), "--stages", "filter,classifier"]
    for flags, message in (
        ([], "needs --classifier-model"),
        (["--classifier-model", str(tmp_path / "missing.bin")], "no such file"),
        (["--classifier-model", str(model), "--classifier-threshold", "2"], "within"),
    ):
        with pytest.raises(SystemExit, match=message):
            PipelineConfig.from_args([*base, *flags])
    for flags, message in (
        (["--classifier-model", str(not_a_model)], "not a fastText model"),
        (["--classifier-model", str(model), "--classifier-label", "__label__x"], "not a label of the model"),
    ):
        with pytest.raises(ValueError, match=message):
            run(PipelineConfig.from_args([*base, *flags]), spark)
