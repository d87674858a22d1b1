"""One stage run alone on a DataFrame, as the runner would run it, for the stage's own tests."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.batches import annotate_batches, group_counts
from spark_jobs.config import PipelineConfig
from spark_jobs.documents import DOC_COLUMNS, apply_removals
from spark_jobs.stage import CorpusStage, RowStage, Stage, StageView


def annotate(stage: Stage, docs: DataFrame, cfg: PipelineConfig, directory: str = "") -> tuple[DataFrame, dict]:
    """Every row of ``docs`` with the stage's ``reason``/``rule``/``duplicate_of``, and what it measured."""
    opts = cfg.options(stage.Options)
    if isinstance(stage, RowStage):
        return annotate_batches(docs, stage.batch_fn(opts, docs.sparkSession)), {}
    assert isinstance(stage, CorpusStage)
    result = stage.run(docs, opts, directory or cfg.output)
    return apply_removals(docs.select(*DOC_COLUMNS), result.removals), result.stats


def report(stage: Stage, annotated: DataFrame, cfg: PipelineConfig, stats: dict[str, Any] | None = None) -> dict:
    """The stage's own report entries for an annotated frame (what :meth:`Stage.summary` gives the runner)."""
    opts = cfg.options(stage.Options)
    if isinstance(stage, RowStage):
        return stage.summary(StageView(counts=group_counts(annotated)), opts)
    removals = annotated.where(F.col("reason").isin(*stage.reasons))
    return stage.summary(StageView(removals=removals, docs=annotated.select(*DOC_COLUMNS), stats=stats or {}), opts)
