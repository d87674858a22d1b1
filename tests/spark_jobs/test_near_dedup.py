"""The near_dedup stage on a small corpus with known Jaccard indices: what is caught, what is kept, and why.

One annotate run on a one-partition input serves most tests (Spark jobs dominate the runtime); a second run on
seven partitions checks determinism, a third runs near dedup after the exact_dedup stage; whole pipeline runs check
the signatures computed in ingestion's pass.
"""

from __future__ import annotations

import json
import random
import shutil

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from spark_jobs.config import PipelineConfig
from spark_jobs.dedup.exact import ExactDedupStage
from spark_jobs.dedup.minhash import exact_jaccard
from spark_jobs.dedup.near import (
    REASON,
    NearDedupOptions,
    NearDedupParams,
    NearDedupStage,
    band_rows,
    shared_buckets,
    size_bin,
    star_edges,
    with_estimates,
)
from spark_jobs.documents import doc_schema
from spark_jobs.pipeline import run as run_pipeline
from tests.spark_jobs.stage_utils import annotate
from tests.spark_jobs.stage_utils import report as stage_report

N = 5
RNG = random.Random(1234)


def fresh_words(count: int) -> list[str]:
    """Words never used before in this corpus, so every n-gram of a base text is unique to it."""
    return [f"w{RNG.randrange(10**12)}" for _ in range(count)]


def replace(words: list[str], k: int, start: int) -> list[str]:
    """``k`` words replaced at positions ``start``, ``start + 15``, ...: each replacement changes exactly N n-grams.

    With S n-grams and k spaced replacements the Jaccard index is (S - N k) / (S + N k).
    """
    out = list(words)
    for i in range(k):
        out[start + 15 * i] = fresh_words(1)[0]
    return out


def text(words: list[str]) -> str:
    return " ".join(words)


BASE = {name: fresh_words(400) for name in ("p95", "p50", "chain", "copies", "reverse", "case", "code")}
CHAIN_B = replace(BASE["chain"], 6, start=10)  # J(A, B) = (396 - 30) / (396 + 30) = 0.86
CHAIN_C = replace(CHAIN_B, 6, start=200)  # J(B, C) = 0.86, J(A, C) = (396 - 60) / (396 + 60) = 0.74

CORPUS: dict[int, tuple[str | None, str]] = {
    10: (text(BASE["p95"]), "text"),
    11: (text(replace(BASE["p95"], 2, start=100)), "text"),  # J = 0.951: caught
    20: (text(BASE["p50"]), "text"),
    21: (text(replace(BASE["p50"], 26, start=7)), "text"),  # J = 0.5: kept
    30: (text(BASE["chain"]), "text"),
    31: (text(CHAIN_B), "text"),
    32: (text(CHAIN_C), "text"),
    40: (text(BASE["copies"]), "text"),
    41: (text(BASE["copies"]), "text"),  # exact copies
    42: (text(BASE["copies"]), "text"),
    43: (text(replace(BASE["copies"], 2, start=50)), "text"),
    60: (text(BASE["reverse"]), "text"),
    6: (text(replace(BASE["reverse"], 1, start=300)), "text"),  # the near copy has the smaller id: it is kept
    70: ("four words only here", "text"),
    71: ("four words only here", "text"),  # identical but shorter than n words: never a near-duplicate
    72: ("Four   words only\there", "text"),
    80: (None, "text"),
    81: ("", "text"),
    100: (text(BASE["case"]), "text"),
    101: ("\t".join(BASE["case"]).upper(), "text"),  # same words after lowercasing and splitting
    110: ("\n".join(BASE["code"]), "code"),
    111: ("\n".join(replace(BASE["code"], 1, start=20)), "code"),
    **{200 + i: (text(fresh_words(300)), "text") for i in range(8)},  # unrelated
}


def cfg_for(tmp, **overrides) -> PipelineConfig:
    return PipelineConfig(input=["unused"], output=str(tmp), **overrides)


def docs_frame(spark, ids=None):
    rows = [
        (i, t, kind, "test://corpus", None, None, None) for i, (t, kind) in CORPUS.items() if ids is None or i in ids
    ]
    return spark.createDataFrame(rows, doc_schema())


def collect(annotated) -> dict[int, tuple]:
    return {r["doc_id"]: (r["reason"], r["rule"], r["duplicate_of"]) for r in annotated.collect()}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    """One run on a one-partition input: (stage, cfg, annotated frame, {doc_id: annotation}, measured stats)."""
    cfg = cfg_for(tmp_path_factory.mktemp("near"))
    stage = NearDedupStage()
    annotated, stats = annotate(stage, docs_frame(spark).repartition(1), cfg)
    annotated = annotated.localCheckpoint()
    return stage, cfg, annotated, collect(annotated), stats


def kept(result: dict[int, tuple]) -> set[int]:
    return {i for i, (reason, _, _) in result.items() if reason is None}


def test_corpus_has_the_intended_similarities():
    j = {
        pair: exact_jaccard(CORPUS[pair[0]][0], CORPUS[pair[1]][0], N)
        for pair in [(10, 11), (20, 21), (30, 31), (31, 32), (30, 32), (100, 101)]
    }
    assert j[(10, 11)] == pytest.approx(0.951, abs=0.002)
    assert j[(20, 21)] == pytest.approx(0.5, abs=0.01)
    assert j[(30, 31)] >= 0.85 and j[(31, 32)] >= 0.85 and j[(30, 32)] < 0.75
    assert j[(100, 101)] == 1.0


def test_every_row_comes_back_with_the_annotation_columns(run):
    _, _, annotated, result, _ = run
    assert set(result) == set(CORPUS)
    assert annotated.columns == doc_schema().fieldNames() + ["reason", "rule", "duplicate_of"]
    assert dict(annotated.dtypes)["duplicate_of"] == "bigint"


def test_high_jaccard_caught_low_jaccard_kept(run):
    result = run[3]
    assert result[11][0] == REASON and result[11][2] == 10
    assert result[10] == (None, None, None)
    assert result[20] == result[21] == (None, None, None)
    assert result[6] == (None, None, None) and result[60][2] == 6  # smallest doc_id kept, not first seen
    assert result[111][2] == 110  # code documents are near-deduplicated too
    assert result[101][2] == 100  # case and whitespace do not matter
    assert all(result[200 + i][0] is None for i in range(8))


def test_rule_names_the_bands_and_the_estimate(run):
    reason, rule, _ = run[3][11]
    params = NearDedupParams.from_config(run[1].options(NearDedupOptions))
    assert rule.startswith(f"minhash b={params.bands.b} r={params.bands.r} est_jaccard=")
    assert abs(float(rule.rsplit("=", 1)[1]) - 0.951) < 0.08


def test_short_empty_and_null_documents_are_never_near_duplicates(run):
    result = run[3]
    for doc_id in (70, 71, 72, 80, 81):
        assert result[doc_id] == (None, None, None)


def test_adversarial_chain_is_one_component_keeping_its_smallest(run):
    """A~B, B~C, A not~C: connected components remove B and C, both pointing at A (the documented choice)."""
    result = run[3]
    assert result[30][0] is None
    assert result[31][2] == 30 and result[32][2] == 30
    assert float(result[32][1].rsplit("=", 1)[1]) < 0.8  # the rule shows C is only a chain member of A's group


def test_exact_copies_point_at_the_smallest_copy(run):
    result = run[3]
    assert result[40][0] is None and {result[i][2] for i in (41, 42, 43)} == {40}


def test_exact_then_near_keeps_what_near_alone_keeps(spark, run, tmp_path):
    """Exact duplicates have Jaccard 1, so near dedup already removes them: the two stages commute."""
    docs = docs_frame(spark)
    exact, _ = annotate(ExactDedupStage(), docs, cfg_for(tmp_path))
    exact_kept = {r["doc_id"] for r in exact.where(F.col("reason").isNull()).select("doc_id").collect()}
    after_exact, _ = annotate(NearDedupStage(), docs.where(F.col("doc_id").isin(exact_kept)), cfg_for(tmp_path))
    near_alone = kept(run[3])
    assert kept(collect(after_exact)) == near_alone & exact_kept
    long_exact_copies = {i for i in set(CORPUS) - exact_kept if len((CORPUS[i][0] or "").split()) >= N}
    assert long_exact_copies and not long_exact_copies & near_alone


METHODS = ("lsh_method", "components_method", "components_rounds")


@pytest.mark.parametrize(
    ("overrides", "methods"),
    [
        ({"dedup_local_docs": 0}, ("spark", "one_task")),
        ({"dedup_local_docs": 0, "dedup_local_edges": 0, "dedup_checkpoint": "reliable"}, ("spark", "star_rounds")),
    ],
)
def test_output_and_statistics_are_identical_across_partitionings_checkpoint_modes_and_methods(
    spark, run, tmp_path, overrides, methods
):
    """The fixture's signatures go through LSH and components in one task; here the same ones through Spark jobs,
    with components in one task or in star rounds: same annotations, same bucket and edge statistics."""
    seven, stats = annotate(NearDedupStage(), docs_frame(spark).repartition(7), cfg_for(tmp_path, **overrides))
    assert (run[4]["lsh"]["lsh_method"], run[4]["lsh"]["components_method"]) == ("one_task", "one_task")
    assert (stats["lsh"]["lsh_method"], stats["lsh"]["components_method"]) == methods
    assert seven.rdd.getNumPartitions() > 0
    assert collect(seven) == run[3]
    assert sorted(run[2].collect()) == sorted(seven.collect())
    local = {k: v for k, v in run[4]["lsh"].items() if k not in METHODS}
    assert local["verified_edges"] > 0 and local["largest_buckets"][0]["size"] >= 3
    assert {k: v for k, v in stats["lsh"].items() if k not in METHODS} == local


def pipeline_removals(spark, out) -> dict[int, tuple]:
    rows = spark.read.parquet(str(out / "_stages" / "01-near_dedup")).collect()
    return {r["doc_id"]: (r["reason"], r["rule"], r["duplicate_of"]) for r in rows}


def fused_columns(out) -> list[str]:
    return pq.read_schema(next((out / "_stages" / "00-ingest").glob("*.parquet"))).names


def test_pipeline_takes_signatures_from_ingestion_or_computes_its_own(spark, run, tmp_path):
    """A run computes near dedup's signatures in ingestion's pass, into a column named by the MinHash options. A
    copy of that pass, reused by a run with another seed, has no column for the new seed, so the stage computes the
    signatures itself: the removals are the same either way, and the same as the stage run alone."""
    source = tmp_path / "in.jsonl"
    rows = [{"id": i, "text": t, "kind": kind} for i, (t, kind) in CORPUS.items()]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def pipeline(out, *flags):
        args = ["--input", str(source), "--output", str(out), "--stages", "near_dedup", "--id-column", "id", *flags]
        return run_pipeline(PipelineConfig.from_args(args), spark)

    report = pipeline(tmp_path / "seed0")
    assert "_minhash_n5_p128_s0" in fused_columns(tmp_path / "seed0")
    removed = {i: v for i, v in run[3].items() if v[0] == REASON}
    assert pipeline_removals(spark, tmp_path / "seed0") == removed

    # More signatures than --dedup-local-docs: the one task stops reading, and the Spark jobs find the same.
    over = pipeline(tmp_path / "over", "--dedup-local-docs", "5")
    lsh, over_lsh = report["stages"]["near_dedup"]["lsh"], over["stages"]["near_dedup"]["lsh"]
    assert (lsh["lsh_method"], over_lsh["lsh_method"]) == ("one_task", "spark")
    assert over_lsh["signed_docs"] == lsh["signed_docs"] == len(CORPUS) - 5  # 5 have fewer than n words
    assert pipeline_removals(spark, tmp_path / "over") == removed

    shutil.copytree(tmp_path / "seed0", tmp_path / "reused")
    pipeline(tmp_path / "reused", "--seed", "1")
    pipeline(tmp_path / "fresh", "--seed", "1")
    assert "_minhash_n5_p128_s1" not in fused_columns(tmp_path / "reused")
    assert "_minhash_n5_p128_s1" in fused_columns(tmp_path / "fresh")
    reused = pipeline_removals(spark, tmp_path / "reused")
    assert reused and reused == pipeline_removals(spark, tmp_path / "fresh")


def test_report(run):
    stage, cfg, annotated, result, stats = run
    report = stage_report(stage, annotated, cfg, stats)
    params = NearDedupParams.from_config(cfg.options(NearDedupOptions))
    assert (report["b"], report["r"]) == (params.bands.b, params.bands.r)
    assert list(report["s_curve"]) == [f"{s / 10:.1f}" for s in range(1, 11)]
    # groups: {10,11} {30,31,32} {40,41,42,43} {6,60} {100,101} {110,111}
    assert report["components"] == 6
    assert report["component_sizes"] == {"2": 4, "3-4": 2}
    assert report["largest_components"][0] == {"kept_doc_id": 40, "size": 4}
    removed = {i for i, (reason, _, _) in result.items() if reason == REASON}
    assert len(report["audit"]) == len(removed)  # fewer than 20 removed: all of them
    for entry in report["audit"]:
        expected = exact_jaccard(CORPUS[entry["doc_id"]][0], CORPUS[entry["kept_doc_id"]][0], N)
        assert entry["exact_jaccard"] == pytest.approx(expected, abs=1e-4)
        assert entry["text"] == (CORPUS[entry["doc_id"]][0] or "")[:80]
    lsh = report["lsh"]
    assert lsh["signed_docs"] == len(CORPUS) - 5  # the short, empty and null documents get no signature
    assert lsh["verified_edges"] <= lsh["candidate_edges"]
    assert isinstance(lsh["components_rounds"], int) and lsh["oversized_buckets"] == 0


def test_verification_stops_a_hub_from_chaining_unrelated_documents(spark):
    """H shares one band with X and another with Y; X and Y share nothing. Only verified edges may link them."""
    # 8 permutations, 4 bands of 2: H agrees with X on band 0 only, with Y on band 1 only
    sigs = spark.createDataFrame(
        [(1, [5, 5, 1, 1, 2, 2, 3, 3]), (2, [5, 5, 9, 9, 8, 8, 7, 7]), (3, [6, 6, 1, 1, 4, 4, 0, 0])],
        "doc_id long, sig array<int>",
    )
    params = NearDedupParams.from_config(
        cfg_for("unused", num_perm=8, dedup_fp_weight=0.5, dedup_fn_weight=0.5).options(NearDedupOptions)
    )
    rows = band_rows(sigs, type(params.bands)(b=4, r=2))
    edges = with_estimates(star_edges(rows, shared_buckets(rows)), sigs, 8).collect()
    assert sorted((e["src"], e["dst"], e["est"]) for e in edges) == [(2, 1, 0.25), (3, 1, 0.25)]
    assert all(e["est"] < params.min_estimate for e in edges)  # so neither becomes an edge of the graph


def test_size_bins():
    assert [size_bin(s) for s in (2, 3, 4, 5, 8, 9, 16, 17)] == [
        "2",
        "3-4",
        "3-4",
        "5-8",
        "5-8",
        "9-16",
        "9-16",
        "17-32",
    ]


def test_bad_options_fail_before_any_spark_work(tmp_path):
    with pytest.raises(ValueError, match="dedup-checkpoint"):
        NearDedupParams.from_config(cfg_for(tmp_path, dedup_checkpoint="sometimes").options(NearDedupOptions))
    with pytest.raises(ValueError, match="margin"):
        NearDedupParams.from_config(cfg_for(tmp_path, dedup_margin=0.9).options(NearDedupOptions))
