"""The ``quality`` stage's units against a direct per-document reading of each paper's rule, written here in plain
Python (``str.split``, ``str.count``, ``re``), on generated documents: good prose with one defect of random strength
injected, so that every rule fires on some and passes on others, on awkward characters too (Unicode whitespace,
CRLF, the Kelvin sign, dotted capital I, citations, very long words). Then the stage in a real pipeline run, and
``python -m spark_jobs.inspect`` on its output."""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.config import PipelineConfig
from spark_jobs.inspect import inspect as inspect_removals
from spark_jobs.pipeline import run
from spark_jobs.quality.rules import (
    BULLETS,
    C4_CITATION,
    C4_END_PUNCTUATION,
    C4_POLICY,
    C4_SENTENCE_END,
    FINEWEB_END_PUNCTUATION,
    STOP_WORDS,
    BatchText,
)
from spark_jobs.quality.stage import QualityOptions, QualityRules, all_units
from tests.spark_jobs.generated_docs import EN_NOUNS, en_sentence, python_module


def words_of(text: str) -> list[str]:
    return [w for w in text.split() if w.strip(string.punctuation)]


def reference_measures(text: str, opts: QualityOptions) -> dict[str, float]:
    """Each rule's measure for one document, read off the papers' definitions one document at a time."""
    words = words_of(text)
    n = max(len(words), 1)
    lines = text.split("\n")
    nonempty = [line for line in lines if line]
    ne = max(len(nonempty), 1)

    sentences = 0
    for raw in lines:
        line = raw.strip()
        line_words = line.split()
        if any(len(w) > opts.c4_max_word_chars for w in line_words):
            continue
        line = re.sub(C4_CITATION, "", line)
        if not line.endswith(C4_END_PUNCTUATION) or line.endswith("..."):
            continue
        if len(line_words) < opts.c4_min_line_words:
            continue
        lower = line.lower()
        if "javascript" in lower or any(phrase in lower for phrase in C4_POLICY):
            continue
        sentences += max(1, len(re.findall(C4_SENTENCE_END, line)))

    seen: set[str] = set()
    dup_chars = 0
    for line in lines:
        if not line.strip():
            continue
        if line in seen:
            dup_chars += len(line)
        seen.add(line)

    short = sum(len(line) <= opts.fineweb_short_line_chars for line in lines)
    return {
        "gopher_min_words": len(words),
        "gopher_max_words": len(words),
        "gopher_min_mean_word_chars": sum(map(len, words)) / n,
        "gopher_max_mean_word_chars": sum(map(len, words)) / n,
        "gopher_hash_word_ratio": text.count("#") / n,
        "gopher_ellipsis_word_ratio": (text.count("...") + text.count("…")) / n,
        "gopher_bullet_line_frac": sum(line.lstrip().startswith(tuple(BULLETS)) for line in nonempty) / ne,
        "gopher_ellipsis_line_frac": sum(line.rstrip().endswith(("...", "…")) for line in nonempty) / ne,
        "gopher_alpha_word_frac": sum(any(c.isalpha() for c in w) for w in words) / n,
        "gopher_stop_words": sum(w.lower().strip(string.punctuation) in STOP_WORDS for w in words),
        "c4_lorem_ipsum": text.lower().count("lorem ipsum"),
        "c4_curly_bracket": text.count("{"),
        "c4_min_sentences": sentences,
        "fineweb_line_punct_frac": sum(line.endswith(FINEWEB_END_PUNCTUATION) for line in lines) / len(lines),
        "fineweb_short_line_frac": short / len(lines),
        "fineweb_dup_line_char_frac": dup_chars / max(len(text.replace("\n", "")), 1),
        "fineweb_newline_word_ratio": text.count("\n") / n,
    }


FIRES = {"<": lambda v, t: v < t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, ">=": lambda v, t: v >= t}


def reference_rule(text: str, opts: QualityOptions) -> str | None:
    """The first rule (in the stage's order) whose measure crosses its threshold, or None."""
    measures = reference_measures(text, opts)
    for unit in all_units(opts):
        if unit.name not in opts.skipped and FIRES[unit.comparison](measures[unit.name], unit.threshold):
            return unit.name
    return None


DEFECTS = [
    lambda rng, line, lines: "• " + line,
    lambda rng, line, lines: "  - " + line,
    lambda rng, line, lines: line[:-1] + "...",
    lambda rng, line, lines: line[:-1] + "… \t",
    lambda rng, line, lines: line + " #tag #news ##",
    lambda rng, line, lines: " ".join(str(rng.randrange(10**6)) for _ in line.split()),
    lambda rng, line, lines: " ".join(w[:2] for w in line.split()),
    lambda rng, line, lines: " ".join(w * 4 for w in line.split()),
    lambda rng, line, lines: " ".join(w.upper() for w in line.split() if w.lower() not in STOP_WORDS),
    lambda rng, line, lines: "Lorem ipsum dolor sit amet.",
    lambda rng, line, lines: line + " {x}",
    lambda rng, line, lines: rng.choice(["Enable JavaScript to see this.", "Site uses \u212aookies.", "Terms of Use."]),
    lambda rng, line, lines: " ".join(line.split()[:2]),
    lambda rng, line, lines: line.rstrip(".") + "[1]",
    lambda rng, line, lines: lines[0],
    lambda rng, line, lines: line.replace(" ", "\n"),
    lambda rng, line, lines: line.replace(" ", "… "),
    lambda rng, line, lines: f"The {rng.choice(EN_NOUNS)} {rng.choice(EN_NOUNS)} of the {rng.choice(EN_NOUNS)}.\n",
    lambda rng, line, lines: rng.choice(["", " ", "\u3000", "x\r", "İT IS THE END.", "A " + "b" * 1001 + " c."]),
]
"""Ways to spoil a line of prose: bullets, ellipses, hashes, numbers, short or long words, no stop words, lorem
ipsum, braces, JavaScript and cookie lines, fragments, citations, repeats, lists, awkward characters."""


def defect(rng: random.Random, lines: list[str]) -> list[str]:
    """``lines`` with one kind of defect injected into a random share of them (from none to all)."""
    strength = rng.random()
    spoil = rng.choice(DEFECTS)
    return [spoil(rng, line, lines) if rng.random() < strength else line for line in lines]


def quality_docs(seed: int, count: int) -> list[str | None]:
    """Fixed edge cases, then prose of 1..30 lines (1..4 sentences each) with one defect injected."""
    fixed: list[str | None] = [
        "",
        None,
        " ",
        "\n\n",
        "...",
        "a.....b..c....\n....…...…",
        "- - -",
        "lorem ipsum",
        "LOREM İPSUM and lorem\u00a0ipsum",
        "the THE The, (the) \u212athe the. with",
        "x" * 2000,
        "The river and the stone. " * 400,
    ]
    rng = random.Random(seed)
    docs = list(fixed)
    for _ in range(count):
        lines = [" ".join(en_sentence(rng) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 30))]
        glue = rng.choice(["\n", "\n", "\n\n", "\r\n", " \n"])
        docs.append(glue.join(defect(rng, lines)))
    return docs


DOCS = quality_docs(seed=7, count=600)
SMALL_MAX_WORDS = QualityOptions(gopher_max_words=900)
"""Defaults, but a maximum of words that generated documents reach (100,000 words would make a slow test)."""


def test_every_measure_equals_the_reference_on_every_document():
    batch = BatchText(pa.array(DOCS, type=pa.string()))
    expected = [reference_measures(text or "", SMALL_MAX_WORDS) for text in DOCS]
    for unit in all_units(SMALL_MAX_WORDS):
        measured = unit.measure(batch).tolist()
        wanted = [row[unit.name] for row in expected]
        wrong = [(i, m, w) for i, (m, w) in enumerate(zip(measured, wanted, strict=True)) if m != w]
        assert not wrong, f"{unit.name}: (doc, measured, reference) {wrong[:3]}, e.g. {DOCS[wrong[0][0]]!r:.300}"
        fires = unit.fires(np.array(wanted))
        assert fires.any() and not fires.all(), f"{unit.name} fires on all or none of the generated documents"


def test_the_stage_removes_what_the_reference_removes_and_names_the_first_rule():
    rules = QualityRules.from_options(SMALL_MAX_WORDS)
    got = rules.rules(pa.array(DOCS, type=pa.string()))
    expected = [reference_rule(text or "", SMALL_MAX_WORDS) for text in DOCS]
    assert [g.split(":")[0] if g else None for g in got] == expected
    assert {e for e in expected if e} == {unit.name for unit in all_units(SMALL_MAX_WORDS)}, "a rule never decides"
    assert None in expected
    # The rule carries the measured value and the threshold.
    for text, rule in zip(DOCS, got, strict=True):
        if rule:
            name, value, comparison, threshold = re.fullmatch(r"(\w+): (\S+) (\S+) (\S+)", rule).groups()
            measures = reference_measures(text or "", SMALL_MAX_WORDS)
            assert float(value) == pytest.approx(measures[name], abs=6e-4) and FIRES[comparison](
                measures[name], float(threshold)
            )


def test_pieces_and_skipped_rules_change_nothing_else():
    """A batch split anywhere, sliced or of large strings gives the same rules; a skipped rule lets the next one
    decide."""
    rules = QualityRules.from_options(SMALL_MAX_WORDS)
    whole = rules.rules(pa.array(DOCS, type=pa.string()))
    parts = rules.rules(pa.array(DOCS[:37], type=pa.string())) + rules.rules(pa.array(DOCS[37:], type=pa.string()))
    assert parts == whole
    assert rules.rules(pa.array(DOCS, type=pa.string())[37:]) == whole[37:], "an Arrow slice (offset > 0)"
    assert rules.rules(pa.array(DOCS, type=pa.large_string())) == whole, "64-bit offsets"
    skipping = QualityOptions(gopher_max_words=900, quality_skip="gopher_min_words,c4_curly_bracket")
    got = QualityRules.from_options(skipping).rules(pa.array(DOCS, type=pa.string()))
    assert [g.split(":")[0] if g else None for g in got] == [reference_rule(t or "", skipping) for t in DOCS]
    assert not any(g and g.startswith(("gopher_min_words", "c4_curly_bracket")) for g in got)


def test_code_is_exempt_and_null_text_is_empty():
    code = python_module(random.Random(1))
    batch = pa.record_batch([pa.array([code, code, None]), pa.array(["code", "text", None])], names=["text", "kind"])
    out = QualityRules.from_options(QualityOptions())(batch)
    assert out["reason"][0] is None and out["reason"][1] == "quality" and out["rule"][2].startswith("gopher_min_words:")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gopher-max-bullet-line-frac", "1.5"], "--gopher-max-bullet-line-frac"),
        (["--gopher-min-words", "200", "--gopher-max-words", "100"], "--gopher-max-words"),
        (["--c4-min-sentences", "-1"], "--c4-min-sentences"),
        (["--quality-skip", "gopher_min_word"], "gopher_min_word"),
    ],
)
def test_options_are_checked_before_any_work(flags, message):
    with pytest.raises(SystemExit, match=message):
        PipelineConfig.from_args(["--input", "x", "--output", "o", "--stages", "filter,quality", *flags])


@pytest.fixture(scope="module")
def quality_run(spark, tmp_path_factory):
    """A real pipeline run with ``--stages filter,quality`` on 40 prose documents (a quarter bullet lists, a quarter
    with a lorem ipsum line), two too short for the filter and one code file: (documents, output, report)."""
    rng = random.Random(3)
    docs: list[dict] = []
    for i in range(40):
        lines = [" ".join(en_sentence(rng) for _ in range(3)) for _ in range(6)]
        if i % 4 == 1:
            lines = ["• " + " ".join(rng.sample(EN_NOUNS, 4)) for _ in range(40)]
        elif i % 4 == 2:
            lines[2] = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."
        docs.append({"id": i, "text": "\n".join(lines)})
    docs += [{"id": 97, "text": "too short"}, {"id": 98, "text": "one\ntwo"}]
    docs.append({"id": 99, "text": python_module(rng), "kind": "code"})
    root = tmp_path_factory.mktemp("quality")
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = root / "out"
    cfg = PipelineConfig.from_args(["--input", str(source), "--output", str(out), "--stages", "filter,quality"])
    return docs, out, run(cfg, spark)


def test_thresholds_come_from_flags_and_yaml(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("gopher-min-words: 20\nfineweb_max_dup_line_char_frac: 0.01\nquality_skip: c4_curly_bracket\n")
    cfg = PipelineConfig.from_args(
        ["--input", "x", "--output", "o", "--config", str(config), "--gopher-min-words", "30"]
    )
    opts = cfg.options(QualityOptions)
    assert (opts.gopher_min_words, opts.fineweb_max_dup_line_char_frac) == (30, 0.01)
    assert "c4_curly_bracket" not in [unit.name for unit in QualityRules.from_options(opts).units]


def test_a_pipeline_run_with_quality_removes_with_reason_quality(quality_run):
    docs, out, report = quality_run
    removed = pq.read_table(out / "removed").to_pylist()
    quality = {r["doc_id"]: r["rule"] for r in removed if r["reason"] == "quality"}
    expected = {d["id"]: reference_rule(d["text"], QualityOptions()) for d in docs if d.get("kind") != "code"}
    filtered = {r["doc_id"] for r in removed if r["reason"] != "quality"}
    assert filtered == {97, 98}
    assert {i: rule.split(":")[0] for i, rule in quality.items()} == {
        i: name for i, name in expected.items() if name and i not in filtered
    }
    assert {i % 4 for i in quality} == {1, 2} and 99 not in quality
    stage = report["stages"]["quality"]
    assert stage["removed_by_reason"] == {"quality": len(quality)}
    assert sum(stage["rule_counts"].values()) == len(quality)
    assert set(stage["removed_by_rule"]) == {f"quality:{rule.split(':')[0]}" for rule in quality.values()}
    assert stage["docs_in"] == report["stages"]["filter"]["docs_out"] == stage["docs_out"] + len(quality)
    accounting = report["accounting"]
    assert accounting["input"] == len(docs) == accounting["cleaned"] + accounting["removed"]
    assert pq.read_table(out / "cleaned").num_rows == accounting["cleaned"]


def test_inspect_shows_the_removals_table_and_excerpts_of_the_chosen_rule(quality_run):
    docs, out, report = quality_run
    texts = {d["id"]: d["text"] for d in docs}
    counts = report["stages"]["quality"]["rule_counts"]
    rule = max(counts, key=counts.get)
    done = subprocess.run(
        [sys.executable, "-m", "spark_jobs.inspect", str(out), "--stage", "quality", "--rule", rule, "-n", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["stage", "reason", "rule", "docs", "share", "docs_in", "docs_out"]
    assert lines[1].split()[:4] == ["quality", "quality", rule, str(counts[rule])]
    heads = [line for line in lines if line.startswith("[")]
    assert len(heads) == min(2, counts[rule])
    removed = {r["doc_id"]: r for r in pq.read_table(out / "removed").to_pylist()}
    for head in heads:
        found = re.fullmatch(r"\[quality\] (.+)  doc_id=(\d+)", head)
        assert found and found.group(1) == removed[int(found.group(2))]["rule"] and found.group(1).startswith(rule)
        body = lines[lines.index(head) + 1].strip()
        assert body.startswith(texts[int(found.group(2))][:40].replace("\n", " ⏎ "))


def test_inspect_filters_by_stage_and_reason_and_fails_in_one_line(quality_run, tmp_path):
    docs, out, report = quality_run
    shown = inspect_removals(str(out), stage="filter", reason=None, rule=None, n=10, chars=20)
    assert "quality" not in shown and shown.count("[too_short]") == 2
    assert inspect_removals(str(out), stage="quality", reason="too_short", rule=None, n=5, chars=20).endswith(
        "no removed documents match"
    )
    every = inspect_removals(str(out), stage=None, reason="quality", rule=None, n=100, chars=20)
    assert every.count("[quality]") == report["stages"]["quality"]["removed_by_reason"]["quality"]
    done = subprocess.run(
        [sys.executable, "-m", "spark_jobs.inspect", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "report.json not found" in done.stderr
