"""Repetition filters (reason ``repetition``): the "Pretraining LLMs" course's paragraph rule and Gopher's line and n-gram rules for prose,
and a duplicate-line share for code.

Gopher (Rae et al. 2021, table A1) and datatrove's ``GopherRepetitionFilter`` define the measures; every share is a
fraction of the document's characters and fires only when strictly above its threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

from spark_jobs.filters.base import REASON_REPETITION, DocFilter, DocView, Segments, WordNGrams, format_value


class DuplicateSegments(DocFilter):
    """Share of segments (paragraphs, lines) that repeat an earlier one, then share of characters they hold.

    Sub-rules ``<name>_frac`` and ``<name>_char_frac``; ``max_char_frac=None`` checks the count share only.
    """

    def __init__(self, max_frac: float, max_char_frac: float | None = None) -> None:
        self.max_frac = max_frac
        self.max_char_frac = max_char_frac

    def segments(self, doc: DocView) -> Segments:
        raise NotImplementedError

    def check(self, doc: DocView) -> str | None:
        segments = self.segments(doc)
        if not segments.count:
            return None
        frac = segments.repeated / segments.count
        if frac > self.max_frac:
            return f"{self.name}_frac: {format_value(frac)} > {self.max_frac}"
        if self.max_char_frac is not None and doc.text:
            char_frac = segments.repeated_chars / len(doc.text)
            if char_frac > self.max_char_frac:
                return f"{self.name}_char_frac: {format_value(char_frac)} > {self.max_char_frac}"
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.max_frac}, {self.max_char_frac})"


class DuplicateParagraphs(DuplicateSegments):
    """The "Pretraining LLMs" course's repetition rule, which is also Gopher's first: paragraphs split on blank lines."""

    name = "dup_para"
    reason = REASON_REPETITION

    def segments(self, doc: DocView) -> Segments:
        return doc.paragraph_segments


class DuplicateLines(DuplicateSegments):
    """Gopher's duplicate-line rule (lines split on ``\\n+``): boilerplate menus, repeated headers."""

    name = "dup_line"
    reason = REASON_REPETITION

    def segments(self, doc: DocView) -> Segments:
        return doc.nonempty_line_segments


class CodeDuplicateLines(DuplicateSegments):
    """Code repeats lines legitimately (``return None``, ``)``, ``else:``), so only a very high share of duplicate
    non-blank lines (indentation kept) marks copy-pasted or generated filler; Python's own test suite peaks near
    0.86 (``test_exception_variations.py``)."""

    name = "code_dup_line"
    reason = REASON_REPETITION

    def segments(self, doc: DocView) -> Segments:
        return doc.nonblank_line_segments


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

    def check(self, doc: DocView) -> str | None:
        if not doc.text:
            return None
        for index, (n, maximum) in enumerate(self.thresholds):
            share = self.chars(doc.ngrams, n) / len(doc.text)
            if share > maximum:
                return f"{self.rule_prefix}_{n}gram_char_frac: {format_value(share)} > {maximum}"
            if self.rest_cannot_fire(doc, n, self.thresholds[index + 1 :]):
                return None
        return None

    def rest_cannot_fire(self, doc: DocView, n: int, rest: Sequence[tuple[int, float]]) -> bool:
        """True when the thresholds after ``n`` provably pass, so they need not be measured (an optimisation)."""
        return False

    def sizes_always_measured(self) -> tuple[int, ...]:
        """The n measured on every document that reaches this unit and passes it: worth numbering for a whole batch
        at once (:func:`spark_jobs.filters.batch.batch_word_ngrams`). All of them, unless the loop can stop early."""
        return tuple(n for n, _ in self.thresholds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.thresholds)})"


class TopNGramShare(NGramShare):
    """Gopher: characters covered by the most frequent n-gram (n = 2, 3, 4): "click here click here ..."."""

    name = "top_ngram"
    rule_prefix = "top"

    def chars(self, ngrams: WordNGrams, n: int) -> int:
        return ngrams.top_ngram_chars(n)


class DuplicateNGramShare(NGramShare):
    """Gopher: characters inside n-grams that repeat an earlier one (n = 5..10), overlaps counted once."""

    name = "dup_ngram"
    rule_prefix = "dup"

    def chars(self, ngrams: WordNGrams, n: int) -> int:
        return ngrams.duplicate_ngram_chars(n)

    def rest_cannot_fire(self, doc: DocView, n: int, rest: Sequence[tuple[int, float]]) -> bool:
        """Words inside repeated n-grams bound the duplicate share of every longer n-gram (usually few in prose)."""
        bound = doc.ngrams.repeat_coverage_chars(n) / len(doc.text)
        return all(m >= n and bound <= maximum for m, maximum in rest)

    def sizes_always_measured(self) -> tuple[int, ...]:
        """Only the first n: :meth:`rest_cannot_fire` stops most documents right after it."""
        return tuple(n for n, _ in self.thresholds[:1])
