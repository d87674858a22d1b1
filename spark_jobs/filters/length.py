"""Length filters (reason ``too_short``): the "Pretraining LLMs" course's line rules and a word minimum for prose; size minima for code."""

from __future__ import annotations

import re

import numpy as np

from spark_jobs.filters.base import REASON_TOO_SHORT, DocView, LowerBound, count_reaches, kth_largest, rule_text
from spark_jobs.filters.batch import DocBatch, row_sums

_UNSPACED_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
"""Hiragana, katakana and CJK ideographs: scripts written without spaces between words."""

_ASCII_WHITESPACE = bytes(c for c in range(128) if chr(c).isspace())
"""What ``str.split()`` splits on, among ASCII characters."""


class MinLines(LowerBound):
    """The "Pretraining LLMs" course's first rule: a text with fewer than ``minimum`` lines (blank lines count) is too short."""

    name = "min_lines"
    reason = REASON_TOO_SHORT

    def measure(self, doc: DocView) -> int:
        return doc.line_lengths.size

    def measure_rows(self, docs: DocBatch, rows: np.ndarray) -> np.ndarray:
        return docs.line_count[rows]


class LongestLines(LowerBound):
    """The "Pretraining LLMs" course's second rule: the ``count`` longest lines must each have at least ``minimum`` characters.

    Measured as the length of the ``count``-th longest line, i.e. the text needs ``count`` lines of that length;
    a few real lines padded with near-empty ones (``"a\\nb\\n\\nSome text"``) is a fragment, not a document.
    """

    name = "longest_lines"
    reason = REASON_TOO_SHORT

    def __init__(self, minimum: int, count: int) -> None:
        super().__init__(minimum)
        self.count = count

    def measure(self, doc: DocView) -> int:
        return doc.kth_longest_line(self.count)

    def check_rows(self, docs: DocBatch, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The ``count``-th longest line is shorter than ``minimum`` exactly when fewer lines than ``count`` (than all,
        if the text has fewer) reach it: counted for every row at once, the length itself only where it fires."""
        if self.count < 1:  # then every text measures 0
            fired = rows if 0 < self.minimum else rows[:0]
        else:
            long_enough = row_sums(docs.line_lengths >= self.minimum, docs.line_starts)[rows]
            fired = rows[long_enough < np.minimum(docs.line_count[rows], self.count)]
        starts = docs.line_starts
        values = [kth_largest(docs.line_lengths[starts[row] : starts[row + 1]], self.count) for row in fired.tolist()]
        return fired, [rule_text(self.name, value, self.comparison, self.minimum) for value in values]


class MinWords(LowerBound):
    """Prose needs a few words: three lines of "ok" pass the course's line rules but teach a model nothing.

    Words are whitespace-separated tokens; Chinese and Japanese are written without spaces, so there each Han or
    kana character counts as a word too (counted only when the tokens alone fall short, which keeps it cheap).
    """

    name = "min_words"
    reason = REASON_TOO_SHORT

    def measure(self, doc: DocView) -> int:
        words = doc.word_count
        return words if words >= self.minimum else words + len(_UNSPACED_SCRIPT.findall(doc.text))

    def measure_rows(self, docs: DocBatch, rows: np.ndarray) -> np.ndarray:
        words = docs.word_count[rows]
        short = np.flatnonzero(words < self.minimum)
        unspaced = (len(_UNSPACED_SCRIPT.findall(docs.text(row))) for row in rows[short].tolist())
        words[short] += np.fromiter(unspaced, dtype=np.int64, count=short.size)
        return words


class CodeMinLines(LowerBound):
    """Code needs some non-blank lines (empty ``__init__.py`` files and one-liners are noise in a corpus)."""

    name = "code_min_lines"
    reason = REASON_TOO_SHORT

    def measure(self, doc: DocView) -> int:
        return doc.nonblank_line_segments.count

    def measure_rows(self, docs: DocBatch, rows: np.ndarray) -> np.ndarray:
        return docs.nonblank_line_segments.count[rows]


def non_whitespace_chars(text: str) -> int:
    """Characters of ``text`` that are not whitespace; for ASCII (most code) ``bytes.translate`` deletes them in C."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _ASCII_WHITESPACE))
    return len("".join(text.split()))


class CodeMinChars(LowerBound):
    """Code needs some non-whitespace characters (a few lines of ``pass``/``)`` are not a program)."""

    name = "code_min_chars"
    reason = REASON_TOO_SHORT

    STEP_PER_MINIMUM = 8
    """Characters counted at a time per character required: ordinary code has the minimum in its first step."""

    def measure(self, doc: DocView) -> int:
        return non_whitespace_chars(doc.text)

    def check(self, doc: DocView) -> str | None:
        """Stops counting once the minimum is reached (the value is only reported when the unit fires): only short
        texts are counted to the end."""
        step = int(min(self.minimum, len(doc.text))) * self.STEP_PER_MINIMUM
        if count_reaches(doc.text, non_whitespace_chars, lambda count: count >= self.minimum, step):
            return None
        return super().check(doc)

    def check_rows(self, docs: DocBatch, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """A non-blank line holds a non-whitespace character, so a text with enough of them passes; only the others
        are counted, one by one as :meth:`check` does."""
        return super().check_rows(docs, rows[docs.nonblank_line_segments.count[rows] < self.minimum])
