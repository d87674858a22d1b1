"""The ``langid`` stage: fastText lid.176 language ID on Arrow batches, removal reason ``language``."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spark_jobs.batches import annotate_batches, group_counts, most_frequent
from spark_jobs.documents import KIND_CODE
from spark_jobs.langid.identify import REASON_LANGUAGE, LanguageIdentifier, LanguageRule
from spark_jobs.langid.model import ModelSource

TOP_LANGUAGES = 20


class LangIdStage:
    """Stage ``langid``: sets ``lang``/``lang_score`` on text documents; drops those outside ``--languages`` or
    under ``--lang-threshold``. Code documents pass untouched (``lang`` null)."""

    name = "langid"
    reasons = (REASON_LANGUAGE,)

    def batch_fn(self, spark: SparkSession, cfg: Any) -> LanguageIdentifier:
        """The row-local decision (a user model is shipped to the executors here), for the pipeline to run fused
        with ingestion (see ``RowChain``)."""
        return LanguageIdentifier(
            rule=LanguageRule.parse(cfg.languages, cfg.lang_threshold),
            window_chars=cfg.lang_window_chars,
            window_pieces=cfg.lang_window_pieces,
            model=ModelSource.for_spark(spark, cfg.lang_model),
        )

    def annotate(self, docs: DataFrame, cfg: Any) -> DataFrame:
        return annotate_batches(docs, self.batch_fn(docs.sparkSession, cfg))

    def report(self, annotated: DataFrame, cfg: Any) -> dict[str, Any]:
        return self.summary(group_counts(annotated), cfg)

    def summary(self, counts: list[dict[str, Any]], cfg: Any) -> dict[str, Any]:
        """The most frequent labels among all text documents and among the removed ones (what the rule cost), from
        the stage's :func:`~spark_jobs.batches.group_counts`."""
        text = [row for row in counts if row["kind"] != KIND_CODE]
        return {
            "languages": most_frequent(text, "lang", TOP_LANGUAGES),
            "removed_languages": most_frequent(
                [row for row in text if row["reason"] is not None], "lang", TOP_LANGUAGES
            ),
        }
