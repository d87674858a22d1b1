"""Near-duplicate removal: MinHash LSH candidates, verified edges, connected components, keep each component's min.

Definitions: similarity is the Jaccard index of the word n-gram sets of the lowercased, whitespace-split
text; a document with fewer than n words is never a near-duplicate (it gets no signature, so no edge); each
connected component of the near-duplicate graph keeps its smallest ``doc_id`` and the others are removed with
``reason = near_duplicate`` and ``duplicate_of`` = that kept ``doc_id``.

How, and why this way:

1. **Signatures** (:mod:`.minhash`): per Arrow batch in numpy, bit-identical to datasketch's ``MinHash``; in the
   pipeline, computed in ingestion's pass (where the text already is in Python) into a column of its copy.
2. **Candidates**: every document is exploded into its ``b`` band keys; documents sharing a (band, key) bucket are
   candidates. Each member is linked to the bucket's smallest ``doc_id`` only (star edges): O(bucket) edges
   instead of O(bucket^2) pairs, which is all connected components needs, and what keeps huge buckets (thousands
   of copies of one licence) cheap. Buckets larger than ``--max-bucket-size`` are logged and listed in the report
   (a boilerplate cluster or degenerate documents), and still processed.
3. **Verification**: an edge survives only when the two full signatures agree in at least
   ``threshold - margin`` of their values (the MinHash Jaccard estimate). A chance collision in one band, or a hub
   document that collides with many unrelated ones, therefore cannot chain unrelated documents together.
   The band search (datasketch's, with weights ``--dedup-fp-weight``/``--dedup-fn-weight``) leans to recall
   (0.02/0.98 gives b=17, r=7 at 0.8 and 128 permutations: candidacy 0.98 at s=0.8, against 0.40 for the
   neutral 0.5/0.5 choice b=9, r=13), because false positives cost one verification each and false negatives are
   duplicates left in the corpus. The default margin is 0: the estimate is unbiased, so the verified graph is a
   sampled version of the defined graph (pairs at or above the threshold). A positive margin admits pairs below the
   threshold, and connected components turn those into longer chains: recall rises a little and precision drops
   much more (docs/benchmarks.md, near-dedup quality).
4. **Components** (:mod:`.components`): in one task when the verified edges are few (``--dedup-local-edges``),
   else large-star/small-star rounds on the verified edges, checkpointed each round.

Steps 2-4 take a dozen Spark jobs, mostly scheduling when the corpus is small. Up to ``--dedup-local-docs`` signed
documents (512 bytes each at 128 permutations), one task reads all signatures and does the same in numpy
(:mod:`.local_lsh`): the same removals and the same statistics (tested), in one job.

Decided behaviour for chains: A~B and B~C (both at or above the threshold) but A and C below it. Connected
components put all three in one group, so A (the smallest) is kept and B *and* C are removed with
``duplicate_of = A``, although C is not itself similar to A. That is this project's definition (a duplicate group
is a connected component) and the usual choice for pretraining data: C adds little that B did not, and any
pairwise-only rule depends on the order documents are seen. The ``rule`` of each removed document shows its
estimated Jaccard to the kept one, so chain members (low estimate) are visible in ``removed/``.

Composition with exact dedup: exact copies have identical signatures, so they fall in the same buckets in every
band, verify at 1.0 and always link to the smallest copy. Running exact dedup first therefore changes nothing
about which documents near dedup keeps among documents with at least n words (tested).

Unlike a row-wise filter, ``annotate`` runs Spark jobs before returning: signatures the stage computes itself are
materialised and counted (which path to take; ingestion's go to the one task, which says when they are too many),
and the one task's result, or buckets, verified edges and every components round, are materialised (checkpointed),
because the statistics and the components loop need them.
The returned frame is the (lazy) join of the input with the removals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.options import opt
from spark_jobs import storage
from spark_jobs.batches import map_batches, size_counts
from spark_jobs.dedup.components import Cut, connected_components
from spark_jobs.dedup.local_lsh import near_duplicates
from spark_jobs.dedup.minhash import Bands, MinHasher, choose_bands, exact_jaccard
from spark_jobs.documents import arrow_schema, hint_small
from spark_jobs.stage import CorpusResult, CorpusStage, RowPrep, StageView

REASON = "near_duplicate"
AUDIT_SAMPLE = 20
AUDIT_CHARS = 80
TOP = 10
CHECKPOINT_MODES = ("local", "reliable")

log = logging.getLogger(__name__)


@dataclass
class NearDedupOptions:
    dedup_threshold: float = opt(0.8, "near-duplicate Jaccard threshold")
    num_perm: int = opt(128, "MinHash permutations")
    ngram: int = opt(5, "word n-gram size for near-dedup shingles")
    dedup_fp_weight: float = opt(0.02, "LSH (b, r) search: weight of false positives (cheap: candidates are verified)")
    dedup_fn_weight: float = opt(0.98, "LSH (b, r) search: weight of false negatives (missed near-duplicates)")
    dedup_margin: float = opt(0.0, "link a candidate pair only when its MinHash Jaccard estimate >= threshold - margin")
    max_bucket_size: int = opt(10_000, "LSH buckets larger than this are logged and listed in the report (still used)")
    dedup_max_iterations: int = opt(40, "connected-components round limit; hitting it is an error")
    dedup_local_edges: int = opt(
        2_000_000, "components of at most this many verified edges are found in one task; more take star rounds"
    )
    dedup_local_docs: int = opt(
        500_000, "near dedup of at most this many signed documents runs in one task (LSH, verification, components)"
    )
    dedup_checkpoint: str = opt(
        "local", "components loop lineage cut: 'local' (executor storage) or 'reliable' (files)", execution_only=True
    )
    seed: int = opt(0, "MinHash permutations derive from the run's seed", run_wide=True)

    def validate(self) -> None:
        NearDedupParams.from_config(self)


@dataclass(frozen=True)
class NearDedupParams:
    """The options this stage reads from the pipeline config, validated, plus the LSH banding derived from them."""

    threshold: float
    num_perm: int
    ngram: int
    seed: int
    margin: float
    bands: Bands
    max_bucket_size: int
    max_iterations: int
    local_edges: int
    local_docs: int
    checkpoint: str

    @classmethod
    def from_config(cls, cfg: NearDedupOptions) -> NearDedupParams:
        """Read and check the options (``ValueError`` with the flag's name), before any Spark work."""
        if not 0 < cfg.dedup_threshold <= 1:
            raise ValueError("--dedup-threshold must be in (0, 1]")
        if cfg.num_perm < 1 or cfg.ngram < 1:
            raise ValueError("--num-perm and --ngram must be >= 1")
        if cfg.dedup_checkpoint not in CHECKPOINT_MODES:
            raise ValueError(f"--dedup-checkpoint must be one of {CHECKPOINT_MODES}, not {cfg.dedup_checkpoint!r}")
        if not 0 <= cfg.dedup_margin < cfg.dedup_threshold:
            raise ValueError("--dedup-margin must be in [0, --dedup-threshold)")
        if cfg.dedup_fp_weight < 0 or cfg.dedup_fn_weight < 0 or cfg.dedup_fp_weight + cfg.dedup_fn_weight <= 0:
            raise ValueError("--dedup-fp-weight and --dedup-fn-weight must be >= 0 and not both 0")
        if cfg.max_bucket_size < 2 or cfg.dedup_max_iterations < 1:
            raise ValueError("--max-bucket-size must be >= 2 and --dedup-max-iterations >= 1")
        if cfg.dedup_local_edges < 0 or cfg.dedup_local_docs < 0:
            raise ValueError("--dedup-local-edges and --dedup-local-docs must be >= 0")
        return cls(
            threshold=cfg.dedup_threshold,
            num_perm=cfg.num_perm,
            ngram=cfg.ngram,
            seed=cfg.seed,
            margin=cfg.dedup_margin,
            bands=choose_bands(cfg.dedup_threshold, cfg.num_perm, cfg.dedup_fp_weight, cfg.dedup_fn_weight),
            max_bucket_size=cfg.max_bucket_size,
            max_iterations=cfg.dedup_max_iterations,
            local_edges=cfg.dedup_local_edges,
            local_docs=cfg.dedup_local_docs,
            checkpoint=cfg.dedup_checkpoint,
        )

    @property
    def min_estimate(self) -> float:
        """The estimated Jaccard a candidate edge needs to be kept."""
        return self.threshold - self.margin

    @property
    def hasher(self) -> MinHasher:
        return MinHasher(self.ngram, self.num_perm, self.seed)

    @property
    def signature_column(self) -> str:
        """The fused pass's signature column, named by what the signatures depend on: a copy reused from a run
        with other MinHash options has another name, so its signatures are never taken for these."""
        return f"_minhash_n{self.ngram}_p{self.num_perm}_s{self.seed}"

    @property
    def rule_prefix(self) -> str:
        """The start of every removed document's ``rule``: which banding found it."""
        return f"minhash b={self.bands.b} r={self.bands.r}"


# --- Spark glue -------------------------------------------------------------------------------------------------


SIGNATURE_TYPE = T.ArrayType(T.IntegerType(), containsNull=False)
"""A signature's column type: the uint32 values reinterpreted as Spark's (signed) integers."""


@dataclass(frozen=True)
class _SignatureColumn:
    """Batch function: the signature column ``name``, null for documents with fewer than n words."""

    hasher: MinHasher
    name: str = "sig"

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, pa.Array]:
        sigs, eligible = self.hasher.signatures(batch.column("text").to_pylist())
        values = pa.array(sigs.view(np.int32).ravel())
        return {self.name: pa.FixedSizeListArray.from_arrays(values, self.hasher.num_perm, mask=pa.array(~eligible))}


def signatures(docs: DataFrame, params: NearDedupParams) -> DataFrame:
    """``doc_id``, ``sig`` for every document with an n-gram: from the column ingestion's pass computed
    (:meth:`NearDedupStage.row_prep`) when ``docs`` has it, else computed here."""
    if params.signature_column in docs.columns:
        sigs = docs.select("doc_id", F.col(params.signature_column).alias("sig"))
    else:
        schema = T.StructType([docs.schema["doc_id"], T.StructField("sig", SIGNATURE_TYPE, True)])
        sigs = map_batches(docs.select("doc_id", "text"), _SignatureColumn(params.hasher), schema)
    return sigs.where(F.col("sig").isNotNull())


def band_rows(sigs: DataFrame, bands: Bands) -> DataFrame:
    """One row per (document, band): ``doc_id``, ``band``, ``key`` (the band's r signature values)."""
    keys = F.array(*[F.slice("sig", i * bands.r + 1, bands.r) for i in range(bands.b)])
    return sigs.select("doc_id", F.posexplode(keys).alias("band", "key"))


def shared_buckets(rows: DataFrame) -> DataFrame:
    """Buckets with at least two documents: ``band``, ``key``, ``hub`` (smallest doc_id) and ``size``."""
    buckets = rows.groupBy("band", "key").agg(F.min("doc_id").alias("hub"), F.count(F.lit(1)).alias("size"))
    return buckets.where(F.col("size") > 1)


def star_edges(rows: DataFrame, buckets: DataFrame) -> DataFrame:
    """Candidate edges ``src`` -> ``dst``: each bucket member to its bucket's hub, once per pair over all bands."""
    members = rows.join(buckets.select("band", "key", "hub"), ["band", "key"])
    return (
        members.where(F.col("doc_id") != F.col("hub"))
        .select(F.col("doc_id").alias("src"), F.col("hub").alias("dst"))
        .distinct()
    )


def estimated_jaccard(left: Column, right: Column, num_perm: int) -> Column:
    """Share of equal positions of two signatures: the MinHash estimate of their documents' Jaccard index."""
    equal = F.zip_with(left, right, lambda x, y: (x == y).cast("int"))
    return F.aggregate(equal, F.lit(0), lambda acc, x: acc + x) / F.lit(num_perm)


def with_estimates(pairs: DataFrame, sigs: DataFrame, num_perm: int) -> DataFrame:
    """``pairs`` (``src``, ``dst``) plus ``est``, their signatures' Jaccard estimate (two joins, no collect)."""
    src = sigs.select(F.col("doc_id").alias("src"), F.col("sig").alias("src_sig"))
    dst = sigs.select(F.col("doc_id").alias("dst"), F.col("sig").alias("dst_sig"))
    joined = pairs.join(src, "src").join(dst, "dst")
    return joined.select("src", "dst", estimated_jaccard(F.col("src_sig"), F.col("dst_sig"), num_perm).alias("est"))


def make_cut(docs: DataFrame, mode: str, output: str) -> Cut:
    """Lineage cut for the materialised steps: executor-local, or reliable files under the checkpoint dir.

    Lazy (see :data:`Cut`): each cut frame's first use is a statistics or convergence count, which materialises it.
    The reliable mode uses the session's checkpoint dir (the pipeline sets ``OUTPUT/_checkpoints``), setting it
    here only when nobody has.
    """
    if mode == "local":
        return lambda df: df.localCheckpoint(eager=False)
    sc = docs.sparkSession.sparkContext
    if not sc.getCheckpointDir():
        sc.setCheckpointDir(storage.spark_path(storage.join(output, "_checkpoints")))
    return lambda df: df.checkpoint(eager=False)


# --- statistics -------------------------------------------------------------------------------------------------


def size_bin(size: int) -> str:
    """Power-of-two bins for group sizes: 2, 3-4, 5-8, 9-16, ..."""
    k = (size - 1).bit_length()
    return "2" if k <= 1 else f"{(1 << (k - 1)) + 1}-{1 << k}"


def size_histogram(counts: Mapping[int, int]) -> dict[str, int]:
    """Group counts per :func:`size_bin`, smallest bin first."""
    hist: dict[str, int] = {}
    for size in sorted(counts):
        hist[size_bin(size)] = hist.get(size_bin(size), 0) + counts[size]
    return hist


def largest(groups: DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """The ``TOP`` largest groups as dicts of ``columns``: by ``size`` descending, ties by the other columns."""
    order = [F.desc("size")] + [F.asc(c) for c in columns if c != "size"]
    return [row.asDict() for row in groups.select(*columns).orderBy(*order).limit(TOP).collect()]


def bucket_stats(counts: Mapping[int, int], largest_buckets: list[dict[str, Any]], params: NearDedupParams) -> dict:
    """The report's bucket part: the number of shared buckets per size (``counts``) as totals and a histogram, the
    largest buckets, and how many exceed ``max_bucket_size`` (also logged)."""
    oversized = sum(n for size, n in counts.items() if size > params.max_bucket_size)
    if oversized:
        log.warning("near_dedup: %d LSH buckets hold more than %d documents", oversized, params.max_bucket_size)
    return {
        "shared_buckets": sum(counts.values()),
        "bucket_sizes": size_histogram(counts),
        "largest_buckets": largest_buckets,
        "oversized_buckets": oversized,
    }


def edge_stats(candidates: DataFrame, params: NearDedupParams) -> dict[str, int]:
    """How many candidate edges there were and how many passed verification (one job)."""
    passed = F.col("est") >= params.min_estimate
    row = candidates.agg(F.count(F.lit(1)).alias("all"), F.count(F.when(passed, 1)).alias("passed")).first()
    return {"candidate_edges": int(row["all"]), "verified_edges": int(row["passed"])}


def audit_sample(docs: DataFrame, removed: DataFrame, params: NearDedupParams) -> list[dict[str, Any]]:
    """Up to ``AUDIT_SAMPLE`` removed documents (seeded choice) with their EXACT Jaccard to the kept document.

    The sample's ids come first (a few rows), then one pass over ``docs`` brings only those documents' texts to the
    driver; the exact Jaccard is the reference set computation.
    """
    order = F.xxhash64(F.col("doc_id"), F.lit(params.seed)).alias("order")
    sample = removed.select(order, "doc_id", "duplicate_of", "rule").orderBy("order", "doc_id").limit(AUDIT_SAMPLE)
    rows = sample.collect()
    wanted = {r["doc_id"] for r in rows} | {r["duplicate_of"] for r in rows}
    texts = {
        r["doc_id"]: r["text"]
        for r in docs.where(F.col("doc_id").isin(list(wanted))).select("doc_id", "text").collect()
    }
    return [
        {
            "doc_id": r["doc_id"],
            "kept_doc_id": r["duplicate_of"],
            "exact_jaccard": round(exact_jaccard(texts[r["doc_id"]], texts[r["duplicate_of"]], params.ngram), 4),
            "rule": r["rule"],
            "text": (texts[r["doc_id"]] or "")[:AUDIT_CHARS],
            "kept_text": (texts[r["duplicate_of"]] or "")[:AUDIT_CHARS],
        }
        for r in rows
    ]


# --- from signatures to removals --------------------------------------------------------------------------------


def verified_edges(sigs: DataFrame, params: NearDedupParams, cut: Cut) -> tuple[DataFrame, dict[str, Any]]:
    """Candidate star edges whose estimated Jaccard passes, and the bucket and edge statistics on the way."""
    rows = band_rows(sigs, params.bands)
    buckets = cut(shared_buckets(rows))
    stats = bucket_stats(size_counts(buckets), largest(buckets, ["hub", "band", "size"]), params)
    candidates = cut(with_estimates(star_edges(rows, buckets), sigs, params.num_perm))
    stats.update(edge_stats(candidates, params))
    return candidates.where(F.col("est") >= params.min_estimate), stats


def one_task_lsh(sigs: DataFrame, params: NearDedupParams) -> DataFrame:
    """What :func:`verified_edges` and :func:`.connected_components` find, from one task that reads all ``sigs``:
    ``doc_id``, ``duplicate_of``, ``est`` per removal, and one more row, ``doc_id`` null, whose ``report`` holds the
    statistics as JSON. Past ``local_docs`` signatures the task stops reading and returns only the report, saying
    so: memory stays bounded, and the caller takes the Spark path."""
    id_type = sigs.schema["doc_id"].dataType
    schema = T.StructType(
        [
            T.StructField("doc_id", id_type),
            T.StructField("duplicate_of", id_type),
            T.StructField("est", T.DoubleType()),
            T.StructField("report", T.StringType()),
        ]
    )
    target, limit = arrow_schema(schema), params.local_docs
    num_perm, bands, min_estimate = params.num_perm, params.bands, params.min_estimate

    def report_row(report: dict[str, Any]) -> pa.RecordBatch:
        nulls = [pa.nulls(1, field.type) for field in target][:3]
        return pa.RecordBatch.from_arrays([*nulls, pa.array([json.dumps(report)])], schema=target)

    def read(batches: Iterator[pa.RecordBatch]) -> tuple[pa.Array, np.ndarray] | None:
        """All ids and signatures, each in one array (the batches go when this returns); None past ``limit``."""
        ids, values, signed = [pa.array([], target.field("doc_id").type)], [pa.array([], pa.int32())], 0
        for batch in batches:
            signed += batch.num_rows
            if signed > limit:  # the rest stays unread (Spark starts a fresh Python worker for the next task)
                return None
            ids.append(batch.column("doc_id"))
            values.append(batch.column("sig").flatten())
        return pa.concat_arrays(ids), pa.concat_arrays(values).to_numpy().view(np.uint32).reshape(-1, num_perm)

    def find(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        signed = read(batches)
        if signed is None:
            yield report_row({"over_limit": True})
            return
        doc_ids, matrix = signed
        found = near_duplicates(doc_ids, matrix, bands, min_estimate)
        n = len(found.est)
        yield pa.RecordBatch.from_arrays(
            [found.doc_id, found.duplicate_of, pa.array(found.est, pa.float64()), pa.nulls(n, pa.string())],
            schema=target,
        )
        yield report_row(
            {
                "signed_docs": len(doc_ids),
                "buckets": found.buckets,
                "largest_buckets": found.largest_buckets,
                "candidate_edges": found.candidate_edges,
                "verified_edges": found.verified_edges,
                "removed": n,
            }
        )

    return sigs.select("doc_id", "sig").coalesce(1).mapInArrow(find, schema)


def find_removals(docs: DataFrame, params: NearDedupParams, cut: Cut) -> tuple[DataFrame, dict[str, Any]]:
    """``doc_id``, ``duplicate_of`` (its component's smallest doc_id), ``est`` for every removed document; stats.

    Up to ``local_docs`` signed documents, in one task (:func:`one_task_lsh`); beyond, in Spark jobs. Signatures
    read from ingestion's copy go to the one task directly (it says when they are too many); computed here, they
    are materialised (cut and counted) first, so that the one task does not compute them all.
    """
    fused = params.signature_column in docs.columns
    sigs = signatures(docs, params) if fused else cut(signatures(docs, params))
    signed = None if fused else sigs.count()
    if signed is None or signed <= params.local_docs:
        found = cut(one_task_lsh(sigs, params))
        report = json.loads(found.where(F.col("report").isNotNull()).select("report").collect()[0][0])
        if not report.get("over_limit"):
            removals = found.where(F.col("report").isNull()).select("doc_id", "duplicate_of", "est")
            return hint_small(removals, report["removed"]), one_task_stats(report, params)
    return spark_removals(sigs, sigs.count() if signed is None else signed, params, cut)


def one_task_stats(report: dict[str, Any], params: NearDedupParams) -> dict[str, Any]:
    """The statistics of :func:`one_task_lsh`'s report, as :func:`spark_removals` gives them."""
    buckets = {int(size): n for size, n in report["buckets"].items()}
    return {
        "signed_docs": report["signed_docs"],
        "lsh_method": "one_task",
        **bucket_stats(buckets, report["largest_buckets"], params),
        "candidate_edges": report["candidate_edges"],
        "verified_edges": report["verified_edges"],
        "components_method": "one_task",
        "components_rounds": 0,
    }


def spark_removals(sigs: DataFrame, signed: int, params: NearDedupParams, cut: Cut) -> tuple[DataFrame, dict[str, Any]]:
    """:func:`find_removals` in Spark jobs: verified star edges, then connected components."""
    edges, stats = verified_edges(sigs, params, cut)
    components = connected_components(edges, cut, params.max_iterations, params.local_edges)
    stats = {
        "signed_docs": signed,
        "lsh_method": "spark",
        **stats,
        "components_method": components.method,
        "components_rounds": components.rounds,
    }
    pairs = components.assignments.select(F.col("node").alias("src"), F.col("root").alias("dst"))
    removals = with_estimates(pairs, sigs, params.num_perm).select(
        F.col("src").alias("doc_id"), F.col("dst").alias("duplicate_of"), "est"
    )
    return hint_small(removals, components.size), stats


# --- the stage --------------------------------------------------------------------------------------------------


class NearDedupStage(CorpusStage):
    """MinHash LSH near-duplicate removal (see the module docstring); the pipeline's ``near_dedup`` stage."""

    name = "near_dedup"
    reasons = (REASON,)
    Options = NearDedupOptions

    def row_prep(self, opts: NearDedupOptions) -> RowPrep:
        """Signatures, computed where the text already is in Python: the stage then reads 512 bytes per document
        instead of its text, and no Python round trip of its own."""
        params = NearDedupParams.from_config(opts)
        return RowPrep(
            _SignatureColumn(params.hasher, params.signature_column),
            (T.StructField(params.signature_column, SIGNATURE_TYPE, True),),
        )

    def run(self, docs: DataFrame, opts: NearDedupOptions, directory: str) -> CorpusResult:
        """``doc_id``, ``reason``, ``rule``, ``duplicate_of`` of each removed document; runs the candidate and
        components jobs (the removals themselves stay lazy, over cut frames), whose statistics come back too."""
        params = NearDedupParams.from_config(opts)
        cut = make_cut(docs, params.checkpoint, directory)
        found, lsh_stats = find_removals(docs, params, cut)
        rule = F.format_string(f"{params.rule_prefix} est_jaccard=%.2f", F.col("est"))
        removals = found.select("doc_id", F.lit(REASON).alias("reason"), rule.alias("rule"), "duplicate_of")
        return CorpusResult(removals, {"lsh": lsh_stats})

    def summary(self, view: StageView, opts: NearDedupOptions) -> dict[str, Any]:
        """Parameters, S-curve, component sizes, the largest components, an exact-Jaccard audit sample, and the
        candidate statistics measured while the stage ran."""
        params = NearDedupParams.from_config(opts)
        removed = view.removals
        groups = removed.groupBy("duplicate_of").agg((F.count(F.lit(1)) + 1).alias("size"))
        groups = groups.withColumnRenamed("duplicate_of", "kept_doc_id")
        sizes = size_counts(groups)
        return {
            "threshold": params.threshold,
            "num_perm": params.num_perm,
            "ngram": params.ngram,
            "b": params.bands.b,
            "r": params.bands.r,
            "weights": {"false_positive": opts.dedup_fp_weight, "false_negative": opts.dedup_fn_weight},
            "min_estimate": round(params.min_estimate, 6),
            "s_curve": params.bands.s_curve(),
            "components": sum(sizes.values()),
            "component_sizes": size_histogram(sizes),
            "largest_components": largest(groups, ["kept_doc_id", "size"]),
            "audit": audit_sample(view.docs, removed, params),
            **view.stats,
        }
