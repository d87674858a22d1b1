"""The fused first pass without Spark: RowChain (row stages applied in order to the rows still kept) and the
pipeline's per-stage counts derived from one aggregate (flows, seen_by)."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import types as T

from spark_jobs.batches import CHARS, RowChain
from spark_jobs.documents import annotated_schema, arrow_schema
from spark_jobs.pipeline import flows, seen_by

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
        return {"reason": [self.reason if h else None for h in hit], "rule": [f"{self.prefix}!" if h else None for h in hit]}


def test_row_chain_shows_each_stage_only_the_rows_still_kept_and_measures_every_row():
    first, second = Recorder("a", "too_short"), Recorder("b", "language")
    out = RowChain((first, second), SCHEMA)(batch(["a1", "b22", "c333", None, "a4"], [None, None, None, "invalid", None]))
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
