"""Measuring a whole Arrow batch at once: the line lengths, segment counts and word n-grams the units read, as numpy
arrays with one entry per document (or per line or word, with each document's start).

Splitting a text into lines, hashing them and numbering its n-grams one document at a time in Python costs more
than all the rules together. Here Arrow's C++ kernels split the texts of a batch into one flat array, Arrow and
pandas hash it piece by piece, and numpy counts per document: exactly the numbers each document's
:class:`~spark_jobs.filters.base.DocView` computes from its own text (``tests/test_filters_batch.py`` compares the
two on awkward inputs). The units' batch forms (:meth:`~spark_jobs.filters.base.DocFilter.check_rows`) read them.
Arrow's Unicode whitespace (``utf8_is_space``, ``utf8_trim_whitespace``) is Python's ``str.isspace``, and
``utf8_length`` counts code points like ``len``.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.filters.base import PARAGRAPH_BREAK, DocView, Segments, first_occurrences

WORD_PIECE = 1 << 15
SEGMENT_PIECE = 1 << 13
"""Words and segments (lines, paragraphs) hashed at a time (:func:`row_pieces`): what the CPU cache holds well."""

OTHER_WHITESPACE = (
    "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
"""Python's whitespace (``str.isspace``) besides the six ASCII characters Arrow's ``ascii_split_whitespace`` splits
on (tab, line feed, vertical tab, form feed, carriage return, space)."""

_OTHER_WHITESPACE_RE2 = "[" + "".join(f"\\x{{{ord(char):x}}}" for char in OTHER_WHITESPACE) + "]"


class BatchLines:
    """The texts of a batch (a null text is empty) split into lines once, by Arrow: one flat array of lines, where
    each text's lines begin, and their lengths. The filters and the quality rules both start from these."""

    def __init__(self, texts: pa.Array) -> None:
        self.texts = texts.fill_null("")
        self.size = len(texts)

    @cached_property
    def _lines(self) -> pa.ListArray:
        return pc.split_pattern(self.texts, "\n")

    @cached_property
    def lines(self) -> pa.Array:
        """Every line of every text, one flat array (:attr:`line_starts` says where each text's begin)."""
        return self._lines.flatten()

    @cached_property
    def line_starts(self) -> np.ndarray:
        return starts_of(self._lines)

    @cached_property
    def line_lengths(self) -> np.ndarray:
        return numpy(pc.utf8_length(self.lines))

    @cached_property
    def line_count(self) -> np.ndarray:
        """Lines of each text (at least one: an empty text is one empty line)."""
        return np.diff(self.line_starts)


class DocBatch(BatchLines):
    """The documents of a batch with their measures, each computed for all documents at once when a unit first
    reads it: the same measures, by the same names, as a :class:`DocView` has for one document, but arrays indexed
    by row. ``view(row)`` is a document's own view, for units without a batch form.
    """

    def __init__(self, texts: pa.Array) -> None:
        super().__init__(texts)
        self._views: dict[int, DocView] = {}

    def text(self, row: int) -> str:
        return self.texts[row].as_py()

    def view(self, row: int) -> DocView:
        if row not in self._views:
            self._views[row] = DocView(self.text(row))
        return self._views[row]

    @cached_property
    def chars(self) -> np.ndarray:
        """Characters of each text: its lines' and the newlines between them."""
        return row_sums(self.line_lengths, self.line_starts) + self.line_count - 1

    @cached_property
    def longest_line(self) -> np.ndarray:
        return np.maximum.reduceat(self.line_lengths, self.line_starts[:-1])

    @cached_property
    def nonempty_line_segments(self) -> Segments:
        return segment_counts(self.lines, self.line_lengths, self.line_starts, self.line_lengths > 0)

    @cached_property
    def nonblank_line_segments(self) -> Segments:
        nonblank = (self.line_lengths > 0) & ~numpy(pc.utf8_is_space(self.lines))
        return segment_counts(self.lines, self.line_lengths, self.line_starts, nonblank)

    @cached_property
    def _stripped(self) -> pa.Array:
        """The texts without leading and trailing whitespace, as ``str.strip()`` leaves them."""
        return pc.utf8_trim_whitespace(self.texts)

    @cached_property
    def paragraph_segments(self) -> Segments:
        paragraphs = pc.split_pattern_regex(self._stripped, PARAGRAPH_BREAK.pattern)
        flat = paragraphs.flatten()
        lengths = numpy(pc.utf8_length(flat))
        return segment_counts(flat, lengths, starts_of(paragraphs), np.ones(lengths.size, dtype=bool))

    @cached_property
    def ngrams(self) -> BatchNGrams:
        return BatchNGrams(*split_words(self._stripped))

    @property
    def word_count(self) -> np.ndarray:
        return self.ngrams.word_count


def numpy(values: pa.Array) -> np.ndarray:
    """An Arrow result without nulls as numpy (copied when Arrow's layout differs, e.g. booleans)."""
    return values.to_numpy(zero_copy_only=False)


def starts_of(lists: pa.ListArray) -> np.ndarray:
    """Where each row's elements begin in ``lists.flatten()``, and its length last."""
    offsets = lists.offsets.to_numpy()
    return offsets - offsets[0]


def owners(starts: np.ndarray) -> np.ndarray:
    """The row of each element of a flat array whose rows begin at ``starts`` (its length last)."""
    return np.repeat(np.arange(starts.size - 1), np.diff(starts))


def row_pieces(starts: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Runs of whole rows, about ``size`` elements each, of a flat array whose rows begin at ``starts`` (its length
    last), as (first row, row after the last).

    Hashing and numbering piece by piece is several times faster than in one pass over the batch: each piece's hash
    table and temporaries stay in the CPU cache (hash tables are read at random) and need no fresh memory from the
    system. Rows never share a key, so nothing is lost between pieces.
    """
    inner = np.searchsorted(starts, np.arange(size, starts[-1], size), side="right") - 1
    bounds = np.unique(np.concatenate(([0], inner, [starts.size - 1]))).tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def segment_counts(segments: pa.Array, lengths: np.ndarray, starts: np.ndarray, counted: np.ndarray) -> Segments:
    """:class:`Segments` of all rows, as arrays, from the flat segments of all rows (rows begin at ``starts``, the
    length last; ``lengths``: characters of each segment), counting only where ``counted``, which must agree for
    equal segments.

    A segment repeats when its (row, dictionary id) pair was seen before in the row; the pairs are numbered in order
    of first appearance, so "seen before" is a running maximum, as for n-grams.
    """
    repeated = np.zeros(lengths.size, dtype=bool)
    for first_row, end_row in row_pieces(starts, SEGMENT_PIECE):
        start, end = starts[first_row], starts[end_row]
        ids = numpy(pc.dictionary_encode(segments.slice(start, end - start)).indices)
        codes, _ = pd.factorize(owners(starts[first_row : end_row + 1] - start) * (int(ids.max(initial=0)) + 1) + ids)
        repeated[start:end] = ~first_occurrences(codes)
    repeated &= counted
    return Segments(
        count=row_sums(counted, starts),
        chars=row_sums(lengths * counted, starts),
        repeated=row_sums(repeated, starts),
        repeated_chars=row_sums(lengths * repeated, starts),
    )


def row_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each row of a flat array whose rows begin at ``starts`` (its length last), as integers;
    without a running total as long as ``values`` (``reduceat`` would give an empty row its next element)."""
    sums = np.zeros(starts.size - 1, dtype=np.int64)
    nonempty = starts[1:] > starts[:-1]
    sums[nonempty] = np.add.reduceat(values, starts[:-1][nonempty], dtype=np.int64)
    return sums


def split_words(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The words of every text (stripped: then only an empty text splits into an empty string) as ``str.split()``
    finds them: (word ids, word lengths, where each text's words begin, their number last). Equal words of a text
    get equal ids (its index in a dictionary of the words of a piece of the batch); the ids of different texts are
    not comparable.

    Arrow's ASCII split is several times faster than its Unicode one; the few texts with other whitespace have it
    replaced by spaces first (found by a regex, which scans quickly).
    """
    other = pc.match_substring_regex(texts, _OTHER_WHITESPACE_RE2)
    if pc.any(other).as_py():
        spaced = pc.replace_substring_regex(texts.filter(other), _OTHER_WHITESPACE_RE2, " ")
        texts = pc.replace_with_mask(texts, other, spaced)
    words = pc.ascii_split_whitespace(texts)
    flat = words.flatten()
    starts = starts_of(words)
    lengths = numpy(pc.utf8_length(flat))
    ids = np.zeros(lengths.size, dtype=np.int32)
    for first_row, end_row in row_pieces(starts, WORD_PIECE):
        start, end = starts[first_row], starts[end_row]
        ids[start:end] = numpy(pc.dictionary_encode(flat.slice(start, end - start)).indices)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        ids, lengths, starts = np.delete(ids, empty), np.delete(lengths, empty), starts - np.searchsorted(empty, starts)
    return ids, lengths, starts


class Repeats(NamedTuple):
    """The n-grams of one size that occur more than once in their document, for the documents it ``covers`` (a mask
    of rows): ``positions`` of their occurrences (ascending, in the flat words), ``codes`` (numbered from 0 in order
    of first sight; equal exactly when the n-grams and the documents are) and ``first`` (where each code first
    occurs)."""

    positions: np.ndarray
    codes: np.ndarray
    first: np.ndarray
    covers: np.ndarray


class BatchNGrams:
    """The word n-grams of all documents of a batch, for the n-gram share units; the batch counterpart of
    :class:`~spark_jobs.filters.base.WordNGrams`, with the same definitions and results, one per document.

    Those units only look at n-grams that occur more than once in a document, so only those are numbered: an
    n-gram can repeat only where the two (n-1)-grams it consists of (at its position and the next) both repeat,
    so each size numbers the pairs of adjacent repeated (n-1)-grams, fewer at each size. Keys include the document,
    and ``pandas.factorize`` numbers them in order of first sight, so a document's n-gram codes are consecutive and
    the smallest is the one it saw first (its tie-breaker). Each size is numbered once, for the documents first
    asked about (the units ask about fewer at each size: those that no smaller size decided), and again only if a
    later question is about others.
    """

    def __init__(self, word_ids: np.ndarray, word_lengths: np.ndarray, starts: np.ndarray) -> None:
        self.starts = starts
        self.rows = starts.size - 1
        self._ids = word_ids
        self._owner = owners(starts)
        self._length_prefix = np.concatenate(([0], np.cumsum(word_lengths)))
        self._repeats: dict[int, Repeats] = {}

    @property
    def word_count(self) -> np.ndarray:
        return np.diff(self.starts)

    def repeats(self, n: int, rows: np.ndarray) -> Repeats:
        """The n-grams (n >= 2) that occur more than once in their document, for (at least) the documents ``rows``."""
        known = self._repeats.get(n)
        if known is not None and known.covers[rows].all():
            return known
        covers = np.zeros(self.rows, dtype=bool)
        covers[rows] = True
        kept_positions, kept_codes, numbered = [], [], 0
        for positions, keys in self._candidates(n, rows, covers):
            codes, uniques = pd.factorize(keys)
            counts = np.bincount(codes, minlength=uniques.size)
            repeated = counts[codes] > 1
            kept_positions.append(positions[repeated])
            kept_codes.append((np.cumsum(counts > 1) - 1 + numbered)[codes[repeated]])
            numbered += np.count_nonzero(counts > 1)
        positions = np.concatenate([np.zeros(0, dtype=np.int64), *kept_positions])
        codes = np.concatenate([np.zeros(0, dtype=np.int64), *kept_codes])
        self._repeats[n] = Repeats(positions, codes, positions[first_occurrences(codes)], covers)
        return self._repeats[n]

    def _candidates(self, n: int, rows: np.ndarray, covers: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The positions of the n-grams of the ``covers`` documents that may repeat, and a key for each that is
        equal exactly for equal n-grams of a document, piece by piece of whole documents (:func:`row_pieces`):
        numbered a piece at a time, keys and codes stay in the CPU cache."""
        if n == 2:
            for first_row, end_row in row_pieces(self.starts, WORD_PIECE):
                start, end = self.starts[first_row], self.starts[end_row]
                owner, ids = self._owner[start:end], self._ids[start:end]
                at = np.flatnonzero((owner[1:] == owner[:-1]) & covers[owner[:-1]])
                base = int(ids.max(initial=0)) + 1
                words = (owner - first_row) * base + ids  # unique per document
                if (end_row - first_row) * base * base >= 2**63:  # keep the pair keys within int64
                    words, _ = pd.factorize(words)
                yield at + start, words[at] * base + ids[at + 1]
            return
        shorter = self.repeats(n - 1, rows)
        wanted = covers[self._owner[shorter.positions]]
        before, codes = shorter.positions[wanted], shorter.codes[wanted]
        starts = np.searchsorted(self._owner[before], np.arange(self.rows + 1))
        for first_row, end_row in row_pieces(starts, WORD_PIECE):
            start, end = starts[first_row], starts[end_row]
            at, piece = before[start:end], codes[start:end]
            pairs = np.flatnonzero((at[1:] == at[:-1] + 1) & (self._owner[at[1:]] == self._owner[at[:-1]]))
            yield at[pairs], piece[pairs] * (int(piece.max(initial=0)) + 1) + piece[pairs + 1]

    def top_ngram_chars(self, n: int, rows: np.ndarray) -> np.ndarray:
        """For each of ``rows``, its :meth:`~spark_jobs.filters.base.WordNGrams.top_ngram_chars`: all occurrences of
        its most frequent n-gram (ties to the one seen first), joined with single spaces; 0 when no n-gram repeats."""
        _, codes, first, _ = self.repeats(n, rows)
        top_chars = np.zeros(self.rows, dtype=np.int64)
        if codes.size:
            counts = np.bincount(codes)
            owner = self._owner[first]  # of each code, ascending
            new_owner = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
            most = np.maximum.reduceat(counts, new_owner)
            top = np.flatnonzero(counts == np.repeat(most, np.diff(np.append(new_owner, counts.size))))
            top = top[np.concatenate(([True], owner[top][1:] != owner[top][:-1]))]  # the first one of a document
            start = first[top]
            chars = self._length_prefix[start + n] - self._length_prefix[start] + n - 1
            top_chars[owner[top]] = counts[top] * chars
        return top_chars[rows]

    def repeat_coverage_chars(self, n: int, rows: np.ndarray) -> np.ndarray:
        """For each of ``rows``, its :meth:`~spark_jobs.filters.base.WordNGrams.repeat_coverage_chars`: characters of
        the words in some repeated n-gram (any occurrence after the first), a bound of its duplicate n-gram characters.

        The occurrences are spans of n words at ascending positions, so spans that overlap follow each other, and
        each run of them covers the words from its first start to its last start + n.
        """
        positions, codes, first, _ = self.repeats(n, rows)
        starts = positions[first[codes] < positions]
        runs_first = np.ones(starts.size, dtype=bool)
        runs_first[1:] = starts[1:] >= starts[:-1] + n  # a gap (or another document) before it
        runs_last = np.ones(starts.size, dtype=bool)
        runs_last[:-1] = runs_first[1:]
        chars = self._length_prefix[starts[runs_last] + n] - self._length_prefix[starts[runs_first]]
        owner = self._owner[starts[runs_first]]
        return np.bincount(owner, weights=chars, minlength=self.rows).astype(np.int64)[rows]

    def duplicate_ngram_chars(self, n: int, rows: np.ndarray) -> np.ndarray:
        """For each of ``rows``, its :meth:`~spark_jobs.filters.base.WordNGrams.duplicate_ngram_chars` (Gopher's scan
        with jumps, which is sequential: one Python loop over the repeated positions of all these documents)."""
        positions, codes, first, _ = self.repeats(n, rows)
        first_of = first[codes]
        wanted = np.zeros(self.rows, dtype=bool)
        wanted[rows] = True
        repeats = np.flatnonzero((first_of < positions) & wanted[self._owner[positions]])
        at = positions[repeats]
        chars = self._length_prefix[at + n] - self._length_prefix[at]
        totals = [0] * self.rows
        skipped = bytearray(self._ids.size + n)  # Python reads and writes single bytes faster than numpy elements
        jump = b"\x01" * (n - 1)
        remembered: set[int] = set()  # codes are unique across documents, so one set serves all
        resume_at = 0
        for i, code, first_i, count, row in zip(
            at.tolist(),
            codes[repeats].tolist(),
            first_of[repeats].tolist(),
            chars.tolist(),
            self._owner[at].tolist(),
            strict=True,
        ):
            if i < resume_at:
                continue
            if not skipped[first_i] or code in remembered:
                totals[row] += count
                skipped[i + 1 : i + n] = jump
                resume_at = i + n
            else:
                remembered.add(code)
        return np.array(totals, dtype=np.int64)[rows]
