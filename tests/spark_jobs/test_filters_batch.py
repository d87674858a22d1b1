"""The filter chain's batch path (``spark_jobs.filters.batch``, the units' ``check_rows``) against the per-document
path (``DocView``, ``check``), on generated awkward texts (Unicode whitespace, CRLF, tabs, non-ASCII letters, nulls,
one huge line, heavy repetition): every measure the units read, every unit's rule and the chain's verdicts must be
the same; and the shortcuts (counting stopped early, bounds that skip exact measures, n-grams numbered only for the
rows asked about, pieces of a batch) must change nothing."""

from __future__ import annotations

import random
import re
import sys
from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.filters import REASON_TOO_SHORT, DocFilter, DocView, FilterChain
from spark_jobs.filters import batch as batch_module
from spark_jobs.filters.base import LowerBound, Segments
from spark_jobs.filters.batch import OTHER_WHITESPACE, DocBatch
from spark_jobs.filters.generated import MaxLineLength, MeanLineLength, MinAlnumFraction, alnum_chars
from spark_jobs.filters.length import CodeMinChars, CodeMinLines, LongestLines, MinLines, MinWords, non_whitespace_chars
from spark_jobs.filters.repetition import (
    CodeDuplicateLines,
    DuplicateLines,
    DuplicateNGramShare,
    DuplicateParagraphs,
    TopNGramShare,
)

CODE_POINTS = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
WHITESPACE = [c for c in CODE_POINTS if c.isspace()]
"""Python's whitespace: ASCII (``\\x1c``-``\\x1f`` included) and Unicode (``\\x85``, ``\\u3000``, ``\\u2028`` ...)."""
SYMBOLS = list("aZq09_-{}();=.,") + ["é", "ß", "д", "地", "ก", "\u0301", "😀", "٣", "²", "Ⅻ", "\ufeff", "\x00"]
NGRAM_SIZES = range(2, 11)


def awkward_texts(seed: int, count: int) -> list[str | None]:
    """Fixed edge cases, then random texts of few distinct words (so that lines, paragraphs and long n-grams
    repeat) joined by every kind of whitespace."""
    fixed = [
        "",
        None,
        " ",
        "\n",
        "\n\n\n",
        " \n \n\t\n",
        "\u3000",
        "\x85",
        "\u2028",
        "a\u2028b\n\nc\u3000d\x85e",
        "\r\n".join(["x = 1"] * 6),
        "\t\tx\n\t\n\tx\n\n\n",
        "x" * 5000,
        "y " * 3000,
        "same line\n" * 60,
        "para one\nstill one\n\npara two\n\n\n\npara one\nstill one\n\n" * 4,
        "地铁\n方便\n很好",
        "\x1c\x1d\x1e\x1f",
        "a\x1cb\x1dc\x1ed\x1ff",
        " ".join("a b c d e f g h i j k".split() * 20),
        "\n".join(["  ", "\u3000", "\xa0", "code()", "code()", "\t"] * 5),
    ]
    rng = random.Random(seed)
    texts: list[str | None] = list(fixed)
    for _ in range(count):
        vocab = ["".join(rng.choices(SYMBOLS, k=rng.randint(1, 4))) for _ in range(rng.randint(1, 6))]
        lines: list[str] = []
        for _ in range(rng.randint(0, 40)):
            roll = rng.random()
            if roll < 0.1:
                lines.append("")
            elif roll < 0.2:
                lines.append("".join(rng.choices(WHITESPACE, k=rng.randint(1, 3))))
            elif roll < 0.4 and lines:
                lines.append(rng.choice(lines))
            else:
                seps = [rng.choice([" ", " ", "\t", rng.choice(WHITESPACE)]) for _ in range(12)]
                words = rng.choices(vocab, k=rng.randint(1, 12))
                lines.append("".join(word + sep for word, sep in zip(words, seps, strict=False)))
        text = rng.choice(["\n", "\n", "\r\n", "\n\n"]).join(lines)
        texts.append(rng.choice(["", " ", "\n", "\u3000"]) + text + rng.choice(["", "\n", " \n"]))
    return texts


def batch_of(seed: int = 0, count: int = 250) -> tuple[list[str | None], list[str | None]]:
    texts = awkward_texts(seed, count)
    rng = random.Random(seed + 1)
    kinds = [rng.choice(["code", "text", "text", None]) for _ in texts]
    return texts, kinds


def batch_docs(texts: list[str | None]) -> DocBatch:
    return DocBatch(pa.array(texts, pa.string()))


def own_views(texts: list[str | None]) -> list[DocView]:
    return [DocView(text or "") for text in texts]


@pytest.fixture(params=["whole", "tiny pieces"])
def pieces(request, monkeypatch):
    """Run a test as batches are cut (pieces of thousands of words or lines) and with pieces of one or two rows."""
    if request.param == "tiny pieces":
        monkeypatch.setattr(batch_module, "WORD_PIECE", 7)
        monkeypatch.setattr(batch_module, "SEGMENT_PIECE", 3)


@pytest.mark.usefixtures("pieces")
def test_batch_measures_equal_the_documents_own():
    texts, _ = batch_of()
    docs, views = batch_docs(texts), own_views(texts)
    starts = docs.line_starts
    for row, (text, own) in enumerate(zip(texts, views, strict=True)):
        assert np.array_equal(docs.line_lengths[starts[row] : starts[row + 1]], own.line_lengths), text
        assert docs.line_count[row] == own.line_lengths.size
        assert docs.chars[row] == len(own.text)
        assert docs.longest_line[row] == own.line_lengths.max(initial=0)
        for name in ("nonempty_line_segments", "nonblank_line_segments", "paragraph_segments"):
            batch = getattr(docs, name)
            assert Segments(*(getattr(batch, f.name)[row] for f in fields(Segments))) == getattr(own, name)
        assert docs.word_count[row] == own.word_count, text
    everyone = np.arange(len(texts))
    for n in NGRAM_SIZES:
        ngrams = docs.ngrams
        assert ngrams.top_ngram_chars(n, everyone).tolist() == [v.ngrams.top_ngram_chars(n) for v in views]
        assert ngrams.duplicate_ngram_chars(n, everyone).tolist() == [v.ngrams.duplicate_ngram_chars(n) for v in views]
        assert ngrams.repeat_coverage_chars(n, everyone).tolist() == [v.ngrams.repeat_coverage_chars(n) for v in views]


@pytest.mark.usefixtures("pieces")
def test_ngram_measures_of_some_rows_equal_those_of_all():
    """N-grams are numbered only for the rows asked about: asking about fewer rows, then others, then all, in any
    order of sizes, must give each row its own numbers."""
    texts, _ = batch_of(seed=4)
    views = own_views(texts)
    rng = np.random.default_rng(4)
    docs = batch_docs(texts)
    for n in [2, 5, 3, 7, 10, 4, 6, 2, 9, 8, 10]:
        rows = np.sort(rng.choice(len(texts), size=rng.integers(0, len(texts)), replace=False))
        if rng.random() < 0.3:
            rows = np.arange(len(texts))
        ngrams = docs.ngrams
        assert ngrams.top_ngram_chars(n, rows).tolist() == [views[r].ngrams.top_ngram_chars(n) for r in rows]
        assert ngrams.duplicate_ngram_chars(n, rows).tolist() == [
            views[r].ngrams.duplicate_ngram_chars(n) for r in rows
        ]
        coverage = [views[r].ngrams.repeat_coverage_chars(n) for r in rows]
        assert ngrams.repeat_coverage_chars(n, rows).tolist() == coverage


def always_firing_units() -> list[DocFilter]:
    """Units at thresholds every document crosses, so that each reports its measured value."""
    big, never = 10**9, -1.0
    units = [MinLines(big), LongestLines(big, count=3), LongestLines(big, count=1), MinWords(big)]
    units += [LongestLines(1, count=0), LongestLines(big, count=10**6)]
    units += [unit(never, None) for unit in (DuplicateParagraphs, DuplicateLines, CodeDuplicateLines)]
    units += [unit(2.0, never) for unit in (DuplicateParagraphs, DuplicateLines, CodeDuplicateLines)]
    units += [share([(n, never)]) for share in (TopNGramShare, DuplicateNGramShare) for n in NGRAM_SIZES]
    units += [CodeMinLines(big), CodeMinChars(big), MaxLineLength(never), MeanLineLength(never), MinAlnumFraction(2.0)]
    return units


def units_around(views: list[DocView]) -> list[DocFilter]:
    """Units at thresholds at and just around values the documents measure, where a bound or a count that stops
    early could decide differently from the exact value."""
    rng = random.Random(9)

    def around(values: list[float], count: int = 4) -> list[float]:
        picked = rng.sample(sorted(set(values)), min(count, len(set(values))))
        return [float(t) for v in picked for t in (np.nextafter(v, -np.inf), v, np.nextafter(v, np.inf))]

    units: list[DocFilter] = []
    for bound in (MinLines(1), MinWords(1), CodeMinLines(1), CodeMinChars(1), MaxLineLength(1), MeanLineLength(1)):
        units += [type(bound)(t) for t in around([bound.measure(v) for v in views])]
    units += [LongestLines(t, count=k) for k in (1, 3) for t in around([v.kth_longest_line(k) for v in views])]
    shares = {}
    for n in NGRAM_SIZES:
        nonempty = [v for v in views if v.text]
        shares[n] = {
            "top": [v.ngrams.top_ngram_chars(n) / len(v.text) for v in nonempty],
            "dup": [v.ngrams.duplicate_ngram_chars(n) / len(v.text) for v in nonempty],
            "bound": [v.ngrams.repeat_coverage_chars(n) / len(v.text) for v in nonempty],
        }
        units += [TopNGramShare([(n, t)]) for t in around(shares[n]["top"])]
        units += [DuplicateNGramShare([(n, t)]) for t in around(shares[n]["dup"] + shares[n]["bound"], 8)]
    for sizes in ([2, 3, 4], [4, 2, 3], [5, 6, 7, 8, 9, 10], [7, 5, 10, 6], [10, 9, 5]):
        for unit in (TopNGramShare, DuplicateNGramShare):
            for _ in range(3):
                kind = "top" if unit is TopNGramShare else rng.choice(["dup", "bound"])
                units.append(unit([(n, around(shares[n][kind], 1)[rng.randrange(3)]) for n in sizes]))
    for name, unit in (
        ("paragraph_segments", DuplicateParagraphs),
        ("nonempty_line_segments", DuplicateLines),
        ("nonblank_line_segments", CodeDuplicateLines),
    ):
        counts = [getattr(v, name) for v in views if getattr(v, name).count]
        fracs = [c.repeated / c.count for c in counts]
        char_fracs = [getattr(v, name).repeated_chars / len(v.text) for v in views if v.text]
        units += [unit(t, None) for t in around(fracs)]
        units += [unit(2.0, t) for t in around(char_fracs)]
        units += [unit(t, u) for t, u in zip(around(fracs), around(char_fracs), strict=False)]
    return units


def decided(unit: DocFilter, docs: DocBatch, rows: np.ndarray) -> dict[int, str]:
    fired, rules = unit.check_rows(docs, rows)
    assert len(fired) == len(rules) == len(set(fired.tolist())) and set(fired.tolist()) <= set(rows.tolist())
    return dict(zip(fired.tolist(), rules, strict=True))


@pytest.mark.usefixtures("pieces")
def test_every_unit_decides_rows_as_its_per_document_check():
    texts, _ = batch_of(seed=3)
    views = own_views(texts)
    chain = FilterChain.from_config(PipelineConfig())
    units = always_firing_units() + units_around(views) + list(chain.text) + list(chain.code)
    rng = np.random.default_rng(3)
    for rows in (np.arange(len(texts)), np.sort(rng.choice(len(texts), size=len(texts) // 3, replace=False))):
        docs = batch_docs(texts)
        for unit in units:
            expected = {row: rule for row in rows.tolist() if (rule := unit.check(views[row])) is not None}
            assert decided(unit, docs, rows) == expected, unit
    assert all(decided(unit, batch_docs([]), np.arange(0)) == {} for unit in units)


@pytest.mark.usefixtures("pieces")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_verdicts_equal_per_document_verdicts(seed):
    texts, kinds = batch_of(seed)
    configs = (
        PipelineConfig(),
        PipelineConfig(min_lines=1, min_line_chars=0, min_words=1, code_min_lines=1),
        PipelineConfig(
            min_lines=2,
            min_line_chars=1,
            min_words=2,
            max_top_ngram_char_frac="4:0.3,2:0.4",
            max_dup_ngram_char_frac="7:0.2,5:0.3,10:0.1",
        ),
    )
    for cfg in configs:
        chain = FilterChain.from_config(cfg)
        expected = [chain.verdict(text, kind) for text, kind in zip(texts, kinds, strict=True)]
        assert chain.verdicts(pa.array(texts, pa.string()), pa.array(kinds, pa.string())) == expected
        assert sum(v is None for v in expected) > 5 and len({v.rule.split(":")[0] for v in expected if v}) > 5


def test_batches_of_one_kind_or_none():
    texts, kinds = batch_of(seed=6)
    chain = FilterChain.from_config(PipelineConfig())
    for kind in ("code", "text"):
        expected = [chain.verdict(text, kind) for text in texts]
        assert chain.verdicts(pa.array(texts, pa.string()), pa.array([kind] * len(texts))) == expected
    assert chain.verdicts(pa.array([], pa.string()), pa.array([], pa.string())) == []


class LongText(DocFilter):
    """A unit with only a per-document form, as a new one may start: it records the texts it was shown."""

    name = "long_text"
    reason = REASON_TOO_SHORT

    def __init__(self) -> None:
        self.shown: list[str] = []

    def check(self, doc: DocView) -> str | None:
        self.shown.append(doc.text)
        return f"long_text: {len(doc.text)} > 200" if len(doc.text) > 200 else None


def test_a_unit_without_a_batch_form_judges_the_undecided_rows_one_by_one():
    texts, kinds = batch_of(seed=7)
    by_document, by_batch = LongText(), LongText()
    expected = FilterChain(text=(MinLines(3), by_document, MinWords(20)), code=(by_document,))
    chain = FilterChain(text=(MinLines(3), by_batch, MinWords(20)), code=(by_batch,))
    verdicts = [expected.verdict(text, kind) for text, kind in zip(texts, kinds, strict=True)]
    assert chain.verdicts(pa.array(texts, pa.string()), pa.array(kinds, pa.string())) == verdicts
    assert sorted(by_batch.shown) == sorted(by_document.shown)  # only the rows no earlier unit removed
    assert len(by_batch.shown) < len(texts) and {v.rule.split(":")[0] for v in verdicts if v} == {
        "min_lines",
        "long_text",
        "min_words",
    }


def test_early_stopping_counts_decide_like_full_counts():
    """``CodeMinChars`` and ``MinAlnumFraction`` stop counting once the minimum is reached: at thresholds just around
    each text's own value they must fire exactly when counting everything does."""
    for text in awkward_texts(seed=5, count=150) + ["ab{}[]()", "ab{}[]()_", "}" * 700 + "x" * 300]:
        doc = DocView(text or "")
        count = non_whitespace_chars(doc.text)
        for minimum in (count - 1, count, count + 1, 64):
            unit = CodeMinChars(minimum)
            assert unit.check(doc) == LowerBound.check(unit, doc), (text, minimum)
        share = MinAlnumFraction(0).measure(doc)
        for minimum in (np.nextafter(share, -1), share, np.nextafter(share, 2), 0.25):
            unit = MinAlnumFraction(float(minimum))
            assert unit.check(doc) == LowerBound.check(unit, doc), (text, minimum)


def test_character_counts_match_python_for_every_code_point():
    everything = "".join(CODE_POINTS)
    assert alnum_chars(everything) == sum(c.isalnum() for c in CODE_POINTS)
    assert alnum_chars(everything) == len(re.sub(r"[\W_]+", "", everything))
    assert non_whitespace_chars(everything) == len(CODE_POINTS) - len(WHITESPACE)
    rng = random.Random(7)
    for _ in range(200):
        text = "".join(rng.choices(CODE_POINTS[:300] + WHITESPACE + SYMBOLS, k=rng.randint(0, 50)))
        assert alnum_chars(text) == sum(c.isalnum() for c in text), text
        assert non_whitespace_chars(text) == len("".join(text.split())), text


def test_arrow_whitespace_is_pythons():
    """The batch path relies on it: Arrow's Unicode whitespace must be ``str.isspace`` for every code point, and
    its ASCII split with the other whitespace replaced must split like ``str.split``."""
    assert pc.utf8_is_space(pa.array(CODE_POINTS)).to_pylist() == [c.isspace() for c in CODE_POINTS]
    ascii_spaces = [c for c in CODE_POINTS[:128] if pc.ascii_is_space(pa.array([c]))[0].as_py()]
    assert sorted(ascii_spaces + list(OTHER_WHITESPACE)) == WHITESPACE
    joined = "a" + "b".join(WHITESPACE) + "c"
    assert pc.utf8_split_whitespace(pa.array([joined])).to_pylist() == [joined.split()]
    padded = "".join(WHITESPACE) + "x" + "".join(WHITESPACE)
    assert pc.utf8_trim_whitespace(pa.array([padded])).to_pylist() == [padded.strip()]
