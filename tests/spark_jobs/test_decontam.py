"""The ``decontam`` stage: n-gram hashing against a direct Python reading of the rule, then a real pipeline run on a
generated corpus where a few documents carry a 13-word passage of an eval set (in other case and punctuation too),
others share only 12 words of one, and one contains a whole eval text shorter than 13 words."""

from __future__ import annotations

import json
import random
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_jobs.cache import options_key
from spark_jobs.config import PipelineConfig
from spark_jobs.decontam import DecontamOptions, EvalNgrams, NgramMatcher
from spark_jobs.ingest import InputError
from spark_jobs.pipeline import run
from tests.spark_jobs.generated_docs import en_sentence, python_module


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]|_", "", text.lower()).split()


def prose(rng: random.Random) -> str:
    return "\n".join(" ".join(en_sentence(rng) for _ in range(3)) for _ in range(4))


QUESTIONS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "What is 7 times 8?",
]
TRIVIA = [
    "Which planet in the solar system has the largest number of known moons orbiting around it today?",
    "Who painted the ceiling of the Sistine Chapel in Rome during the early sixteenth century?",
]


def test_matching_agrees_with_a_direct_reading_of_the_rule():
    """Random documents made of eval words, each with a span of an eval text: the stage's (document, n-gram) hits are exactly the n-grams of the
    lowercased, punctuation-free words they share with an eval text, for several n."""
    rng = random.Random(1)
    vocabulary = sorted({w for q in QUESTIONS for w in q.split()})
    docs = []
    for _ in range(200):
        doc = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        source = rng.choice(QUESTIONS).split()
        start, length = rng.randrange(len(source)), rng.randint(1, 8)
        at = rng.randint(0, len(doc))
        doc[at:at] = source[start : start + length]
        docs.append(" ".join(doc))
    for n in (2, 3, 5):
        evals = EvalNgrams.build({"gsm": QUESTIONS}, n)
        grams = {
            " ".join(ws[i : i + n]) if len(ws) >= n else " ".join(ws)
            for ws in map(words, QUESTIONS)
            for i in range(max(1, len(ws) - n + 1))
        }
        lengths = {len(g.split()) for g in grams}
        batch = pa.record_batch({"doc_id": list(range(len(docs))), "text": docs})
        found = pa.Table.from_batches(list(NgramMatcher(evals.hashes, evals.lengths)(iter([batch]))))
        by_hash = dict(zip(evals.hashes.tolist(), evals.ngrams, strict=True))
        hits = {
            (d, by_hash[h]) for d, h in zip(found["doc_id"].to_pylist(), found["ngram_hash"].to_pylist(), strict=True)
        }
        expected = {
            (d, " ".join(ws[i : i + k]))
            for d, ws in enumerate(map(words, docs))
            for k in lengths
            for i in range(len(ws) - k + 1)
            if " ".join(ws[i : i + k]) in grams
        }
        assert hits == expected and expected, n
        assert set(evals.ngrams) == grams


@pytest.fixture(scope="module")
def decontam_run(spark, tmp_path_factory):
    """40 prose documents: 0-2 carry 13+ words of a GSM question (2 in upper case with other punctuation), 3 the
    first 12 words of one only, 4 a 13-word trivia passage, 5 the whole 5-word question; a code file; two too short.
    Eval sets: gsm8k as JSONL, trivia as Parquet. The pipeline with ``--stages filter,decontam,exact_dedup``."""
    rng = random.Random(4)
    root = tmp_path_factory.mktemp("decontam")
    docs = [{"id": i, "text": prose(rng)} for i in range(40)]
    gsm = QUESTIONS[0].split()
    docs[0]["text"] += "\n" + " ".join(gsm[:20])
    docs[1]["text"] = " ".join(gsm[5:18]) + " " + docs[1]["text"]
    docs[2]["text"] += "\n" + ", ".join(gsm[3:17]).upper().replace("?", "!")
    docs[3]["text"] += "\n" + " ".join(gsm[:12]) + " and more words here"
    docs[4]["text"] += "\n" + " ".join(TRIVIA[1].split()[2:15])
    docs[5]["text"] += "\nLet us ask: what is 7 times 8 ? The answer comes later."
    docs += [{"id": 97, "text": "too short"}, {"id": 98, "text": "one\ntwo"}]
    docs.append({"id": 99, "text": python_module(rng), "kind": "code"})
    source = root / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    gsm_file = root / "gsm8k.jsonl"
    gsm_file.write_text("".join(json.dumps({"question": q, "answer": "42"}) + "\n" for q in QUESTIONS))
    trivia_file = root / "trivia.parquet"
    pq.write_table(pa.table({"question": TRIVIA}), trivia_file)
    out = root / "out"
    cfg = PipelineConfig.from_args(
        ["--input", str(source), "--output", str(out), "--stages", "filter,decontam,exact_dedup"]
        + ["--decontam-sets", str(gsm_file), str(trivia_file), "--decontam-column", "question"]
    )
    return docs, out, run(cfg, spark)


def test_contaminated_documents_are_removed_with_the_set_and_ngram(decontam_run):
    docs, out, report = decontam_run
    removed = {r["doc_id"]: r for r in pq.read_table(out / "removed").to_pylist()}
    contaminated = {i: r["rule"] for i, r in removed.items() if r["reason"] == "contaminated"}
    assert set(contaminated) == {0, 1, 2, 4, 5}
    for i, rule in contaminated.items():
        found = re.fullmatch(r'decontam: (\w+) "(.+)"', rule)
        assert found, rule
        ngram = found.group(2)
        assert found.group(1) == ("trivia" if i == 4 else "gsm8k")
        assert len(ngram.split()) == (5 if i == 5 else 13)
        assert ngram in " ".join(words(docs[i]["text"]))
    assert {i for i, r in removed.items() if r["reason"] != "contaminated"} == {97, 98}
    stage = report["stages"]["decontam"]
    assert stage["removed_by_reason"] == {"contaminated": 5}
    assert stage["removed_by_set"] == {"gsm8k": 4, "trivia": 1}
    assert stage["sets"]["gsm8k"]["texts"] == 3 and stage["sets"]["gsm8k"]["short_texts"] == 1
    assert stage["docs_in"] == report["stages"]["filter"]["docs_out"] == stage["docs_out"] + 5
    assert report["stages"]["exact_dedup"]["docs_in"] == stage["docs_out"]
    acc = report["accounting"]
    assert acc["input"] == len(docs) == acc["cleaned"] + acc["removed"]
    assert pq.read_table(out / "cleaned").num_rows == acc["cleaned"]


def test_bad_eval_sets_fail_in_one_line(decontam_run, spark, tmp_path):
    docs, _, _ = decontam_run
    base = ["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--stages", "filter,decontam"]
    with pytest.raises(SystemExit, match="needs --decontam-sets"):
        PipelineConfig.from_args(base)
    with pytest.raises(SystemExit, match="no such file"):
        PipelineConfig.from_args([*base, "--decontam-sets", str(tmp_path / "x.jsonl")])
    with pytest.raises(SystemExit, match="not a .parquet"):
        PipelineConfig.from_args([*base, "--decontam-sets", str(tmp_path / "x.csv")])
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps(docs[0]) + "\n")
    no_column = tmp_path / "evals.jsonl"
    no_column.write_text(json.dumps({"text": QUESTIONS[0]}) + "\n")
    cfg = PipelineConfig.from_args(
        ["--input", str(source), "--output", str(tmp_path / "o"), "--stages", "decontam"]
        + ["--decontam-sets", str(no_column), "--decontam-column", "question"]
    )
    with pytest.raises(InputError, match="evals.jsonl: every line must be a JSON object with a string 'question'"):
        run(cfg, spark)


def test_a_rewritten_eval_set_changes_the_stage_key(tmp_path):
    """The removals of a rerun are reused only for the same eval files: a set rewritten under its name is read again."""
    evals = tmp_path / "gsm8k.jsonl"
    evals.write_text(json.dumps({"text": QUESTIONS[0]}) + "\n")
    opts = DecontamOptions(decontam_sets=[str(evals)])
    before = options_key(opts)
    assert options_key(opts) == before
    evals.write_text(json.dumps({"text": QUESTIONS[1]}) + "\n")
    assert options_key(opts) != before
