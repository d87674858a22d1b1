"""Language ID: the real lid.176 model on real text (English from Python's docs, hand-written paragraphs in nine
other languages), the bounded prediction window, the keep rule, and the stage on Spark (default and shipped model)."""

from __future__ import annotations

import ast
import json
import random
import shutil
import sysconfig
from dataclasses import replace
from pathlib import Path
from pydoc_data.topics import topics

import pytest
from pyspark.sql import types as T

from spark_jobs.config import PipelineConfig
from spark_jobs.documents import Verdict, doc_schema
from spark_jobs.langid import (
    REASON_LANGUAGE,
    LangIdStage,
    LanguageIdentifier,
    LanguageRule,
    ModelSource,
    default_model_path,
    load_model,
    prediction_window,
)
from spark_jobs.langid.samples import SAMPLE_PARAGRAPHS
from tests.spark_jobs.stage_utils import annotate
from tests.spark_jobs.stage_utils import report as stage_report

CFG = PipelineConfig()
IDENTIFY = LanguageIdentifier(LanguageRule.parse("en", 0.4), CFG.lang_window_chars, CFG.lang_window_pieces)
READ_ALL = replace(IDENTIFY, window_chars=0)


def module_docstrings(min_chars: int) -> list[str]:
    """Long docstrings of standard-library modules (read with ``ast``, nothing imported): English prose by people."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(lib.glob("*.py")) + sorted(lib.glob("*/__init__.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):
            continue
        if doc and len(doc) >= min_chars:
            docs.append(doc)
    return docs


def long_documents() -> list[tuple[str, str]]:
    """(language, text) of realistic documents longer than the window: Python's docs and multi-paragraph texts."""
    rng = random.Random(0)
    docs = [("en", text) for text in list(topics.values()) + module_docstrings(2000)]
    for lang, paragraphs in SAMPLE_PARAGRAPHS.items():
        for _ in range(3):
            docs.append((lang, "\n\n".join(rng.choice(paragraphs) for _ in range(40))))
    return [(lang, text) for lang, text in docs if len(text) > CFG.lang_window_chars]


def test_default_model_ships_in_the_wheel_and_loads_once():
    path = default_model_path()
    assert path.endswith("lid.176.ftz")
    assert load_model(path) is load_model(path)
    assert ModelSource().resolve() == path


def test_real_model_on_english_documentation():
    langs = [IDENTIFY.predict(text)[0] for text in topics.values()]
    assert langs.count("en") == len(langs)
    docstrings = module_docstrings(500)
    verdicts = [IDENTIFY.rule.verdict(*IDENTIFY.predict(doc)) for doc in docstrings]
    assert len(docstrings) > 30
    assert sum(v is None for v in verdicts) >= 0.9 * len(docstrings)


@pytest.mark.parametrize("lang", sorted(SAMPLE_PARAGRAPHS))
def test_real_model_on_hand_written_paragraphs(lang):
    for paragraph in SAMPLE_PARAGRAPHS[lang]:
        label, score = IDENTIFY.predict(paragraph)
        assert label == lang
        assert 0.8 < score <= 1.0


def test_window_of_long_documents_keeps_the_verdict():
    """fastText reads at most 2000 characters in 8 slices; for realistic long documents the label and the
    keep/remove verdict equal those of reading the whole text (and the score stays close)."""
    docs = long_documents()
    assert len(docs) > 40 and {lang for lang, _ in docs} >= set(SAMPLE_PARAGRAPHS) | {"en"}
    for lang, text in docs:
        windowed, full = IDENTIFY.predict(text), READ_ALL.predict(text)
        assert windowed[0] == full[0], (lang, text[:80])
        assert (windowed[1] >= 0.4) == (full[1] >= 0.4), (lang, text[:80])
        assert abs(windowed[1] - full[1]) < 0.2
        if lang != "en":
            assert windowed[0] == lang


def test_prediction_window():
    assert prediction_window("a\nb", 10, 4) == "a b"
    text = "".join(chr(ord("a") + i % 26) for i in range(10_000))
    window = prediction_window(text, 2000, 8)
    assert len(window) == 2000 + 7
    assert window.startswith(text[:250]) and window.endswith(text[-250:])
    assert prediction_window(text, 0, 8) == text


def test_language_rule():
    rule = LanguageRule.parse("en, fr", 0.4)
    assert rule.verdict("fr", 0.4) is None
    assert rule.verdict("en", 0.39) == Verdict(REASON_LANGUAGE, "language_score: lang=en score=0.39 < 0.4")
    assert rule.verdict("de", 0.98).rule == "language_not_kept: lang=de score=0.98 not in [en,fr]"
    assert LanguageRule.parse("all", 0.4).verdict("de", 0.98) is None
    assert LanguageRule.parse("all", 0.4).verdict("de", 0.2).rule.startswith("language_score:")
    with pytest.raises(ValueError):
        LanguageRule.parse(" , ", 0.4)


def test_code_is_not_language_filtered():
    out = IDENTIFY.annotate(["def f():\n    return 1\n", SAMPLE_PARAGRAPHS["de"][0], None], ["code", "text", "text"])
    assert out["lang"][0] is None and out["lang_score"][0] is None and out["reason"][0] is None
    assert out["lang"][1] == "de" and out["reason"][1] == REASON_LANGUAGE
    assert out["reason"][2] == REASON_LANGUAGE  # an empty text has no language worth keeping


def corpus_texts() -> list[tuple[str, str]]:
    """Four English texts, French, German and Japanese paragraphs, and a code file with a French comment."""
    texts = [(topics[name], "text") for name in ("assert", "for", "while", "if")]
    texts += [(SAMPLE_PARAGRAPHS[lang][0], "text") for lang in ("fr", "de", "ja")]
    texts.append(("import os\nprint(os.getcwd())\n# Ceci n'est pas une pipe\n", "code"))
    return texts


def corpus(spark):
    rows = [
        (f"doc-{i:02d}", t, kind, "mem://test", None, None, json.dumps({"i": i})) for i, (t, kind) in enumerate(corpus_texts())
    ]
    return spark.createDataFrame(rows, doc_schema(T.StringType()))


def test_langid_stage_on_spark(spark, tmp_path):
    docs = corpus(spark)
    user_model = tmp_path / "my-lid.ftz"
    shutil.copy(default_model_path(), user_model)
    annotated = {}
    for model in (None, str(user_model)):
        cfg = PipelineConfig(languages="en,ja", lang_model=model)
        annotated[model] = annotate(LangIdStage(), docs, cfg)[0].cache()
    rows = sorted(annotated[None].collect(), key=lambda r: r["doc_id"])
    assert rows == sorted(annotated[str(user_model)].collect(), key=lambda r: r["doc_id"])  # shipped copy = default
    assert len(rows) == len(corpus_texts())
    by_id = {r["doc_id"]: r for r in rows}
    assert [by_id[f"doc-0{i}"]["lang"] for i in range(7)] == ["en"] * 4 + ["fr", "de", "ja"]
    assert all(0.4 <= by_id[f"doc-0{i}"]["lang_score"] <= 1 for i in range(7))
    assert [by_id[f"doc-0{i}"]["reason"] for i in range(8)] == [None] * 4 + [REASON_LANGUAGE] * 2 + [None, None]
    assert by_id["doc-07"]["lang"] is None and by_id["doc-07"]["lang_score"] is None
    assert json.loads(by_id["doc-04"]["meta"]) == {"i": 4}  # metadata passes through untouched
    report = stage_report(LangIdStage(), annotated[None], CFG)
    assert report == {"languages": {"en": 4, "de": 1, "fr": 1, "ja": 1}, "removed_languages": {"de": 1, "fr": 1}}


def test_langid_stage_is_deterministic_across_partitionings(spark):
    docs = corpus(spark)
    one = annotate(LangIdStage(), docs.repartition(1), CFG)[0].orderBy("doc_id").collect()
    five = annotate(LangIdStage(), docs.repartition(5), CFG)[0].orderBy("doc_id").collect()
    assert one == five
