"""The fused first pass without Spark: RowChain (row stages applied in order to the rows still kept) and the
pipeline's per-stage counts derived from one aggregate (flows, seen_by)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from pyspark.sql import types as T

from spark_jobs import batches
from spark_jobs.batches import CHARS, RowChain
from spark_jobs.dedup.exact import HASH_FIELD, text_hashes
from spark_jobs.documents import annotated_schema, arrow_schema
from spark_jobs.filters.stage import FilterChain, FilterOptions
from spark_jobs.pipeline import flows, seen_by
from tests.spark_jobs.generated_docs import prose, python_module

SCHEMA = arrow_schema(T.StructType(annotated_schema().fields + [T.StructField(CHARS, T.LongType(), False)]))


def batch(texts: list[str | None], reasons: list[str | None]) -> pa.RecordBatch:
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {"doc_id": list(range(n)), "text": texts, "kind": ["text"] * n, "source": ["s"] * n, "reason": reasons},
    )


class Recorder:
    """A row stage that removes texts starting with ``prefix`` and records which rows it was shown."""

    def __init__(self, prefix: str, reason: str) -> None:
        self.prefix, self.reason, self.seen = prefix, reason, []

    def __call__(self, b: pa.RecordBatch) -> dict[str, list]:
        self.seen.append(b.column("doc_id").to_pylist())
        hit = [t.startswith(self.prefix) for t in b.column("text").to_pylist()]
        return {
            "reason": [self.reason if h else None for h in hit],
            "rule": [f"{self.prefix}!" if h else None for h in hit],
        }


def test_row_chain_shows_each_stage_only_the_rows_still_kept_and_measures_every_row():
    first, second = Recorder("a", "too_short"), Recorder("b", "language")
    out = RowChain((first, second), SCHEMA)(
        batch(["a1", "b22", "c333", None, "a4"], [None, None, None, "invalid", None])
    )
    assert first.seen == [[0, 1, 2, 4]]  # the row ingestion marked invalid is not shown
    assert second.seen == [[1, 2]]  # nor what the first stage removed
    assert out.column("reason").to_pylist() == ["too_short", "language", None, "invalid", "too_short"]
    assert out.column("rule").to_pylist() == ["a!", "b!", None, None, "a!"]
    assert out.column(CHARS).to_pylist() == [2, 3, 4, 0, 2]  # every row, a null text counting 0
    assert out.schema == SCHEMA


def test_row_chain_stops_when_nothing_is_left_and_keeps_columns_it_does_not_compute():
    first, second = Recorder("", "too_short"), Recorder("b", "language")
    out = RowChain((first, second), SCHEMA)(batch(["x", "y"], [None, None]))
    assert second.seen == []
    assert out.column("source").to_pylist() == ["s", "s"]
    assert out.column("lang").to_pylist() == [None, None]


def docs(texts: list[str | None], ids: range, kinds: list[str] | None = None, langs: list | None = None):
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {
            "doc_id": list(ids),
            "text": texts,
            "kind": kinds or ["text"] * n,
            "source": [f"file-{i}" for i in ids],
            "lang": langs or [None] * n,
        }
    )


def test_memo_runs_each_document_once_per_process_and_copies_get_the_first_outputs():
    """Copies (other ids and sources) in the same batch and in a later one are not shown to the stages again; every
    row's outputs equal those of the chain without the memo."""
    first, second = Recorder("a", "too_short"), Recorder("b", "language")
    plain = RowChain((Recorder("a", "too_short"), Recorder("b", "language")), SCHEMA)
    chain = RowChain((first, second), SCHEMA, memo="run-1")
    one, two = docs(["a1", "bx", "a1", "c", "bx"], range(5)), docs(["c", "bx", "d", "a1", "d"], range(10, 15))
    assert chain(one).equals(plain(one)) and chain(two).equals(plain(two))
    assert first.seen == [[0, 1, 3], [12]]
    assert second.seen == [[1, 3], [12]]


def test_memo_keys_on_kind_and_language_too_and_a_new_tag_forgets():
    stage = Recorder("a", "too_short")
    chain = RowChain((stage,), SCHEMA, memo="run-2")
    chain(docs(["x", "x", "x"], range(3), kinds=["text", "code", "text"], langs=[None, None, "de"]))
    assert stage.seen == [[0, 1, 2]]
    chain(docs(["x"], range(3, 4)))
    assert stage.seen[1:] == []  # remembered
    RowChain((stage,), SCHEMA, memo="run-3")(docs(["x"], range(4, 5)))
    assert stage.seen[1:] == [[4]]  # another tag (other stages or options): computed again


def test_memo_stops_adding_at_its_bound_and_outputs_stay_the_same(monkeypatch):
    monkeypatch.setattr(batches, "MEMO_ROWS", 2)
    stage = Recorder("a", "too_short")
    chain = RowChain((stage,), SCHEMA, memo="run-4")
    plain = RowChain((Recorder("a", "too_short"),), SCHEMA)
    one, two = docs(["a1", "b", "c"], range(3)), docs(["a1", "b", "c", "d"], range(3, 7))
    assert chain(one).equals(plain(one))
    assert chain(two).equals(plain(two))
    assert stage.seen == [[0, 1, 2], [6]]  # the first batch filled the memory; later documents are not added


def test_memo_is_shared_with_the_other_workers_through_its_directory(tmp_path, monkeypatch):
    """A second worker (a new memory, with its own files) is not shown what the first computed, and the first takes
    in what the second computed; outputs equal the plain chain's everywhere."""
    monkeypatch.setattr(batches, "shared_directory", lambda tag: str(tmp_path / tag))
    monkeypatch.setattr(batches, "_memo", None)
    stage = Recorder("a", "too_short")
    chain = RowChain((stage,), SCHEMA, memo="run-5")
    plain = RowChain((Recorder("a", "too_short"),), SCHEMA)
    one, two = docs(["a1", "b", "c"], range(3)), docs(["c", "a1", "d", "b"], range(3, 7), langs=[None] * 4)
    assert chain(one).equals(plain(one))
    first = batches._memo
    monkeypatch.setattr(batches, "_memo", None)  # another worker process
    assert chain(two).equals(plain(two))
    assert stage.seen == [[0, 1, 2], [5]]
    assert len(list((tmp_path / "run-5").iterdir())) == 2  # one file per batch that computed something
    monkeypatch.setattr(batches, "_memo", first)  # the first worker again: it takes in "d"
    assert chain(docs(["d", "a1"], range(7, 9))).equals(plain(docs(["d", "a1"], range(7, 9))))
    assert stage.seen == [[0, 1, 2], [5]]


def test_a_full_memo_neither_takes_in_nor_writes_more(tmp_path, monkeypatch):
    monkeypatch.setattr(batches, "shared_directory", lambda tag: str(tmp_path / tag))
    monkeypatch.setattr(batches, "MEMO_ROWS", 2)
    monkeypatch.setattr(batches, "_memo", None)
    stage = Recorder("a", "too_short")
    chain = RowChain((stage,), SCHEMA, memo="run-6")
    chain(docs(["a", "b", "c"], range(3)))  # fills the first worker's memory
    monkeypatch.setattr(batches, "_memo", None)
    chain(docs(["d", "e"], range(3, 5)))  # the second takes in three documents: full, it writes nothing
    chain(docs(["b", "e"], range(5, 7)))
    assert stage.seen == [[0, 1, 2], [3, 4], [6]]
    assert len(list((tmp_path / "run-6").iterdir())) == 1


def test_a_memo_that_cannot_write_its_files_goes_on_unshared(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setattr(batches, "shared_directory", lambda tag: str(blocked / tag))
    monkeypatch.setattr(batches, "_memo", None)
    stage = Recorder("a", "too_short")
    chain = RowChain((stage,), SCHEMA, memo="run-7")
    plain = RowChain((Recorder("a", "too_short"),), SCHEMA)
    one, two = docs(["a1", "b"], range(2)), docs(["b", "c"], range(2, 4))
    assert chain(one).equals(plain(one)) and chain(two).equals(plain(two))
    assert batches._memo.directory is None
    assert stage.seen == [[0, 1], [3]]  # still remembered within the worker


@pytest.mark.parametrize("seed", [0, 1])
def test_memo_with_the_real_filters_and_hash_equals_the_plain_chain(seed):
    """The pipeline's own row functions (every filter, exact dedup's hash) on prose and code with copies spread
    over batches, some copies marked invalid by ingestion."""
    rng = random.Random(seed)
    originals = [prose(rng, lines=rng.randint(1, 8)) if rng.random() < 0.7 else python_module(rng) for _ in range(40)]
    texts = [rng.choice(originals) for _ in range(300)] + ["", None, "short"]
    kinds = ["code" if t and t.startswith(("import", "def", "class", "#")) else "text" for t in texts]
    schema = arrow_schema(T.StructType(annotated_schema().fields + [T.StructField(CHARS, T.LongType()), HASH_FIELD]))
    fns = (FilterChain.from_config(FilterOptions()), text_hashes)
    plain, chain = RowChain(fns, schema), RowChain(fns, schema, memo=f"real-{seed}")
    for start in range(0, len(texts), 64):
        part = docs(texts[start : start + 64], range(start, min(start + 64, len(texts))), kinds[start : start + 64])
        reasons = ["invalid" if rng.random() < 0.05 else None for _ in range(part.num_rows)]
        part = part.append_column("reason", pa.array(reasons, pa.string()))
        assert chain(part).equals(plain(part))


COUNTS = [  # what group_counts returns for an annotated copy: (reason, rule name, kind, lang) -> docs, chars
    {"reason": None, "rule_name": "", "kind": "text", "lang": "en", "docs": 5, "chars": 500},
    {"reason": "invalid", "rule_name": "json", "kind": "text", "lang": None, "docs": 1, "chars": 0},
    {"reason": "too_short", "rule_name": "min_lines", "kind": "text", "lang": None, "docs": 2, "chars": 20},
    {"reason": "too_short", "rule_name": "min_lines", "kind": "code", "lang": None, "docs": 1, "chars": 5},
    {"reason": "language", "rule_name": "language_score", "kind": "text", "lang": "de", "docs": 3, "chars": 300},
]


def test_flows_chain_each_stage_from_the_previous_output():
    stages = [("ingest", ("invalid",)), ("filter", ("too_short", "repetition")), ("langid", ("language",))]
    got = flows(COUNTS, stages, docs=12, chars=825)
    assert [(got[n]["docs_in"], got[n]["docs_out"]) for n, _ in stages] == [(12, 11), (11, 8), (8, 5)]
    assert [(got[n]["chars_in"], got[n]["chars_out"]) for n, _ in stages] == [(825, 825), (825, 800), (800, 500)]
    assert got["filter"]["removed_by_reason"] == {"too_short": 3}
    assert got["filter"]["removed_by_rule"] == {"too_short:min_lines": 3}
    assert got["langid"]["removed_by_rule"] == {"language:language_score": 3}


def test_seen_by_drops_earlier_removals_and_counts_later_ones_as_kept():
    filter_view = seen_by(COUNTS, ["invalid"], ("too_short",))
    assert sum(r["docs"] for r in filter_view) == 11
    assert sum(r["docs"] for r in filter_view if r["reason"] is not None) == 3  # langid's removals look kept
    langid_view = seen_by(COUNTS, ["invalid", "too_short"], ("language",))
    assert sum(r["docs"] for r in langid_view) == 8
    assert {r["reason"] for r in langid_view} == {None, "language"}
