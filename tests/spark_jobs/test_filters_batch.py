"""The filter chain's batch path (``spark_jobs.filters.batch``) against the per-document path, on generated awkward
texts (Unicode whitespace, CRLF, tabs, non-ASCII letters, nulls, one huge line, heavy repetition): every measure the
units read, every unit's rule and the chain's verdicts must be the same; and the shortcuts (counting stopped early,
pieces of a batch) must change nothing."""

from __future__ import annotations

import random
import re
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.filters import DocView, FilterChain
from spark_jobs.filters import batch as batch_module
from spark_jobs.filters.base import LowerBound
from spark_jobs.filters.batch import doc_views
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


def views_of(texts: list[str | None], kinds: list[str | None], ngram_sizes: int = 5) -> list[DocView]:
    is_code = np.array([kind == "code" for kind in kinds], dtype=bool)
    return doc_views(pa.array(texts, pa.string()), is_code, ngram_sizes)


@pytest.fixture(params=["whole", "tiny pieces"])
def pieces(request, monkeypatch):
    """Run a test as batches are cut (pieces of thousands of words or lines) and with pieces of one or two rows."""
    if request.param == "tiny pieces":
        monkeypatch.setattr(batch_module, "WORD_PIECE", 7)
        monkeypatch.setattr(batch_module, "SEGMENT_PIECE", 3)


@pytest.mark.usefixtures("pieces")
def test_batch_measures_equal_the_documents_own():
    texts, kinds = batch_of()
    for text, kind, view in zip(texts, kinds, views_of(texts, kinds), strict=True):
        own = DocView(text or "")
        assert np.array_equal(view.line_lengths, own.line_lengths), text
        if kind == "code":
            assert view.nonblank_line_segments == own.nonblank_line_segments, text
            continue
        assert view.nonempty_line_segments == own.nonempty_line_segments, text
        assert view.paragraph_segments == own.paragraph_segments, text
        assert view.word_count == own.word_count, text
        for n in NGRAM_SIZES:
            for got, expected in zip(view.ngrams.groups(n), own.ngrams.groups(n), strict=True):
                assert np.array_equal(got, expected), (text, n)
            assert view.ngrams.top_ngram_chars(n) == own.ngrams.top_ngram_chars(n), (text, n)
            assert view.ngrams.duplicate_ngram_chars(n) == own.ngrams.duplicate_ngram_chars(n), (text, n)
            assert view.ngrams.repeat_coverage_chars(n) == own.ngrams.repeat_coverage_chars(n), (text, n)


def always_firing_units() -> dict[str, list]:
    """Units at thresholds every document crosses, so that each reports its measured value."""
    big, never = 10**9, -1.0
    text = [MinLines(big), LongestLines(big, count=3), MinWords(big)]
    text += [unit(never, None) for unit in (DuplicateParagraphs, DuplicateLines)]
    text += [unit(2.0, never) for unit in (DuplicateParagraphs, DuplicateLines)]
    text += [share([(n, never)]) for share in (TopNGramShare, DuplicateNGramShare) for n in NGRAM_SIZES]
    code = [CodeMinLines(big), CodeMinChars(big), MaxLineLength(never), MeanLineLength(never), MinAlnumFraction(2.0)]
    code += [CodeDuplicateLines(never), CodeDuplicateLines(2.0, never)]
    return {"text": text, "code": code}


@pytest.mark.usefixtures("pieces")
def test_every_unit_reports_the_same_on_batch_and_document_views():
    texts, kinds = batch_of(seed=3)
    chain = FilterChain.from_config(PipelineConfig())
    units = always_firing_units()
    for text, kind, view in zip(texts, kinds, views_of(texts, kinds), strict=True):
        own = DocView(text or "")
        for unit in units["code" if kind == "code" else "text"] + list(chain.code if kind == "code" else chain.text):
            assert unit.check(view) == unit.check(own), (unit, text)
            if hasattr(unit, "measure"):
                assert unit.measure(view) == unit.measure(own), (unit, text)


@pytest.mark.usefixtures("pieces")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_verdicts_equal_per_document_verdicts(seed):
    texts, kinds = batch_of(seed)
    for cfg in (PipelineConfig(), PipelineConfig(min_lines=1, min_line_chars=0, min_words=1, code_min_lines=1)):
        chain = FilterChain.from_config(cfg)
        expected = [chain.verdict(text, kind) for text, kind in zip(texts, kinds, strict=True)]
        assert chain.verdicts(pa.array(texts, pa.string()), pa.array(kinds, pa.string())) == expected
        assert sum(v is None for v in expected) > 5 and len({v.rule.split(":")[0] for v in expected if v}) > 5


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
    """The batch path relies on it: Arrow's Unicode whitespace must be ``str.isspace`` for every code point."""
    assert pc.utf8_is_space(pa.array(CODE_POINTS)).to_pylist() == [c.isspace() for c in CODE_POINTS]
    joined = "a" + "b".join(WHITESPACE) + "c"
    assert pc.utf8_split_whitespace(pa.array([joined])).to_pylist() == [joined.split()]
    padded = "".join(WHITESPACE) + "x" + "".join(WHITESPACE)
    assert pc.utf8_trim_whitespace(pa.array([padded])).to_pylist() == [padded.strip()]


def test_doc_view_refuses_unknown_measures():
    with pytest.raises(TypeError, match="not a DocView measure"):
        DocView("x", lines_count=1)
