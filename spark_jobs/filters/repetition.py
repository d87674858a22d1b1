"""Repetition filters (reason ``repetition``): the "Pretraining LLMs" course's paragraph rule and Gopher's line and n-gram rules for prose,
and a duplicate-line share for code.

Gopher (Rae et al. 2021, table A1) and datatrove's ``GopherRepetitionFilter`` define the measures; every share is a
fraction of the document's characters and fires only when strictly above its threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spark_jobs.filters.base import REASON_REPETITION, DocFilter, DocView, Segments, WordNGrams, rule_text
from spark_jobs.filters.batch import DocBatch


class DuplicateSegments(DocFilter):
    """Share of segments (paragraphs, lines) that repeat an earlier one, then share of characters they hold.

    Sub-rules ``<name>_frac`` and ``<name>_char_frac``; ``max_char_frac=None`` checks the count share only.
    """

    def __init__(self, max_frac: float, max_char_frac: float | None = None) -> None:
        self.max_frac = max_frac
        self.max_char_frac = max_char_frac

    def segments(self, docs: DocView | DocBatch) -> Segments:
        """The document's segments, or a batch's as arrays (both name the measure alike)."""
        raise NotImplementedError

    def rule(self, sub_rule: str, share: float, maximum: float) -> str:
        return rule_text(f"{self.name}_{sub_rule}", share, ">", maximum)

    def check(self, doc: DocView) -> str | None:
        segments = self.segments(doc)
        if not segments.count:
            return None
        frac = segments.repeated / segments.count
        if frac > self.max_frac:
            return self.rule("frac", frac, self.max_frac)
        if self.max_char_frac is not None and doc.text:
            char_frac = segments.repeated_chars / len(doc.text)
            if char_frac > self.max_char_frac:
                return self.rule("char_frac", char_frac, self.max_char_frac)
        return None

    def check_rows(self, docs: DocBatch, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        segments = self.segments(docs)
        count = segments.count[rows]
        frac = np.divide(segments.repeated[rows], count, out=np.zeros(rows.size), where=count > 0)
        by_count = (count > 0) & (frac > self.max_frac)
        fired, rules = [rows[by_count]], [self.rule("frac", value, self.max_frac) for value in frac[by_count]]
        if self.max_char_frac is not None:
            chars = docs.chars[rows]
            left = (count > 0) & ~by_count & (chars > 0)
            char_frac = np.divide(segments.repeated_chars[rows], chars, out=np.zeros(rows.size), where=left)
            by_chars = left & (char_frac > self.max_char_frac)
            fired.append(rows[by_chars])
            rules += [self.rule("char_frac", value, self.max_char_frac) for value in char_frac[by_chars]]
        return np.concatenate(fired), rules

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.max_frac}, {self.max_char_frac})"


class DuplicateParagraphs(DuplicateSegments):
    """The "Pretraining LLMs" course's repetition rule, which is also Gopher's first: paragraphs split on blank lines."""

    name = "dup_para"
    reason = REASON_REPETITION

    def segments(self, docs: DocView | DocBatch) -> Segments:
        return docs.paragraph_segments


class DuplicateLines(DuplicateSegments):
    """Gopher's duplicate-line rule (lines split on ``\\n+``): boilerplate menus, repeated headers."""

    name = "dup_line"
    reason = REASON_REPETITION

    def segments(self, docs: DocView | DocBatch) -> Segments:
        return docs.nonempty_line_segments


class CodeDuplicateLines(DuplicateSegments):
    """Code repeats lines legitimately (``return None``, ``)``, ``else:``), so only a very high share of duplicate
    non-blank lines (indentation kept) marks copy-pasted or generated filler; Python's own test suite peaks near
    0.86 (``test_exception_variations.py``)."""

    name = "code_dup_line"
    reason = REASON_REPETITION

    def segments(self, docs: DocView | DocBatch) -> Segments:
        return docs.nonblank_line_segments


class NGramShare(DocFilter):
    """Character share of repeated word n-grams, one threshold per n, checked in the order given.

    Sub-rules ``<prefix>_<n>gram_char_frac``.
    """

    reason = REASON_REPETITION
    rule_prefix: str

    def __init__(self, thresholds: Sequence[tuple[int, float]]) -> None:
        self.thresholds = tuple(thresholds)

    def chars(self, ngrams: WordNGrams, n: int) -> int:
        raise NotImplementedError

    def shares(self, docs: DocBatch, n: int, maximum: float, rows: np.ndarray) -> np.ndarray:
        """The share of each of ``rows`` (non-empty texts) where it is above ``maximum``; elsewhere any value not
        above it, so that a unit may skip measuring exactly what cannot fire."""
        raise NotImplementedError

    def rule(self, n: int, share: float, maximum: float) -> str:
        return rule_text(f"{self.rule_prefix}_{n}gram_char_frac", share, ">", maximum)

    def check(self, doc: DocView) -> str | None:
        if not doc.text:
            return None
        for index, (n, maximum) in enumerate(self.thresholds):
            share = self.chars(doc.ngrams, n) / len(doc.text)
            if share > maximum:
                return self.rule(n, share, maximum)
            if self.rest_cannot_fire(doc, n, self.thresholds[index + 1 :]):
                return None
        return None

    def check_rows(self, docs: DocBatch, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """As :meth:`check`, one threshold at a time for all rows that no earlier one decided."""
        rows = rows[docs.chars[rows] > 0]
        fired, rules = [rows[:0]], []
        for index, (n, maximum) in enumerate(self.thresholds):
            share = self.shares(docs, n, maximum, rows)
            hit = share > maximum
            fired.append(rows[hit])
            rules += [self.rule(n, value, maximum) for value in share[hit]]
            rows = rows[~hit]
            rows = rows[~self.rest_cannot_fire_rows(docs, n, self.thresholds[index + 1 :], rows)]
        return np.concatenate(fired), rules

    def rest_cannot_fire(self, doc: DocView, n: int, rest: Sequence[tuple[int, float]]) -> bool:
        """True when the thresholds after ``n`` provably pass, so they need not be measured (an optimisation)."""
        return False

    def rest_cannot_fire_rows(
        self, docs: DocBatch, n: int, rest: Sequence[tuple[int, float]], rows: np.ndarray
    ) -> np.ndarray:
        """:meth:`rest_cannot_fire` for each of ``rows``."""
        return np.zeros(rows.size, dtype=bool)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.thresholds)})"


class TopNGramShare(NGramShare):
    """Gopher: characters covered by the most frequent n-gram (n = 2, 3, 4): "click here click here ..."."""

    name = "top_ngram"
    rule_prefix = "top"

    def chars(self, ngrams: WordNGrams, n: int) -> int:
        return ngrams.top_ngram_chars(n)

    def shares(self, docs: DocBatch, n: int, maximum: float, rows: np.ndarray) -> np.ndarray:
        return docs.ngrams.top_ngram_chars(n, rows) / docs.chars[rows]


class DuplicateNGramShare(NGramShare):
    """Gopher: characters inside n-grams that repeat an earlier one (n = 5..10), overlaps counted once."""

    name = "dup_ngram"
    rule_prefix = "dup"

    def chars(self, ngrams: WordNGrams, n: int) -> int:
        return ngrams.duplicate_ngram_chars(n)

    def shares(self, docs: DocBatch, n: int, maximum: float, rows: np.ndarray) -> np.ndarray:
        """Gopher's scan is sequential, so it runs only on the rows whose bound (the words inside repeated n-grams)
        is above ``maximum``: usually few, as prose seldom repeats five words in a row."""
        chars = docs.chars[rows]
        shares = docs.ngrams.repeat_coverage_chars(n, rows) / chars
        above = np.flatnonzero(shares > maximum)
        shares[above] = docs.ngrams.duplicate_ngram_chars(n, rows[above]) / chars[above]
        return shares

    def rest_cannot_fire(self, doc: DocView, n: int, rest: Sequence[tuple[int, float]]) -> bool:
        """Words inside repeated n-grams bound the duplicate share of every longer n-gram (usually few in prose)."""
        return doc.ngrams.repeat_coverage_chars(n) / len(doc.text) <= self.bound_limit(n, rest)

    def rest_cannot_fire_rows(
        self, docs: DocBatch, n: int, rest: Sequence[tuple[int, float]], rows: np.ndarray
    ) -> np.ndarray:
        return docs.ngrams.repeat_coverage_chars(n, rows) / docs.chars[rows] <= self.bound_limit(n, rest)

    @staticmethod
    def bound_limit(n: int, rest: Sequence[tuple[int, float]]) -> float:
        """The share of words in repeated n-grams up to which no threshold in ``rest`` can fire: the smallest of
        them, as long as none is for fewer than n words (their n-grams are not bounded by it)."""
        if any(m < n for m, _ in rest):
            return -math.inf
        return min((maximum for _, maximum in rest), default=math.inf)
