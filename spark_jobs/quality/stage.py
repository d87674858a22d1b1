"""The ``quality`` stage (opt-in): the Gopher, C4 and FineWeb quality rules on prose; code is exempt.

Order (the first unit that fires names the removal, reason ``quality``):

* Gopher (Rae et al. 2021, appendix A): ``gopher_min_words``, ``gopher_max_words`` (50..100,000 words),
  ``gopher_min_mean_word_chars``, ``gopher_max_mean_word_chars`` (3..10), ``gopher_hash_word_ratio``,
  ``gopher_ellipsis_word_ratio`` (0.1 each), ``gopher_bullet_line_frac`` (0.9), ``gopher_ellipsis_line_frac``
  (0.3), ``gopher_alpha_word_frac`` (at least 0.8), ``gopher_stop_words`` (at least 2);
* C4 (Raffel et al. 2020), the page rules: ``c4_lorem_ipsum``, ``c4_curly_bracket``, and ``c4_min_sentences``
  (at least 5 sentences in the lines C4 keeps);
* FineWeb (Penedo et al. 2024): ``fineweb_line_punct_frac`` (removed at 0.12 or less),
  ``fineweb_short_line_frac`` (removed at 0.67 or more of lines of 30 characters or less),
  ``fineweb_dup_line_char_frac`` (removed at 0.1 or more; the paper's value, datatrove's default is 0.01),
  ``fineweb_newline_word_ratio`` (removed above 0.3).

C4's own rules remove *lines* (no terminal punctuation, fewer than 3 words, "javascript", cookie and legal phrases,
a word over 1000 characters) and drop a page only when it contains "lorem ipsum" or ``{``, or when fewer than 5
sentences are left, as datatrove's ``C4QualityFilter`` does. This stage removes documents and never rewrites text,
so the line rules are applied only through ``c4_min_sentences`` (a page whose lines C4 would mostly drop is
removed) and the kept documents keep all their lines; the share of lines without terminal punctuation has its
published document threshold in FineWeb's ``fineweb_line_punct_frac``. The page rules look at the whole text (the
paper's words), not only at the lines that passed the line rules as in datatrove.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from slm_common.options import opt
from spark_jobs.batches import ColumnValues, most_frequent
from spark_jobs.documents import KIND_CODE
from spark_jobs.quality.rules import (
    STOP_WORDS,
    BatchText,
    C4CurlyBracket,
    C4LoremIpsum,
    C4MinSentences,
    FineWebDupLineCharFrac,
    FineWebLinePunctFrac,
    FineWebNewlineWordRatio,
    FineWebShortLineFrac,
    GopherAlphaWordFrac,
    GopherBulletLineFrac,
    GopherEllipsisLineFrac,
    GopherEllipsisWordRatio,
    GopherHashWordRatio,
    GopherMaxMeanWordChars,
    GopherMaxWords,
    GopherMinMeanWordChars,
    GopherMinWords,
    GopherStopWords,
    QualityUnit,
)
from spark_jobs.stage import RowStage, StageView

REASON_QUALITY = "quality"


@dataclass
class QualityOptions:
    """Thresholds of the ``quality`` stage; defaults are the published ones."""

    gopher_min_words: int = opt(50, "text with fewer words is removed (Gopher)")
    gopher_max_words: int = opt(100_000, "text with more words is removed (Gopher)")
    gopher_min_mean_word_chars: float = opt(3.0, "text whose mean word length is below this is removed (Gopher)")
    gopher_max_mean_word_chars: float = opt(10.0, "text whose mean word length is above this is removed (Gopher)")
    gopher_max_hash_word_ratio: float = opt(0.1, "max '#' per word (Gopher)")
    gopher_max_ellipsis_word_ratio: float = opt(0.1, "max ellipses ('...' or '…') per word (Gopher)")
    gopher_max_bullet_line_frac: float = opt(0.9, "max share of non-empty lines starting with a bullet (Gopher)")
    gopher_max_ellipsis_line_frac: float = opt(0.3, "max share of non-empty lines ending with an ellipsis (Gopher)")
    gopher_min_alpha_word_frac: float = opt(0.8, "min share of words with a letter (Gopher)")
    gopher_min_stop_words: int = opt(2, f"min occurrences of the stop words {','.join(STOP_WORDS)} (Gopher)")
    c4_min_sentences: int = opt(5, "min sentences in the lines C4's line rules keep (C4)")
    c4_min_line_words: int = opt(3, "C4's line rule: a line with fewer words is not kept (for --c4-min-sentences)")
    c4_max_word_chars: int = opt(1000, "C4's line rule: a line with a longer word is not kept (for --c4-min-sentences)")
    fineweb_min_line_punct_frac: float = opt(
        0.12, "text whose share of lines ending in . ' \" ! ? is at most this is removed (FineWeb)"
    )
    fineweb_max_short_line_frac: float = opt(
        0.67, "text whose share of short lines (--fineweb-short-line-chars) is at least this is removed (FineWeb)"
    )
    fineweb_short_line_chars: int = opt(30, "a line of at most this many characters is short (FineWeb)")
    fineweb_max_dup_line_char_frac: float = opt(
        0.1, "text whose share of characters in repeated non-blank lines is at least this is removed (FineWeb)"
    )
    fineweb_max_newline_word_ratio: float = opt(0.3, "max newlines per word: more is a list (FineWeb)")
    quality_skip: str = opt("", "comma list of quality rules not to apply (e.g. c4_curly_bracket)")

    FRACTIONS = (
        "gopher_max_bullet_line_frac",
        "gopher_max_ellipsis_line_frac",
        "gopher_min_alpha_word_frac",
        "fineweb_min_line_punct_frac",
        "fineweb_max_short_line_frac",
        "fineweb_max_dup_line_char_frac",
    )
    NON_NEGATIVE = (
        "gopher_min_words",
        "gopher_min_mean_word_chars",
        "gopher_max_hash_word_ratio",
        "gopher_max_ellipsis_word_ratio",
        "gopher_min_stop_words",
        "c4_min_sentences",
        "c4_min_line_words",
        "c4_max_word_chars",
        "fineweb_short_line_chars",
        "fineweb_max_newline_word_ratio",
    )

    @property
    def skipped(self) -> set[str]:
        return {name.strip() for name in self.quality_skip.split(",") if name.strip()}

    def validate(self) -> None:
        for name in self.FRACTIONS:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be within [0, 1]")
        for name in self.NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must not be negative")
        if self.gopher_max_words < self.gopher_min_words:
            raise ValueError("--gopher-max-words must not be below --gopher-min-words")
        if self.gopher_max_mean_word_chars < self.gopher_min_mean_word_chars:
            raise ValueError("--gopher-max-mean-word-chars must not be below --gopher-min-mean-word-chars")
        unknown = sorted(self.skipped - {unit.name for unit in all_units(self)})
        if unknown:
            raise ValueError(f"--quality-skip names unknown rule(s) {','.join(unknown)}")


def all_units(opts: QualityOptions) -> tuple[QualityUnit, ...]:
    """Every quality unit with its threshold from ``opts``, in the order they are tried."""
    return (
        GopherMinWords(opts.gopher_min_words),
        GopherMaxWords(opts.gopher_max_words),
        GopherMinMeanWordChars(opts.gopher_min_mean_word_chars),
        GopherMaxMeanWordChars(opts.gopher_max_mean_word_chars),
        GopherHashWordRatio(opts.gopher_max_hash_word_ratio),
        GopherEllipsisWordRatio(opts.gopher_max_ellipsis_word_ratio),
        GopherBulletLineFrac(opts.gopher_max_bullet_line_frac),
        GopherEllipsisLineFrac(opts.gopher_max_ellipsis_line_frac),
        GopherAlphaWordFrac(opts.gopher_min_alpha_word_frac),
        GopherStopWords(opts.gopher_min_stop_words),
        C4LoremIpsum(),
        C4CurlyBracket(),
        C4MinSentences(opts.c4_min_sentences, opts.c4_min_line_words, opts.c4_max_word_chars),
        FineWebLinePunctFrac(opts.fineweb_min_line_punct_frac),
        FineWebShortLineFrac(opts.fineweb_max_short_line_frac, opts.fineweb_short_line_chars),
        FineWebDupLineCharFrac(opts.fineweb_max_dup_line_char_frac),
        FineWebNewlineWordRatio(opts.fineweb_max_newline_word_ratio),
    )


@dataclass(frozen=True)
class QualityRules:
    """The units applied to a batch (pickled to the workers): each measures every prose document of the batch at
    once, and a document's rule is the first unit that fires on it."""

    units: tuple[QualityUnit, ...]

    @classmethod
    def from_options(cls, opts: QualityOptions) -> QualityRules:
        return cls(tuple(unit for unit in all_units(opts) if unit.name not in opts.skipped))

    def rules(self, texts: pa.Array) -> list[str | None]:
        """The rule that removes each text, or None to keep it."""
        out: list[str | None] = [None] * len(texts)
        if not len(texts) or not self.units:
            return out
        batch = BatchText(texts)
        values = [unit.measure(batch) for unit in self.units]
        fired = np.stack([unit.fires(value) for unit, value in zip(self.units, values, strict=True)])
        first = fired.argmax(axis=0)
        for row in np.flatnonzero(fired.any(axis=0)).tolist():
            unit = int(first[row])
            out[row] = self.units[unit].rule(values[unit][row])
        return out

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, ColumnValues]:
        """Batch function: ``reason``/``rule`` for the prose rows; code rows are kept."""
        prose = pc.invert(pc.fill_null(pc.equal(batch.column("kind"), KIND_CODE), False))
        positions = pc.indices_nonzero(prose).to_pylist()
        rules: list[str | None] = [None] * batch.num_rows
        for position, rule in zip(positions, self.rules(batch.column("text").filter(prose)), strict=True):
            rules[position] = rule
        return {"reason": [REASON_QUALITY if rule else None for rule in rules], "rule": rules}


class QualityStage(RowStage):
    """Stage ``quality``: the Gopher, C4 and FineWeb quality rules (see the module docstring)."""

    name = "quality"
    reasons = (REASON_QUALITY,)
    Options = QualityOptions

    def batch_fn(self, opts: QualityOptions, spark: SparkSession) -> QualityRules:
        return QualityRules.from_options(opts)

    def summary(self, view: StageView, opts: QualityOptions) -> dict[str, Any]:
        """The order the rules are tried in and the removals per rule name."""
        return {
            "rule_order": [unit.name for unit in QualityRules.from_options(opts).units],
            "rule_counts": most_frequent([row for row in view.counts if row["reason"] is not None], "rule_name"),
        }
