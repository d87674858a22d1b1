"""The data pipeline: ingest -> filter -> langid -> exact_dedup -> near_dedup -> pack, on Spark.

``python -m spark_jobs.pipeline --input SRC [SRC ...] --output OUT [options]`` locally, or the same arguments after
``spark-submit [options] spark_jobs/submit.py`` on a cluster (the session then takes spark-submit's master).

How the stages meet (see :mod:`spark_jobs.documents`):

* the *row stages* (filter, langid) decide each document alone, so they run inside ingestion's Python pass, with the
  hash exact dedup needs: one pass over the text and one annotated copy, ``OUT/_stages/00-ingest+filter+langid/``;
* each *dedup stage* reads the documents still kept and writes only its removals, ``OUT/_stages/NN-name/``;
* ``cleaned/`` and ``removed/`` are the annotated copy joined with all removals, written once at the end.

Every stage directory carries a ``_stage.json`` marker with a key over the config and the stages up to it: rerunning
the same command skips finished stages, and changing an option redoes the stages it can affect (for the fused row
stages, all of them). Per-stage counts come from one aggregate of the annotated copy (each stage owns its removal
reasons) and from each stage's removals. The run ends by checking the accounting identity: input documents =
cleaned + removed.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import storage
from spark_jobs.batches import CHARS, group_counts
from spark_jobs.config import STAGE_OPTIONS, PipelineConfig
from spark_jobs.documents import (
    ANNOTATIONS,
    DOC_COLUMNS,
    REASON_INVALID,
    DedupStage,
    RowStage,
    hint_small,
)
from spark_jobs.ingest import InputError, ingest
from spark_jobs.session import get_spark

STAGE_CLASSES = {
    "filter": "spark_jobs.filters:FilterStage",
    "langid": "spark_jobs.langid:LangIdStage",
    "exact_dedup": "spark_jobs.dedup.exact:ExactDedupStage",
    "near_dedup": "spark_jobs.dedup.near:NearDedupStage",
}


def load_stage(name: str) -> RowStage | DedupStage:
    module, cls = STAGE_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def split_stages(names: Sequence[str]) -> tuple[list[RowStage], list[DedupStage]]:
    """The leading row stages and the dedup stages after them; a row stage after a dedup stage is refused, since
    dedup must see the documents the filters keep."""
    stages = [load_stage(name) for name in names]
    rows = 0
    while rows < len(stages) and hasattr(stages[rows], "batch_fn"):
        rows += 1
    late = [s.name for s in stages[rows:] if hasattr(s, "batch_fn")]
    if late:
        raise ValueError(f"--stages: {', '.join(late)} must come before the dedup stages")
    return stages[:rows], stages[rows:]


def stage_key(cfg: PipelineConfig, names: list[str]) -> str:
    """Identity of a stage's output: the inputs, every stage up to it and the options those stages depend on."""
    fields = [f for name in names for f in STAGE_OPTIONS[name]]
    return f"{cfg.hash(*fields) if fields else ''}:{','.join(sorted(cfg.input))}:{'>'.join(names)}"


def run_stage(
    spark: SparkSession, out: str, name: str, key: str, build: Callable[[], DataFrame]
) -> tuple[DataFrame, bool]:
    """Write ``build()`` to ``OUT/_stages/name`` unless a marker with the same key is there; read it back."""
    path = storage.join(out, "_stages", name)
    marker = storage.join(path, "_stage.json")
    if storage.exists(marker) and json.loads(storage.read_text(marker)).get("key") == key:
        print(f"[{name}] up to date, reusing {path}")
        return spark.read.parquet(storage.spark_path(path)), True
    started = time.time()
    written = write_parquet(build(), path)
    storage.write_text(marker, json.dumps({"key": key, "seconds": round(time.time() - started, 2)}))
    return written, False


def write_parquet(df: DataFrame, path: str) -> DataFrame:
    """Write ``df`` as Parquet (replacing ``path``) and return the written files as a frame (its schema is known,
    so reading back needs no footer-reading job)."""
    writer = df.write.mode("overwrite")
    for column in {"doc_id", "text"} & set(df.columns):  # unique values: a dictionary attempt is wasted hashing
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
    writer.parquet(storage.spark_path(path))
    return df.sparkSession.read.schema(df.schema).parquet(storage.spark_path(path))


def flows(counts: list[dict[str, Any]], stages: Sequence[tuple[str, Sequence[str]]], docs: int, chars: int) -> dict:
    """Documents and characters in and out of each stage, in order, and its removals by reason and by rule name;
    ``docs``/``chars`` go into the first, and a stage's removals are the ``counts`` rows with one of its reasons."""
    out: dict[str, Any] = {}
    for name, reasons in stages:
        mine = [r for r in counts if r["reason"] in reasons]
        by_reason: Counter[str] = Counter()
        by_rule: Counter[str] = Counter()
        for r in mine:
            by_reason[r["reason"]] += r["docs"]
            by_rule[f"{r['reason']}:{r['rule_name']}"] += r["docs"]
        removed_docs, removed_chars = sum(by_reason.values()), sum(r["chars"] for r in mine)
        out[name] = {
            "docs_in": docs,
            "chars_in": chars,
            "docs_out": docs - removed_docs,
            "chars_out": chars - removed_chars,
            "removed_by_reason": dict(sorted(by_reason.items())),
            "removed_by_rule": dict(sorted(by_rule.items())),
        }
        docs, chars = docs - removed_docs, chars - removed_chars
    return out


def seen_by(counts: list[dict[str, Any]], earlier: Sequence[str], own: Sequence[str]) -> list[dict[str, Any]]:
    """The counts of what one row stage saw and decided: rows an earlier stage removed are gone, and removals by a
    later stage count as kept (as if the stage had run alone)."""
    return [
        r if r["reason"] is None or r["reason"] in own else {**r, "reason": None, "rule_name": ""}
        for r in counts
        if r["reason"] not in earlier
    ]


def run(cfg: PipelineConfig, spark: SparkSession | None = None) -> dict[str, Any]:
    """Run the configured stages and return the report (also written to ``OUT/report.json``)."""
    spark = spark or get_spark(
        cfg.master,
        shuffle_partitions=cfg.shuffle_partitions,
        driver_memory=cfg.driver_memory,
        java_options=cfg.driver_java_options,
    )
    spark.sparkContext.setCheckpointDir(storage.spark_path(storage.join(cfg.output, "_checkpoints")))
    out = cfg.output
    started = time.time()
    report: dict[str, Any] = {"config": cfg.to_dict(), "stages": {}}
    row_stages, dedup_stages = split_stages([s for s in cfg.stage_list if s != "pack"])

    # Ingestion and the row stages, in one pass; with the row-local part of a dedup stage (exact dedup's hash).
    names = ["ingest", *(s.name for s in row_stages)]
    preps = [s for s in dedup_stages if hasattr(s, "row_prep")]
    steps = [s.batch_fn(spark, cfg) for s in row_stages] + [s.row_prep for s in preps]
    extra_fields = [T.StructField(CHARS, T.LongType(), False), *(field for s in preps for field in s.row_fields)]
    raw, report["input"] = ingest(spark, cfg, steps, extra_fields)
    annotated, row_reused = run_stage(
        spark,
        out,
        f"00-{'+'.join(names)}",
        stage_key(cfg, names),  # a reused copy without the preps' columns is fine: their stages compute them then
        lambda: raw,
    )
    # From here on, the reports' small aggregates and the final writes run on a thread pool while the driver goes on:
    # each is a few short Spark jobs whose scheduling latency would otherwise add up one after another.
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pipeline") as pool:
        counts_job = pool.submit(group_counts, annotated)

        # Dedup stages: each reads what is still kept and writes its removals.
        kept = annotated.where(F.col("reason").isNull()).drop(*ANNOTATIONS)
        removals: list[tuple[DataFrame, int]] = []
        dedup_jobs = []
        for index, stage in enumerate(dedup_stages, start=1):
            names.append(stage.name)
            docs = kept.join(union(removals), "doc_id", "left_anti") if removals else kept
            directory = f"{index:02d}-{stage.name}"
            found, reused = run_stage(
                spark,
                out,
                directory,
                stage_key(cfg, names),
                lambda stage=stage, docs=docs: stage.removals(docs, cfg),
            )
            count = storage.parquet_rows(storage.join(out, "_stages", directory))
            found = hint_small(found, count)
            missing = [name for name in ("kind", "lang", CHARS) if name not in found.columns]
            counted = found.join(annotated.select("doc_id", *missing), "doc_id") if missing else found
            dedup_jobs.append(
                (
                    stage,
                    reused,
                    pool.submit(group_counts, counted),
                    pool.submit(stage.summary, found, docs.select(*DOC_COLUMNS), cfg),
                )
            )
            removals.append((found, count))

        # The annotated copy with all removals -> cleaned/ and removed/. No shuffle when the removals are broadcast:
        # rows keep the input's order, so equal inputs give equal rows in equal order whatever the partitioning.
        cleaned, removed = kept.select(*DOC_COLUMNS), annotated.select(*DOC_COLUMNS, *ANNOTATIONS)
        if removals:
            decided = union(removals).select("doc_id", *(F.col(c).alias(f"_{c}") for c in ANNOTATIONS))
            cleaned = cleaned.join(decided, "doc_id", "left_anti")
            removed = removed.join(decided, "doc_id", "left").select(
                *DOC_COLUMNS, *(F.coalesce(F.col(c), F.col(f"_{c}")).alias(c) for c in ANNOTATIONS)
            )
        cleaned_path, removed_path = storage.join(out, "cleaned"), storage.join(out, "removed")
        cleaned_job = pool.submit(write_parquet, cleaned, cleaned_path)
        removed_job = pool.submit(write_parquet, removed.where(F.col("reason").isNotNull()), removed_path)

        counts = counts_job.result()
        owners = [("ingest", (REASON_INVALID,)), *((s.name, s.reasons) for s in row_stages)]
        stats = flows(counts, owners, sum(r["docs"] for r in counts), sum(r["chars"] for r in counts))
        report["stages"]["ingest"] = {**stats["ingest"], "reused": row_reused}
        earlier = [REASON_INVALID]
        for stage in row_stages:
            summary = stage.summary(seen_by(counts, earlier, stage.reasons), cfg)
            report["stages"][stage.name] = {**stats[stage.name], **summary, "reused": row_reused}
            earlier += stage.reasons
        flow = stats[owners[-1][0]]  # what the last row stage kept goes into the first dedup stage
        for stage, reused, stage_counts, stage_summary in dedup_jobs:
            owner = [(stage.name, stage.reasons)]
            flow = flows(stage_counts.result(), owner, flow["docs_out"], flow["chars_out"])[stage.name]
            report["stages"][stage.name] = {**flow, **stage_summary.result(), "reused": reused}
        cleaned = cleaned_job.result()
        removed_job.result()

    n_input = report["stages"]["ingest"]["docs_in"]
    n_cleaned, n_removed = storage.parquet_rows(cleaned_path), storage.parquet_rows(removed_path)
    report["accounting"] = {"input": n_input, "cleaned": n_cleaned, "removed": n_removed}
    if n_input != n_cleaned + n_removed:
        raise AssertionError(
            f"accounting identity broken: input {n_input} != cleaned {n_cleaned} + removed {n_removed}"
        )

    if "pack" in cfg.stage_list:
        from spark_jobs.pack import pack_corpus

        report["stages"]["pack"] = pack_corpus(cleaned, cfg, storage.join(out, "packed"))
    report["seconds"] = round(time.time() - started, 2)
    storage.write_text(storage.join(out, "report.json"), json.dumps(report, indent=2, default=str))
    return report


def union(removals: Sequence[tuple[DataFrame, int]]) -> DataFrame:
    """The rows of all removal frames (given with their row counts), hinted for broadcast when they are few."""
    frames = [frame.select("doc_id", *ANNOTATIONS) for frame, _ in removals]
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return hint_small(result, sum(count for _, count in removals))


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
