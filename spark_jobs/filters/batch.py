"""Measuring a whole Arrow batch at once: the line lengths, segment counts and word n-gram ids the units read.

Splitting a text into lines, hashing them and numbering its n-grams one document at a time in Python costs more
than all the rules together. Here Arrow's C++ kernels split the texts of a batch into one flat array, Arrow and
pandas hash it piece by piece, numpy counts per document, and each document's
:class:`~spark_jobs.filters.base.DocView` is handed its share: exactly the numbers it would compute from its own text
(``tests/test_filters_batch.py`` compares the two on awkward inputs).
Arrow's Unicode whitespace (``utf8_is_space``, ``utf8_trim_whitespace``, ``utf8_split_whitespace``) is Python's
``str.isspace``, and ``utf8_length`` counts code points like ``len``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.filters.base import PARAGRAPH_BREAK, DocView, Segments, WordNGrams, first_occurrences

WORD_PIECE = 1 << 15
SEGMENT_PIECE = 1 << 13
"""Words and segments (lines, paragraphs) hashed at a time (:func:`row_pieces`): what the CPU cache holds well."""


def doc_views(texts: pa.Array, is_code: np.ndarray, ngram_sizes: int) -> list[DocView]:
    """A :class:`DocView` per text (a null text is empty) holding the measures its kind's units read: line lengths
    for every text, non-blank line counts for code, and for prose non-empty line and paragraph counts and its word
    n-grams, numbered up to ``ngram_sizes`` words."""
    texts = texts.fill_null("")
    lines = pc.split_pattern(texts, "\n")
    line_starts = starts_of(lines)
    flat_lines = lines.flatten()
    line_lengths = numpy(pc.utf8_length(flat_lines))
    # Code counts its non-blank lines, prose its non-empty ones: one mask serves both, each document has one kind.
    blank = np.repeat(is_code, np.diff(line_starts)) & numpy(pc.utf8_is_space(flat_lines))
    line_segments = segment_counts(flat_lines, line_lengths, line_starts, (line_lengths > 0) & ~blank)

    prose = texts.filter(pa.array(~is_code))
    paragraphs = pc.split_pattern_regex(pc.utf8_trim_whitespace(prose), PARAGRAPH_BREAK.pattern)
    flat_paragraphs = paragraphs.flatten()
    paragraph_lengths = numpy(pc.utf8_length(flat_paragraphs))
    paragraph_starts = starts_of(paragraphs)
    counted = np.ones(paragraph_lengths.size, dtype=bool)
    paragraph_segments = segment_counts(flat_paragraphs, paragraph_lengths, paragraph_starts, counted)
    prose_measures = zip(paragraph_segments, batch_word_ngrams(prose, ngram_sizes), strict=True)

    bounds = line_starts.tolist()
    views = []
    for row, (text, code) in enumerate(zip(texts.to_pylist(), is_code.tolist(), strict=True)):
        measured: dict[str, object] = {"line_lengths": line_lengths[bounds[row] : bounds[row + 1]]}
        if code:
            measured["nonblank_line_segments"] = line_segments[row]
        else:
            measured["nonempty_line_segments"] = line_segments[row]
            measured["paragraph_segments"], measured["ngrams"] = next(prose_measures)
        views.append(DocView(text, **measured))
    return views


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


def segment_counts(segments: pa.Array, lengths: np.ndarray, starts: np.ndarray, counted: np.ndarray) -> list[Segments]:
    """:class:`Segments` of each row from the flat segments of all rows (rows begin at ``starts``, the length last;
    ``lengths``: characters of each segment), counting only where ``counted``, which must agree for equal segments.

    A segment repeats when its (row, dictionary id) pair was seen before in the row; the pairs are numbered in order
    of first appearance, so "seen before" is a running maximum, as for n-grams.
    """
    out: list[Segments] = []
    for first_row, end_row in row_pieces(starts, SEGMENT_PIECE):
        start, end = starts[first_row], starts[end_row]
        piece_starts = starts[first_row : end_row + 1] - start
        ids = numpy(pc.dictionary_encode(segments.slice(start, end - start)).indices)
        codes, _ = pd.factorize(owners(piece_starts) * (int(ids.max(initial=0)) + 1) + ids)
        kept, chars = counted[start:end], lengths[start:end]
        repeated = ~first_occurrences(codes) & kept
        sums = [row_sums(column, piece_starts).tolist() for column in (kept, chars * kept, repeated, chars * repeated)]
        out.extend(Segments(*row) for row in zip(*sums, strict=True))
    return out


def row_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each row of a flat array whose rows begin at ``starts`` (its length last)."""
    totals = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return totals[starts[1:]] - totals[starts[:-1]]


def batch_word_ngrams(texts: pa.Array, sizes: int) -> list[WordNGrams]:
    """:class:`WordNGrams` for every text of a batch, its words split and numbered, and its n-grams of up to
    ``sizes`` words numbered (:func:`ngram_groups`), by Arrow and numpy for many texts at once.

    Splits like ``str.split()`` (trim, then split on runs of Unicode whitespace); a word's id is its index in the
    batch's dictionary of words.
    """
    words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(texts.fill_null("")))
    flat = words.flatten()
    lengths = numpy(pc.utf8_length(flat))
    ids = numpy(pc.dictionary_encode(flat).indices).astype(np.int64)
    is_word = lengths > 0  # Arrow splits an empty text into one empty word
    ids, lengths, owner = ids[is_word], lengths[is_word], owners(starts_of(words))[is_word]
    starts = np.concatenate(([0], np.cumsum(np.bincount(owner, minlength=len(texts)))))
    numbered: list[tuple[dict[int, tuple[np.ndarray, np.ndarray]], int | None]] = []
    for first_row, end_row in row_pieces(starts, WORD_PIECE):
        start, end = starts[first_row], starts[end_row]
        numbered.extend(ngram_groups(ids[start:end], starts[first_row : end_row + 1] - start, sizes))
    bounds = starts.tolist()
    return [
        WordNGrams(ids[bounds[row] : bounds[row + 1]], lengths[bounds[row] : bounds[row + 1]], groups, repeat_free_from)
        for row, (groups, repeat_free_from) in enumerate(numbered)
    ]


def ngram_groups(
    ids: np.ndarray, starts: np.ndarray, sizes: int
) -> list[tuple[dict[int, tuple[np.ndarray, np.ndarray]], int | None]]:
    """For each row of a flat array of word ids whose rows begin at ``starts`` (its length last): its
    :meth:`WordNGrams.groups` for n = 2 .. ``sizes``, and the size from which it has no repeated n-gram, if any.

    Numbered as :meth:`WordNGrams.groups` does, level by level, but for all rows at once, with keys that include the
    row: so the ids of one row form a run of consecutive integers in order of first sight, and minus the first of
    them are the ids the row would give itself. The n-grams that run past the end of a row are numbered too (simpler
    than cutting them out), but only after the row's own, so they change none of its ids and are left out of what it
    is handed. Like :meth:`WordNGrams.groups`, a row stops at the first size where it has no repeated n-gram.
    """
    rows = starts.size - 1
    groups: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in range(rows)]
    repeat_free_from: list[int | None] = [None] * rows
    open_rows = list(range(rows))  # rows that had a repeated n-gram at every size so far
    row_starts = starts[:-1].tolist()
    base = int(ids.max(initial=0)) + 1
    codes = owners(starts) * base + ids  # for n = 1: word ids unique per row
    if rows * base * base >= 2**63:  # keep the n = 2 keys within int64
        codes, _ = pd.factorize(codes)
    for n in range(2, sizes + 1):
        codes, _ = pd.factorize(codes[:-1] * base + ids[n - 1 :])
        first = np.flatnonzero(first_occurrences(codes))
        spans = np.diff(np.minimum(starts, codes.size))  # each row's n-grams, with those past its end
        in_codes = spans > 0
        local_codes = codes - np.repeat(codes[starts[:-1][in_codes]], spans[in_codes])
        row_firsts = np.searchsorted(first, starts)  # where each row's first occurrences begin in ``first``
        local_first = first - np.repeat(starts[:-1], np.diff(row_firsts))
        ends = np.maximum(starts[1:] - (n - 1), starts[:-1])  # end of each row's own n-grams
        first_starts, first_ends = row_firsts[:-1].tolist(), np.searchsorted(first, ends).tolist()
        ends = ends.tolist()
        still_open = []
        for row in open_rows:
            row_codes = local_codes[row_starts[row] : ends[row]]
            row_first = local_first[first_starts[row] : first_ends[row]]
            groups[row][n] = (row_codes, row_first)
            if row_first.size == row_codes.size:
                repeat_free_from[row] = n
            else:
                still_open.append(row)
        open_rows = still_open
    return list(zip(groups, repeat_free_from, strict=True))
