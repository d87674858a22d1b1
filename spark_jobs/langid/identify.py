"""Language identification of one batch: fastText on a bounded window of each text, then the keep rule.

fastText's cost is linear in the text, so a long document is read through a *window*: ``pieces`` evenly spaced
slices that add up to ``chars`` characters. Spreading the slices over the document (rather than taking its head)
samples every part of it, so the averaged embedding fastText scores is close to the whole document's; on Python's
documentation and on multilingual prose the verdict does not change (see tests/test_langid.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from spark_jobs.batches import ColumnValues
from spark_jobs.documents import KIND_CODE, Verdict
from spark_jobs.langid.model import ModelSource

REASON_LANGUAGE = "language"
LABEL_PREFIX = "__label__"


def prediction_window(text: str, chars: int, pieces: int) -> str:
    """What fastText reads: the text with newlines as spaces, or ``pieces`` evenly spaced slices totalling ``chars``.

    ``chars <= 0`` reads everything. Slices are joined with a space so no word spans two of them.
    """
    if 0 < chars < len(text):
        piece = max(1, chars // max(1, pieces))
        count = max(1, chars // piece)
        step = (len(text) - piece) / max(1, count - 1)
        text = " ".join(text[round(i * step) : round(i * step) + piece] for i in range(count))
    return text.replace("\n", " ")


@dataclass(frozen=True)
class LanguageRule:
    """Keep a text when its label is one of ``languages`` (None: any) and the score is at least ``threshold``."""

    languages: frozenset[str] | None
    threshold: float

    @classmethod
    def parse(cls, languages: str, threshold: float) -> LanguageRule:
        names = frozenset(name.strip() for name in languages.split(",") if name.strip())
        if not names:
            raise ValueError("--languages needs at least one label, or 'all'")
        return cls(None if "all" in names else names, threshold)

    def verdict(self, lang: str, score: float) -> Verdict | None:
        if self.languages is not None and lang not in self.languages:
            wanted = ",".join(sorted(self.languages))
            return Verdict(REASON_LANGUAGE, f"language_not_kept: lang={lang} score={score:.4g} not in [{wanted}]")
        if score < self.threshold:
            return Verdict(REASON_LANGUAGE, f"language_score: lang={lang} score={score:.4g} < {self.threshold}")
        return None


@dataclass(frozen=True)
class LanguageIdentifier:
    """Batch function for :func:`spark_jobs.batches.annotate_batches`: fills ``lang``/``lang_score`` on every text
    document (kept or not) and removes those the rule rejects. Code is not language-filtered: its ``lang`` and
    ``lang_score`` stay null (a programming language is not a fastText label, and comments mislead the model)."""

    rule: LanguageRule
    window_chars: int
    window_pieces: int
    model: ModelSource = field(default_factory=ModelSource)

    def predict(self, text: str, model: Any = None) -> tuple[str, float]:
        """(label, score) of the text's window; the score is clipped to 1 (fastText can return 1.00001).

        ``model`` is the loaded model when the caller already has it (a batch loads it once, not per document).
        """
        labels, scores = (self.model.load() if model is None else model).predict(
            prediction_window(text, self.window_chars, self.window_pieces), k=1, on_unicode_error="replace"
        )
        if not labels:
            return "unknown", 0.0
        return labels[0].removeprefix(LABEL_PREFIX), min(float(scores[0]), 1.0)

    def annotate(self, texts: Iterable[str | None], kinds: Iterable[str]) -> dict[str, list[Any]]:
        """Columns ``lang``, ``lang_score``, ``reason``, ``rule`` for a batch of documents (plain Python)."""
        out: dict[str, list[Any]] = {"lang": [], "lang_score": [], "reason": [], "rule": []}
        model = None  # loaded at the first prose document: a batch of code needs none
        for text, kind in zip(texts, kinds, strict=True):
            lang = score = verdict = None
            if kind != KIND_CODE:
                model = self.model.load() if model is None else model
                lang, score = self.predict(text or "", model)
                verdict = self.rule.verdict(lang, score)
            out["lang"].append(lang)
            out["lang_score"].append(score)
            out["reason"].append(verdict.reason if verdict else None)
            out["rule"].append(verdict.rule if verdict else None)
        return out

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, ColumnValues]:
        """Only prose texts become Python strings: code, often most of the bytes, stays in Arrow."""
        kinds = batch.column("kind")
        is_prose = pc.invert(pc.fill_null(pc.equal(kinds, KIND_CODE), False))
        prose_texts = iter(batch.column("text").filter(is_prose).to_pylist())
        texts = [next(prose_texts) if prose else None for prose in is_prose.to_pylist()]
        return self.annotate(texts, kinds.to_pylist())
