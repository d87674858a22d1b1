"""The data pipeline: ingest -> filter -> langid -> exact_dedup -> near_dedup -> pack, on Spark.

``python -m spark_jobs.pipeline --input SRC [SRC ...] --output OUT [options]`` locally, or the same arguments after
``spark-submit [options] spark_jobs/submit.py`` on a cluster (the session then takes spark-submit's master).

Each cleaning stage annotates its input (every row, plus ``reason``/``rule``/``duplicate_of``); the annotated frame
is written once under ``OUT/_stages/NN-name/`` and read back, so the next stage and the removed set come from the
same bytes. A stage directory carries a ``_stage.json`` marker with a key over the config and the stages before it:
rerunning the same command skips finished stages, and changing an option redoes the stages it can affect.
The run ends by checking the accounting identity: input documents = cleaned + removed.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import storage
from spark_jobs.batches import rule_name
from spark_jobs.config import STAGE_OPTIONS, PipelineConfig
from spark_jobs.documents import DOC_COLUMNS, Stage
from spark_jobs.ingest import InputError, ingest
from spark_jobs.session import get_spark

STAGE_CLASSES = {
    "filter": "spark_jobs.filters:FilterStage",
    "langid": "spark_jobs.langid:LangIdStage",
    "exact_dedup": "spark_jobs.dedup.exact:ExactDedupStage",
    "near_dedup": "spark_jobs.dedup.near:NearDedupStage",
}


def load_stage(name: str) -> Stage:
    module, cls = STAGE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def stage_key(cfg: PipelineConfig, names: list[str]) -> str:
    """Identity of a stage's output: the inputs, every stage up to it and the options those stages depend on."""
    fields = [f for name in names for f in STAGE_OPTIONS[name]]
    return f"{cfg.hash(*fields) if fields else ''}:{','.join(sorted(cfg.input))}:{'>'.join(names)}"


def run_stage(spark: SparkSession, out: str, index: int, name: str, key: str, build) -> tuple[DataFrame, bool]:
    """Write ``build()`` (an annotated frame) to the stage dir unless a marker with the same key is there."""
    path = storage.join(out, "_stages", f"{index:02d}-{name}")
    marker = storage.join(path, "_stage.json")
    if storage.exists(marker) and json.loads(storage.read_text(marker)).get("key") == key:
        print(f"[{name}] up to date, reusing {path}")
        return spark.read.parquet(storage.spark_path(path)), True
    started = time.time()
    build().write.mode("overwrite").parquet(storage.spark_path(path))
    storage.write_text(marker, json.dumps({"key": key, "seconds": round(time.time() - started, 2)}))
    return spark.read.parquet(storage.spark_path(path)), False


def flow_stats(annotated: DataFrame) -> dict[str, Any]:
    """Documents and characters in and out of one stage, and its removals by reason and by rule name."""
    chars = F.coalesce(F.length("text"), F.lit(0))
    rows = (
        annotated.groupBy("reason", rule_name(F.col("rule")).alias("rule_name"))
        .agg(F.count(F.lit(1)).alias("docs"), F.sum(chars).alias("chars"))
        .collect()  # one row per (reason, rule name): a handful, not data
    )
    kept = [r for r in rows if r["reason"] is None]
    removed = [r for r in rows if r["reason"] is not None]
    by_reason: dict[str, int] = {}
    for r in removed:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + r["docs"]
    return {
        "docs_in": sum(r["docs"] for r in rows),
        "chars_in": int(sum(r["chars"] or 0 for r in rows)),
        "docs_out": sum(r["docs"] for r in kept),
        "chars_out": int(sum(r["chars"] or 0 for r in kept)),
        "removed_by_reason": dict(sorted(by_reason.items())),
        "removed_by_rule": dict(sorted((f"{r['reason']}:{r['rule_name']}", r["docs"]) for r in removed)),
    }


def run(cfg: PipelineConfig, spark: SparkSession | None = None) -> dict[str, Any]:
    """Run the configured stages and return the report (also written to ``OUT/report.json``)."""
    spark = spark or get_spark(cfg.master, shuffle_partitions=cfg.shuffle_partitions, driver_memory=cfg.driver_memory)
    spark.sparkContext.setCheckpointDir(storage.spark_path(storage.join(cfg.output, "_checkpoints")))
    out = cfg.output
    started = time.time()
    report: dict[str, Any] = {"config": cfg.to_dict(), "stages": {}}

    names = ["ingest"]
    raw, report["input"] = ingest(spark, cfg)
    annotated, reused = run_stage(spark, out, 0, "ingest", stage_key(cfg, names), lambda: raw)
    report["stages"]["ingest"] = {**flow_stats(annotated), "reused": reused}
    removed_parts = [annotated.where(F.col("reason").isNotNull())]
    current = annotated.where(F.col("reason").isNull()).select(*DOC_COLUMNS)

    cleaning = [s for s in cfg.stage_list if s != "pack"]
    for index, name in enumerate(cleaning, start=1):
        stage = load_stage(name)
        names.append(name)
        docs = current
        annotated, reused = run_stage(spark, out, index, name, stage_key(cfg, names),
                                      lambda stage=stage, docs=docs: stage.annotate(docs, cfg))
        report["stages"][name] = {**flow_stats(annotated), **stage.report(annotated, cfg), "reused": reused}
        removed_parts.append(annotated.where(F.col("reason").isNotNull()))
        current = annotated.where(F.col("reason").isNull()).select(*DOC_COLUMNS)

    cleaned_path, removed_path = storage.join(out, "cleaned"), storage.join(out, "removed")
    n_parts = spark.sparkContext.defaultParallelism
    current.repartition(n_parts, "doc_id").sortWithinPartitions("doc_id").write.mode("overwrite").parquet(
        storage.spark_path(cleaned_path))
    removed = removed_parts[0]
    for part in removed_parts[1:]:
        removed = removed.unionByName(part)
    removed.repartition(n_parts, "doc_id").sortWithinPartitions("doc_id").write.mode("overwrite").parquet(
        storage.spark_path(removed_path))

    cleaned = spark.read.parquet(storage.spark_path(cleaned_path))
    n_input = report["stages"]["ingest"]["docs_in"]
    n_cleaned = cleaned.count()
    n_removed = spark.read.parquet(storage.spark_path(removed_path)).count()
    report["accounting"] = {"input": n_input, "cleaned": n_cleaned, "removed": n_removed}
    if n_input != n_cleaned + n_removed:
        raise AssertionError(f"accounting identity broken: input {n_input} != cleaned {n_cleaned} + removed {n_removed}")

    if "pack" in cfg.stage_list:
        from spark_jobs.pack import pack_corpus

        report["stages"]["pack"] = pack_corpus(cleaned, cfg, storage.join(out, "packed"))
    report["seconds"] = round(time.time() - started, 2)
    storage.write_text(storage.join(out, "report.json"), json.dumps(report, indent=2, default=str))
    return report


def summary(report: dict[str, Any]) -> str:
    """A few lines a person reads after a run: documents through each stage, removals, tokens and shards."""
    acc = report["accounting"]
    lines = [f"documents: {acc['input']} in -> {acc['cleaned']} cleaned + {acc['removed']} removed"]
    for name, st in report["stages"].items():
        if "docs_in" in st:
            why = ", ".join(f"{k} {v}" for k, v in st["removed_by_reason"].items()) or "none removed"
            lines.append(f"  {name:<12} {st['docs_in']:>8} -> {st['docs_out']:<8} ({why})")
    if "pack" in report["stages"]:
        from spark_jobs.pack.job import summary_line

        lines.append("  " + summary_line(report["stages"]["pack"]))
    lines.append(f"done in {report['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = PipelineConfig.from_args(argv)
    try:
        report = run(cfg)
    except (InputError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
