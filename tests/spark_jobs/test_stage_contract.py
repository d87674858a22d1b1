"""The stage contract from outside: a new filter is one file and one registry line; the runner's accounting check
fires when a stage loses or doubles documents."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame

from spark_jobs import registry
from spark_jobs.config import PipelineConfig
from spark_jobs.pipeline import AccountingError, run
from spark_jobs.stage import CorpusResult, CorpusStage

PROSE = "A calm line of ordinary prose here.\nAnother quiet line follows it.\nAnd a third one ends it."
SHOUT = "THIS LINE IS VERY LOUD INDEED.\nSO IS THIS ONE, FRIENDS.\nAND THE LAST ONE TOO."


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [{"id": i, "text": SHOUT if i % 3 == 0 else PROSE + f" Number {i}."} for i in range(12)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


@pytest.fixture
def registered(monkeypatch):
    def register(name: str, target: str) -> None:
        monkeypatch.setitem(registry.STAGES, name, target)
        registry.stage_class.cache_clear()

    yield register
    registry.stage_class.cache_clear()


def test_a_filter_is_one_file_and_one_registry_line(spark, corpus, tmp_path, registered):
    registered("shouting", "tests.spark_jobs.shouting_filter:ShoutingStage")
    out = tmp_path / "out"
    cfg = PipelineConfig.from_args(
        ["--input", str(corpus), "--output", str(out), "--stages", "shouting,exact_dedup", "--max-upper-frac", "0.6"]
    )
    report = run(cfg, spark)
    stage = report["stages"]["shouting"]
    assert stage["removed_by_reason"] == {"shouting": 4} and stage["docs_in"] == 12 and stage["docs_out"] == 8
    assert stage["removed_by_rule"] == {"shouting:upper_frac": 4}
    assert stage["kinds_removed"] == {"text": 4}
    removed = pq.read_table(out / "removed").to_pylist()
    assert sorted(r["doc_id"] for r in removed) == [0, 3, 6, 9]
    assert {r["reason"] for r in removed} == {"shouting"} and all(r["rule"].startswith("upper_frac: ") for r in removed)
    with pytest.raises(SystemExit, match="--max-upper-frac"):
        PipelineConfig.from_args(["--input", "x", "--output", "o", "--stages", "shouting", "--max-upper-frac", "2"])


class DoublingStage(CorpusStage):
    """A broken corpus stage: it files every removal twice."""

    name = "doubling"
    reasons = ("doubled",)

    def run(self, docs: DataFrame, opts, directory: str) -> CorpusResult:
        from pyspark.sql import functions as F

        first = docs.limit(2).select("doc_id", F.lit("doubled").alias("reason"), F.lit("twice").alias("rule"))
        removals = first.withColumn("duplicate_of", F.lit(None).cast(docs.schema["doc_id"].dataType))
        return CorpusResult(removals.unionByName(removals))


def test_the_accounting_check_fires_when_a_stage_doubles_documents(spark, corpus, tmp_path, registered):
    registered("doubling", f"{__name__}:DoublingStage")
    out = tmp_path / "out"
    cfg = PipelineConfig.from_args(["--input", str(corpus), "--output", str(out), "--stages", "doubling"])
    with pytest.raises(AccountingError, match=r"input 12 != cleaned 10 \+ removed 4"):
        run(cfg, spark)
    assert not (out / "report.json").exists()
    assert not (out / "cleaned" / "_stage.json").exists() and not (out / "removed" / "_stage.json").exists()
