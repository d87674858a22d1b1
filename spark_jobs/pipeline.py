"""The data pipeline: ingest, then the stages named by ``--stages`` (see :mod:`spark_jobs.stage`), on Spark.

``python -m spark_jobs.pipeline --input SRC [SRC ...] --output OUT [options]`` locally, or the same arguments after
``spark-submit [options] spark_jobs/submit.py`` on a cluster (the session then takes spark-submit's master).

The run, top to bottom:

1. plan: validate every option, list the inputs (their fingerprint) and derive each stage's cache key;
2. ingestion and the row stages, fused into one Python pass over the text that writes one annotated copy,
   ``OUT/_stages/00-ingest+<row stages>/`` (with the row-local parts of the dedup stages: exact dedup's hash, near dedup's signatures);
3. each corpus stage that removes documents reads what is still kept and writes its removals, ``OUT/_stages/NN-name/``;
4. ``cleaned/`` and ``removed/``: the annotated copy joined with all removals, then the accounting check
   (input documents = cleaned + removed);
5. each stage that writes artifacts (pack) reads ``cleaned/`` and writes its directory (``OUT/packed/``);
6. ``report.json``: per-stage documents and characters in and out and removals by reason and rule, all counted from
   the removal annotations, plus what each stage's ``summary`` adds.

Every output directory is reused when its marker's key matches (:mod:`spark_jobs.cache`) and recomputed otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs import cache, storage
from spark_jobs.batches import CHARS, group_counts
from spark_jobs.config import PipelineConfig
from spark_jobs.documents import ANNOTATIONS, DOC_COLUMNS, REASON_INVALID, hint_small, is_small
from spark_jobs.ingest import IngestOptions, InputError, check_ingested, ingest, plan_sources
from spark_jobs.ordered import ORDER, part_files, read_in_order, sorted_by_order
from spark_jobs.session import default_archive_dir, get_spark
from spark_jobs.stage import CorpusStage, RowStage, StageView


class AccountingError(RuntimeError):
    """Documents were lost or counted twice between input and outputs: a bug in a stage, never in the data."""


def write_parquet(df: DataFrame, path: str) -> DataFrame:
    """Write ``df`` as Parquet (replacing ``path``) and return the written files as a frame (its schema is known,
    so reading back needs no footer-reading job)."""
    writer = df.write.mode("overwrite")
    # Columns of (nearly) unique values, where a dictionary attempt is wasted hashing: ids, texts, and the values of
    # integer arrays (MinHash signatures, which Parquet stores as the column NAME.list.element).
    unique = [c for c in ("doc_id", "text") if c in df.columns] + [
        f"{f.name}.list.element"
        for f in df.schema.fields
        if isinstance(f.dataType, T.ArrayType) and isinstance(f.dataType.elementType, T.IntegerType)
    ]
    for column in unique:
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
    started = time.time()
    stages = cfg.stages_to_run()
    rows = [(s, o) for s, o in stages if isinstance(s, RowStage)]
    removers = [(s, o) for s, o in stages if isinstance(s, CorpusStage) and not s.artifacts]
    writers = [(s, o) for s, o in stages if isinstance(s, CorpusStage) and s.artifacts]
    ingest_opts = cfg.options(IngestOptions)
    sources = plan_sources(cfg.input, ingest_opts, cfg.output)  # bad files and columns fail here, before Spark
    spark = spark or get_spark(
        cfg.master,
        shuffle_partitions=cfg.shuffle_partitions,
        driver_memory=cfg.driver_memory,
        java_options=cfg.driver_java_options,
        class_archive=default_archive_dir() if cfg.class_archive == "auto" else cfg.class_archive,
    )
    for stage, opts in stages:  # after the JVM's start: before it, pack's tokenizer loading slowed the workers
        stage.prepare(opts)
    out = cfg.output
    spark.sparkContext.setCheckpointDir(storage.spark_path(storage.join(out, "_checkpoints")))
    storage.remove(storage.join(out, "report.json"))
    report: dict[str, Any] = {"config": cfg.to_dict(), "stages": {}}

    # Ingestion and the row stages, in one pass; with the row-local parts of the corpus stages (hashes, signatures).
    key = cache.key("ingest", cache.code_version(), sources.fingerprint, cache.options_key(ingest_opts))
    for stage, opts in rows:
        key = cache.key(key, stage.name, cache.options_key(opts))
    preps = [prep for s, o in removers if (prep := s.row_prep(o)) is not None]
    steps = [s.batch_fn(o, spark) for s, o in rows] + [prep.fn for prep in preps]
    extra_fields = [
        T.StructField(CHARS, T.LongType(), False),
        *(f for s, _ in rows for f in (*s.row_fields, *s.doc_fields)),
        *(f for prep in preps for f in prep.fields),
    ]
    doc_columns = (*DOC_COLUMNS, *(f.name for s, _ in rows for f in s.doc_fields))
    # Exact copies reuse the outputs of the first copy a worker saw, unless a row stage rewrites the text.
    memo = "" if any(s.rewrites_text for s, _ in rows) else cache.key(key, *(f.name for f in extra_fields))
    raw, report["input"] = ingest(spark, sources, ingest_opts, steps, extra_fields, memo)
    fused = "+".join(["ingest", *(s.name for s, _ in rows)])
    first = stage_dir(out, f"00-{fused}")
    annotated, _, row_reused = cached(spark, first, key, lambda: (raw, {}))

    # From here on, the reports' small aggregates and the final writes run on a thread pool while the driver goes on:
    # each is a few short Spark jobs whose scheduling latency would otherwise add up one after another. One thread per
    # submission (the check, the counts, two per removing stage, the two writes), so none waits for a thread.
    with ThreadPoolExecutor(max_workers=4 + 2 * len(removers), thread_name_prefix="pipeline") as pool:
        # The input check (duplicate ids, a file that broke while read) runs beside the corpus stages, on every run
        # (a reused copy included), and is waited for before any output outside _stages/ is written.
        input_check = pool.submit(check_ingested, annotated)
        counts_job = pool.submit(group_counts, annotated)

        # Corpus stages that remove documents: each reads what is still kept and writes its removals.
        kept = annotated.where(F.col("reason").isNull()).drop(*ANNOTATIONS)
        removals: list[tuple[DataFrame, int]] = []
        remover_jobs = []
        for index, (stage, opts) in enumerate(removers, start=1):
            key = cache.key(key, stage.name, cache.options_key(opts))
            docs = kept.join(union(removals), "doc_id", "left_anti") if removals else kept
            directory = stage_dir(out, f"{index:02d}-{stage.name}")
            try:
                found, stats, reused = cached(
                    spark, directory, key, lambda s=stage, o=opts, d=docs, p=directory: stage_removals(s, d, o, p)
                )
            except Exception:
                passed(input_check, first)  # bad input explains a stage's failure better than the failure
                raise
            count = storage.parquet_rows(directory)
            view = StageView(removals=found, docs=docs.select(*DOC_COLUMNS), directory=directory, stats=stats)
            found = hint_small(found, count)  # for joins only: a summary's aggregate would warn about the hint
            missing = [name for name in ("kind", "lang", CHARS) if name not in found.columns]
            counted = found.join(annotated.select("doc_id", *missing), "doc_id") if missing else found
            remover_jobs.append(
                (stage, reused, pool.submit(group_counts, counted), pool.submit(stage.summary, view, opts))
            )
            removals.append((found, count))

        passed(input_check, first)

        # The annotated copy with all removals -> cleaned/ and removed/, in the input's order: the copy is read back
        # part file by part file, and the removals are broadcast (no shuffle) or the rows are sorted back.
        ordered = read_in_order(spark, first, annotated.schema)
        cleaned = ordered.where(F.col("reason").isNull()).select(*doc_columns, ORDER)
        removed = ordered.select(*doc_columns, *ANNOTATIONS, ORDER)
        if removals:
            decided = union(removals).select("doc_id", *(F.col(c).alias(f"_{c}") for c in ANNOTATIONS))
            cleaned = cleaned.join(decided, "doc_id", "left_anti")
            removed = removed.join(decided, "doc_id", "left").select(
                *doc_columns, *(F.coalesce(F.col(c), F.col(f"_{c}")).alias(c) for c in ANNOTATIONS), ORDER
            )
        removed = removed.where(F.col("reason").isNotNull())
        if is_small(spark, sum(count for _, count in removals)):
            cleaned, removed = cleaned.drop(ORDER), removed.drop(ORDER)
        else:
            parts = len(part_files(first))
            cleaned, removed = sorted_by_order(cleaned, parts), sorted_by_order(removed, parts)
        cleaned_path, removed_path = storage.join(out, "cleaned"), storage.join(out, "removed")
        cleaned_job = pool.submit(cached, spark, cleaned_path, key, lambda: (cleaned, {}))
        removed_job = pool.submit(cached, spark, removed_path, key, lambda: (removed, {}))

        counts = counts_job.result()
        owners = [("ingest", (REASON_INVALID,)), *((s.name, s.reasons) for s, _ in rows)]
        stats = flows(counts, owners, sum(r["docs"] for r in counts), sum(r["chars"] for r in counts))
        report["stages"]["ingest"] = {**stats["ingest"], "reused": row_reused}
        earlier = [REASON_INVALID]
        for stage, opts in rows:
            summary = stage.summary(StageView(counts=seen_by(counts, earlier, stage.reasons), docs=annotated), opts)
            report["stages"][stage.name] = {**stats[stage.name], **summary, "reused": row_reused}
            earlier += stage.reasons
        flow = stats[owners[-1][0]]  # what the last row stage kept goes into the first corpus stage
        for stage, reused, stage_counts, stage_summary in remover_jobs:
            owner = [(stage.name, stage.reasons)]
            flow = flows(stage_counts.result(), owner, flow["docs_out"], flow["chars_out"])[stage.name]
            report["stages"][stage.name] = {**flow, **stage_summary.result(), "reused": reused}
        cleaned = cleaned_job.result()[0]
        removed_job.result()

    n_input = report["stages"]["ingest"]["docs_in"]
    n_cleaned, n_removed = storage.parquet_rows(cleaned_path), storage.parquet_rows(removed_path)
    report["accounting"] = {"input": n_input, "cleaned": n_cleaned, "removed": n_removed}
    if n_input != n_cleaned + n_removed:
        for path in (cleaned_path, removed_path):
            cache.invalidate(path)
        raise AccountingError(
            f"accounting identity broken: input {n_input} != cleaned {n_cleaned} + removed {n_removed} "
            f"(stages {cfg.stages}); cleaned/ and removed/ are not valid"
        )

    # Stages that write artifacts from the cleaned corpus.
    for stage, opts in writers:
        key = cache.key(key, stage.name, cache.options_key(opts))
        directory = storage.join(out, stage.artifacts)
        marker = cache.finished(directory, key)
        if marker is None:
            cache.invalidate(directory)
            stage.run(cleaned, opts, directory)
            cache.mark_finished(directory, key)
        else:
            print(f"[{stage.name}] up to date, reusing {directory}")
        summary = stage.summary(StageView(docs=cleaned, directory=directory), opts)
        report["stages"][stage.name] = {**summary, "reused": marker is not None}
    report["seconds"] = round(time.time() - started, 2)
    storage.write_text(storage.join(out, "report.json"), json.dumps(report, indent=2, default=str))
    return report


def stage_dir(out: str, name: str) -> str:
    return storage.join(out, "_stages", name)


def stage_removals(stage: CorpusStage, docs: DataFrame, opts: Any, directory: str) -> tuple[DataFrame, dict[str, Any]]:
    """A removing stage's removals and what it measured on the way."""
    result = stage.run(docs, opts, directory)
    if result.removals is None:
        raise TypeError(f"stage {stage.name} removes documents but returned no removals")
    return result.removals, result.stats


def passed(check: Future[None], first: str) -> None:
    """Wait for the input check; when it fails, the first stage's copy loses its marker (a rerun reads the input
    again and checks it again) and the check's one-line error is raised."""
    try:
        check.result()
    except InputError:
        cache.invalidate(first)
        raise


def cached(
    spark: SparkSession,
    directory: str,
    key: str,
    compute: Callable[[], tuple[DataFrame, dict[str, Any]]],
) -> tuple[DataFrame, dict[str, Any], bool]:
    """The Parquet output of ``directory`` and the facts measured while computing it, reused when its marker has
    ``key``, else computed (``compute``), written and marked; and whether it was reused."""
    marker = cache.finished(directory, key)
    if marker is not None:
        print(f"[{directory.rsplit('/', 1)[-1]}] up to date, reusing {directory}")
        return spark.read.parquet(storage.spark_path(directory)), marker.get("stats", {}), True
    cache.invalidate(directory)
    started = time.time()
    frame, stats = compute()
    written = write_parquet(frame, directory)
    cache.mark_finished(directory, key, stats=stats, seconds=round(time.time() - started, 2))
    return written, stats, False


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


def no_space(text: str, out: str) -> str:
    """The one line for a full disk: the path under ``out`` that the error's ``text`` names (else ``out``), the
    space left there and what to do."""
    base = storage.spark_path(out).rstrip("/")
    found = re.search(re.escape(base) + r"[^\s'\"]*", text)
    where = out.rstrip("/") + found.group()[len(base) :].rstrip(".,:;") if found else out
    free = storage.free_bytes(out)
    room = f" ({free // 2**20} MB free there)" if free is not None else ""
    reuse = "free space and rerun: finished stages are reused"
    return f"error: no space left on device while writing {where}{room}; {reuse}"


def main(argv: list[str] | None = None) -> int:
    cfg = PipelineConfig.from_args(argv)
    try:
        report = run(cfg)
    except Exception as err:
        if (text := storage.out_of_space(err)) is not None:
            print(no_space(text, cfg.output), file=sys.stderr)
            return 1
        if not isinstance(err, (InputError, RuntimeError, ValueError)):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
