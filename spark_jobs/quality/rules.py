"""The quality rules of Gopher, C4 and FineWeb as small named units, each measuring a whole Arrow batch at once.

A unit has a ``name`` (``gopher_min_words``, ``c4_min_sentences``, ``fineweb_line_punct_frac``), a comparison and a
threshold, and measures one number per document with numpy over a :class:`BatchText`: the batch split once into
lines and words by Arrow's C++ kernels (the filter stage's definitions and helpers, :mod:`spark_jobs.filters.batch`),
shared by every unit. A unit fires where ``measure <comparison> threshold``, and
its rule reads ``"<name>: <measured value> <comparison> <threshold>"``.

Definitions (shared by all units):

* lines split on ``\\n``; Gopher's line shares count the non-empty ones (its split on ``\\n+``), C4 and FineWeb
  count all of them, as their implementations do;
* words are whitespace-separated tokens (``str.split()``) that are not only ASCII punctuation (a lone ``-`` or
  ``...`` is not a word), standing in for the NLTK tokens datatrove uses;
* a ratio "per word" or "per line" divides by at least 1, so an empty text measures 0 there (the word count rule
  removes it first);
* case-insensitive matches ("lorem ipsum", "javascript", the stop words) mean: found in ``text.lower()``.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable
from functools import cached_property
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.filters.base import format_value
from spark_jobs.filters.batch import BatchLines, numpy, owners, row_sums, segment_counts, starts_of

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's stop words: a document needs a few of them to be English prose at all."""

BULLETS = "•‣◦⁃●○▪■*-"
"""What a bullet-point line starts with (after indentation): typographic bullets and Markdown's ``*`` and ``-``."""

ELLIPSES = ("...", "…")
"""An ellipsis, typed or as one character (U+2026, the UTF-8 bytes E2 80 A6)."""

C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
"""C4 keeps a line that ends in one of these (and not in ``...``)."""

C4_CITATION = r"\[[0-9]*\]|\[edit\]|\[citation needed\]"
"""Wikipedia-style citations, removed from a line before C4 looks at its last character."""

C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
"""C4 drops the lines of cookie banners and legal footers that mention these."""

C4_SENTENCE_END = r"[.?!]+[\"']*(?:[ \t]|$)"
"""Where a sentence ends inside a C4-kept line: ``.``, ``?`` or ``!`` (closing quotes allowed) before a space, a tab
or the end of the line. Stands in for NLTK's Punkt splitter, which C4 used; every kept line counts one sentence at
least."""

FINEWEB_END_PUNCTUATION = (".", "'", '"', "!", "?")

_COMPARE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def lower_pattern(phrase: str) -> str:
    """A regex that finds ``phrase`` (lower-case ASCII) where ``text.lower()`` would: each letter matches both cases,
    ``k`` also the Kelvin sign (the only other character that Python lower-cases to an ASCII letter, besides ``İ``,
    which becomes two characters)."""
    parts = []
    for char in phrase:
        if char == "k":
            parts.append("[kK\u212a]")
        elif char.isalpha():
            parts.append(f"[{char}{char.upper()}]")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def ends_with_any(strings: pa.Array, suffixes: tuple[str, ...]) -> np.ndarray:
    """Whether each string ends with one of ``suffixes``, compared as UTF-8 bytes in numpy (a string's bytes end
    with a whole character, so a byte match is a character match)."""
    return _affix_any(strings, suffixes, at_end=True)


def starts_with_any(strings: pa.Array, prefixes: tuple[str, ...]) -> np.ndarray:
    """Whether each string starts with one of ``prefixes`` (UTF-8 bytes compared in numpy)."""
    return _affix_any(strings, prefixes, at_end=False)


def _affix_any(strings: pa.Array, affixes: tuple[str, ...], at_end: bool) -> np.ndarray:
    data, starts = byte_view(strings)
    sizes = np.diff(starts)
    found = np.zeros(len(strings), dtype=bool)
    for affix in (a.encode() for a in affixes):
        long_enough = np.flatnonzero(sizes >= len(affix))
        first = (starts[1:][long_enough] - len(affix)) if at_end else starts[:-1][long_enough]
        match = np.ones(long_enough.size, dtype=bool)
        for index, byte in enumerate(affix):
            match &= data[first + index] == byte
        found[long_enough[match]] = True
    return found


def per(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``counts / totals``, dividing by at least 1."""
    return counts / np.maximum(totals, 1)


def byte_view(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's UTF-8 bytes up to its last string's end, and where each string begins in them (its end
    last), without a copy (a sliced array's first string may begin after 0)."""
    _, offsets, data = strings.buffers()
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    starts = np.frombuffer(offsets, dtype=width)[strings.offset : strings.offset + len(strings) + 1]
    if data is None:
        return np.zeros(0, dtype=np.uint8), starts
    return np.frombuffer(data, dtype=np.uint8)[: starts[-1]], starts


def byte_counts(strings: pa.Array, wanted: int | np.ndarray) -> np.ndarray:
    """How many bytes of each string are ``wanted`` (one byte, or a class as 256 booleans), counted in numpy from
    their positions (quick when they are few)."""
    data, starts = byte_view(strings)
    hits = data == wanted if isinstance(wanted, int) else wanted[data]
    return np.diff(np.searchsorted(np.flatnonzero(hits), starts))


def byte_class(chars: str) -> np.ndarray:
    wanted = np.zeros(256, dtype=bool)
    wanted[[ord(c) for c in chars]] = True
    return wanted


ASCII_PUNCTUATION = byte_class(string.punctuation)
ASCII_LETTERS = byte_class(string.ascii_letters)
NON_ASCII = np.arange(256) >= 128


def ellipsis_counts(texts: pa.Array) -> np.ndarray:
    """``text.count("...") + text.count("…")`` for each text, from the positions of its dots and ``…`` (U+2026,
    the bytes E2 80 A6): a run of k dots holds k // 3 non-overlapping ``...``."""
    data, starts = byte_view(texts)
    dots = np.flatnonzero(data == ord("."))
    dots = dots[dots >= starts[0]]
    owner = np.searchsorted(starts, dots, side="right") - 1
    begins = np.ones(dots.size, dtype=bool)  # a run begins after a gap or in another text
    begins[1:] = (np.diff(dots) > 1) | (np.diff(owner) > 0)
    first = np.flatnonzero(begins)
    run_lengths = np.diff(np.append(first, dots.size))
    counts = np.bincount(owner[first], weights=run_lengths // 3, minlength=len(texts)).astype(np.int64)
    leads = np.flatnonzero(data[:-2] == 0xE2) if data.size >= 3 else np.zeros(0, dtype=np.int64)
    marks = leads[(data[leads + 1] == 0x80) & (data[leads + 2] == 0xA6)]  # before the first string: not counted
    return counts + np.diff(np.searchsorted(marks, starts))


class BatchText(BatchLines):
    """The prose texts of a batch, split into lines and each line into whitespace tokens once (Arrow), with
    per-document counts (numpy). A text's words are its lines' tokens: ``\n`` is whitespace to ``str.split``."""

    # Lines.
    @cached_property
    def nonempty_lines(self) -> np.ndarray:
        return self.line_lengths > 0

    @cached_property
    def nonempty_line_count(self) -> np.ndarray:
        return self.per_line(self.nonempty_lines)

    def per_line(self, mask: np.ndarray) -> np.ndarray:
        """How many lines of each text ``mask`` holds (a boolean per flat line)."""
        return row_sums(mask, self.line_starts)

    # Tokens (whitespace-separated, per line) and words (the tokens that are not only punctuation).
    @cached_property
    def _line_tokens(self) -> pa.ListArray:
        return pc.utf8_split_whitespace(self.lines)

    @cached_property
    def tokens(self) -> pa.Array:
        """Every token of every line, one flat array (Arrow also gives empty ones around leading and trailing
        whitespace; :attr:`token_lengths` is 0 there)."""
        return self._line_tokens.flatten()

    @cached_property
    def token_starts(self) -> np.ndarray:
        """Where each line's tokens begin in :attr:`tokens` (their end last)."""
        return starts_of(self._line_tokens)

    @cached_property
    def token_lengths(self) -> np.ndarray:
        return numpy(pc.utf8_length(self.tokens))

    @cached_property
    def _token_punctuation(self) -> np.ndarray:
        return byte_counts(self.tokens, ASCII_PUNCTUATION)

    @cached_property
    def _token_bytes(self) -> np.ndarray:
        return np.diff(byte_view(self.tokens)[1])

    @cached_property
    def _word_mask(self) -> np.ndarray:
        return (self.token_lengths > 0) & (self._token_punctuation < self._token_bytes)

    @cached_property
    def word_letters(self) -> np.ndarray:
        """ASCII letters in each word: its bytes less the others (fewer to find in most text)."""
        return (self._token_bytes - byte_counts(self.tokens, ~ASCII_LETTERS))[self._word_mask]

    @cached_property
    def word_non_ascii(self) -> np.ndarray:
        """Whether each word holds a character outside ASCII."""
        return (byte_counts(self.tokens, NON_ASCII) > 0)[self._word_mask]

    @cached_property
    def word_only_letters_in_punctuation(self) -> np.ndarray:
        """Whether each word is ASCII letters with ASCII punctuation around or among them, nothing else."""
        mask = self._word_mask
        return self.word_letters + self._token_punctuation[mask] == self._token_bytes[mask]

    @cached_property
    def _word_positions(self) -> np.ndarray:
        return np.flatnonzero(self._word_mask)

    def words(self, picked: np.ndarray) -> pa.Array:
        """The words of the flat word numbers ``picked`` (the words of all texts are numbered in order, and
        :attr:`word_owner` says whose each is), taken from the tokens only when asked: most units need numbers."""
        return self.tokens.take(pa.array(self._word_positions[picked]))

    @cached_property
    def word_owner(self) -> np.ndarray:
        return owners(self.line_starts)[owners(self.token_starts)][self._word_mask]

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return self.token_lengths[self._word_mask]

    @cached_property
    def word_count(self) -> np.ndarray:
        return self.per_word(np.ones(self.word_owner.size, dtype=np.int64))

    def per_word(self, values: np.ndarray) -> np.ndarray:
        """The sum of ``values`` (one per flat word) over each text's words."""
        return np.bincount(self.word_owner, weights=values, minlength=self.size).astype(values.dtype)

    def count(self, pattern: str) -> np.ndarray:
        """Non-overlapping matches of the regex ``pattern`` in each text."""
        return numpy(pc.count_substring_regex(self.texts, pattern))


def has_letter(batch: BatchText) -> np.ndarray:
    """Whether each word holds a character with ``str.isalpha()``: one with an ASCII letter does; the few
    non-ASCII words without one are judged by Python (Arrow's and Python's Unicode tables differ in version)."""
    found = batch.word_letters > 0
    rest = np.flatnonzero(~found & batch.word_non_ascii)
    if rest.size:
        found[rest] = [any(c.isalpha() for c in word) for word in batch.words(rest).to_pylist()]
    return found


class QualityUnit:
    """One rule: fires where ``measure(batch) <comparison> threshold``."""

    name: ClassVar[str]
    comparison: ClassVar[str]

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def measure(self, batch: BatchText) -> np.ndarray:
        raise NotImplementedError

    def fires(self, values: np.ndarray) -> np.ndarray:
        return _COMPARE[self.comparison](values, self.threshold)

    def rule(self, value: float | int) -> str:
        return f"{self.name}: {format_value(value)} {self.comparison} {self.threshold}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threshold})"


# Gopher (Rae et al. 2021, appendix A).


class GopherMinWords(QualityUnit):
    name, comparison = "gopher_min_words", "<"

    def measure(self, batch: BatchText) -> np.ndarray:
        return batch.word_count


class GopherMaxWords(GopherMinWords):
    name, comparison = "gopher_max_words", ">"


class GopherMinMeanWordChars(QualityUnit):
    name, comparison = "gopher_min_mean_word_chars", "<"

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(batch.per_word(batch.word_lengths), batch.word_count)


class GopherMaxMeanWordChars(GopherMinMeanWordChars):
    name, comparison = "gopher_max_mean_word_chars", ">"


class GopherHashWordRatio(QualityUnit):
    """Hash signs per word: tag clouds and hashtag spam."""

    name, comparison = "gopher_hash_word_ratio", ">"

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(byte_counts(batch.texts, ord("#")), batch.word_count)


class GopherEllipsisWordRatio(QualityUnit):
    """Ellipses (``...`` or ``…``) per word: truncated previews and teasers."""

    name, comparison = "gopher_ellipsis_word_ratio", ">"

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(ellipsis_counts(batch.texts), batch.word_count)


class GopherBulletLineFrac(QualityUnit):
    """Share of non-empty lines that start with a bullet point (after indentation): link lists, menus."""

    name, comparison = "gopher_bullet_line_frac", ">"

    def measure(self, batch: BatchText) -> np.ndarray:
        bullet = starts_with_any(pc.utf8_ltrim_whitespace(batch.lines), tuple(BULLETS))
        return per(batch.per_line(bullet), batch.nonempty_line_count)


class GopherEllipsisLineFrac(QualityUnit):
    """Share of non-empty lines that end with an ellipsis (trailing whitespace aside): lists of truncated teasers."""

    name, comparison = "gopher_ellipsis_line_frac", ">"

    def measure(self, batch: BatchText) -> np.ndarray:
        ends = ends_with_any(pc.utf8_rtrim_whitespace(batch.lines), ELLIPSES)
        return per(batch.per_line(ends), batch.nonempty_line_count)


class GopherAlphaWordFrac(QualityUnit):
    """Share of words with at least one letter: tables of numbers, symbol soup."""

    name, comparison = "gopher_alpha_word_frac", "<"

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(batch.per_word(has_letter(batch).astype(np.int64)), batch.word_count)


class GopherStopWords(QualityUnit):
    """Occurrences of the stop words (lower-cased, surrounding ASCII punctuation stripped): prose has several."""

    name, comparison = "gopher_stop_words", "<"

    def __init__(self, threshold: int, stop_words: tuple[str, ...] = STOP_WORDS) -> None:
        super().__init__(threshold)
        self.stop_words = stop_words

    def measure(self, batch: BatchText) -> np.ndarray:
        """Looked up only among the words that can be one: of a stop word's number of letters, and nothing but
        letters and punctuation (when the stop words are ASCII letters, as Gopher's)."""
        letters = batch.word_letters
        candidates = np.ones(letters.size, dtype=bool)
        if all(word.isascii() and word.isalpha() for word in self.stop_words):
            sizes = [len(word) for word in self.stop_words]
            candidates = (letters >= min(sizes)) & (letters <= max(sizes)) & batch.word_only_letters_in_punctuation
        picked = np.flatnonzero(candidates)
        bare = pc.utf8_trim(pc.ascii_lower(batch.words(picked)), string.punctuation)
        found = np.zeros(letters.size, dtype=np.int64)
        found[picked] = numpy(pc.is_in(bare, pa.array(self.stop_words, type=pa.string())))
        return batch.per_word(found)


# C4 (Raffel et al. 2020), the rules that drop a whole page.


class C4LoremIpsum(QualityUnit):
    """Placeholder text: C4 drops any page containing "lorem ipsum" (case-insensitive)."""

    name, comparison = "c4_lorem_ipsum", ">"

    def __init__(self) -> None:
        super().__init__(0)

    def measure(self, batch: BatchText) -> np.ndarray:
        return batch.count(lower_pattern("lorem ipsum"))


class C4CurlyBracket(QualityUnit):
    """Code or templates in a text: C4 drops any page containing ``{``."""

    name, comparison = "c4_curly_bracket", ">"

    def __init__(self) -> None:
        super().__init__(0)

    def measure(self, batch: BatchText) -> np.ndarray:
        return byte_counts(batch.texts, ord("{"))


class C4MinSentences(QualityUnit):
    """C4 drops a page with fewer than ``threshold`` sentences in the lines it keeps.

    A line is kept (C4's line rules, as datatrove's ``C4QualityFilter`` applies them): stripped, no word longer than
    ``max_word_chars``; with citations removed, it ends in terminal punctuation and not in ``...``; it has at least
    ``min_line_words`` words; it mentions neither "javascript" nor a cookie or legal phrase (:data:`C4_POLICY`).
    Sentences are counted as :data:`C4_SENTENCE_END` says.
    """

    name, comparison = "c4_min_sentences", "<"

    def __init__(self, threshold: int, min_line_words: int, max_word_chars: int) -> None:
        super().__init__(threshold)
        self.min_line_words = min_line_words
        self.max_word_chars = max_word_chars

    def measure(self, batch: BatchText) -> np.ndarray:
        words = row_sums(batch.token_lengths > 0, batch.token_starts)
        long_word = row_sums(batch.token_lengths > self.max_word_chars, batch.token_starts) > 0
        line = pc.utf8_trim_whitespace(batch.lines)
        cited = np.flatnonzero(byte_counts(line, ord("[")) > 0)  # only these can hold a citation
        if cited.size:
            mask = np.zeros(len(line), dtype=bool)
            mask[cited] = True
            uncited = pc.replace_substring_regex(line.take(pa.array(cited)), C4_CITATION, "")
            line = pc.replace_with_mask(line, pa.array(mask), uncited)
        terminal = ends_with_any(line, C4_END_PUNCTUATION) & ~ends_with_any(line, ("...",))
        candidates = np.flatnonzero(~long_word & terminal & (words >= self.min_line_words))
        line = line.take(pa.array(candidates))
        banned = "|".join(lower_pattern(phrase) for phrase in ("javascript", *C4_POLICY))
        kept = ~numpy(pc.match_substring_regex(line, banned))
        sentences = np.zeros(len(batch.lines), dtype=np.int64)
        sentences[candidates[kept]] = np.maximum(
            numpy(pc.count_substring_regex(line.filter(pa.array(kept)), C4_SENTENCE_END)), 1
        )
        return row_sums(sentences, batch.line_starts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threshold}, {self.min_line_words}, {self.max_word_chars})"


# FineWeb (Penedo et al. 2024), its own filters.


class FineWebLinePunctFrac(QualityUnit):
    """Share of lines ending in ``. ' " ! ?``: a page must not be mostly unpunctuated fragments."""

    name, comparison = "fineweb_line_punct_frac", "<="

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(batch.per_line(ends_with_any(batch.lines, FINEWEB_END_PUNCTUATION)), batch.line_count)


class FineWebShortLineFrac(QualityUnit):
    """Share of lines of at most ``short_line_chars`` characters: menus, navigation, lists of names."""

    name, comparison = "fineweb_short_line_frac", ">="

    def __init__(self, threshold: float, short_line_chars: int) -> None:
        super().__init__(threshold)
        self.short_line_chars = short_line_chars

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(batch.per_line(batch.line_lengths <= self.short_line_chars), batch.line_count)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threshold}, {self.short_line_chars})"


class FineWebDupLineCharFrac(QualityUnit):
    """Characters in non-blank lines that repeat an earlier line, per character of the text without newlines."""

    name, comparison = "fineweb_dup_line_char_frac", ">="

    def measure(self, batch: BatchText) -> np.ndarray:
        nonblank = batch.nonempty_lines & ~numpy(pc.utf8_is_space(batch.lines))
        repeated = segment_counts(batch.lines, batch.line_lengths, batch.line_starts, nonblank).repeated_chars
        return repeated / np.maximum(row_sums(batch.line_lengths, batch.line_starts), 1)


class FineWebNewlineWordRatio(QualityUnit):
    """Newlines per word: a list (one item per line) rather than running text."""

    name, comparison = "fineweb_newline_word_ratio", ">"

    def measure(self, batch: BatchText) -> np.ndarray:
        return per(batch.line_count - 1, batch.word_count)
