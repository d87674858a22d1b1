"""Exact dedup: whitespace normalisation, smallest doc_id kept, duplicate_of, report, and partition independence."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import types as T

from spark_jobs.config import PipelineConfig
from spark_jobs.dedup.exact import HASH_RULE, REASON_EXACT_DUPLICATE, ExactDedupStage, normalize_whitespace, text_hashes
from spark_jobs.documents import doc_schema
from tests.spark_jobs.stage_utils import annotate
from tests.spark_jobs.stage_utils import report as stage_report

CFG = PipelineConfig()


def test_normalisation_collapses_every_unicode_whitespace_run():
    texts = ["  a\u00a0\u3000b\x0b\x0cc\x85\u2028d\r\n\te\x1cf ", "", None, "中  é\n", "\n\t "]
    normalized = normalize_whitespace(pa.array(texts, pa.string()))
    assert normalized == [b"a b c d e f", b"", b"", "中 é".encode(), b""]


def test_hash_ignores_whitespace_layout_only():
    batch = pa.RecordBatch.from_pydict({"text": ["a b\nc", "  a\tb   c\n\n", "a bc", "A b c"]})
    digests = text_hashes(batch)["text_hash"].to_pylist()
    assert len(digests[0]) == 16
    assert digests[0] == digests[1]
    assert len(set(digests)) == 3


def documents(spark, ids):
    texts = ["alpha beta", "alpha  beta\n", "gamma", "alpha\tbeta", "delta", "gamma ", "Alpha beta", "delta"]
    rows = [(doc_id, text, "text", "mem://test", None, None, None) for doc_id, text in zip(ids, texts, strict=True)]
    id_type = T.StringType() if isinstance(ids[0], str) else T.LongType()
    return spark.createDataFrame(rows, doc_schema(id_type))


def test_exact_dedup_keeps_smallest_id_and_points_to_it(spark):
    ids = [70, 30, 50, -5, 8, 40, 1, 9]  # the group "alpha beta" is 70, 30, -5: -5 is kept
    annotated = annotate(ExactDedupStage(), documents(spark, ids), CFG)[0].cache()
    rows = {r["doc_id"]: r for r in annotated.collect()}
    assert len(rows) == len(ids)
    duplicates = {i: r["duplicate_of"] for i, r in rows.items() if r["reason"] is not None}
    assert duplicates == {70: -5, 30: -5, 50: 40, 9: 8}
    assert {r["rule"] for i, r in rows.items() if i in duplicates} == {HASH_RULE}
    assert {r["reason"] for i, r in rows.items() if i in duplicates} == {REASON_EXACT_DUPLICATE}
    assert all(r["rule"] is None and r["duplicate_of"] is None for i, r in rows.items() if i not in duplicates)
    assert rows[70]["text"] == "alpha beta"  # the text itself is never rewritten
    report = stage_report(ExactDedupStage(), annotated, CFG)
    assert report == {"hash": HASH_RULE, "duplicate_groups": 3, "duplicates_removed": 4, "largest_groups": [3, 2, 2]}


def test_exact_dedup_with_string_ids_and_partitionings(spark):
    ids = ["h", "c", "e", "b", "x", "d", "a", "y"]
    docs = documents(spark, ids)
    results = [annotate(ExactDedupStage(), docs.repartition(n), CFG)[0].orderBy("doc_id").collect() for n in (1, 5)]
    assert results[0] == results[1]
    duplicates = {r["doc_id"]: r["duplicate_of"] for r in results[0] if r["reason"]}
    assert duplicates == {"h": "b", "c": "b", "e": "d", "y": "x"}


def test_report_without_duplicates(spark):
    docs = documents(spark, list(range(8))).where("doc_id in (0, 2, 4)")
    annotated = annotate(ExactDedupStage(), docs, CFG)[0]
    assert stage_report(ExactDedupStage(), annotated, CFG) == {
        "hash": HASH_RULE,
        "duplicate_groups": 0,
        "duplicates_removed": 0,
        "largest_groups": [],
    }
