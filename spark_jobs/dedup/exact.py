"""The ``exact_dedup`` stage: documents whose whitespace-normalised texts are identical keep only the smallest doc_id.

Each text is normalised (``" ".join(text.split())``: runs of any whitespace become one space, ends trimmed) and
hashed with xxh3-128 per Arrow batch (in the pipeline, inside ingestion's pass, as :data:`HASH_FIELD`), so the shuffle
moves the hash, the id and a few bytes for the counts instead of the text. Grouping is a window ``min(doc_id)`` over
the hash partition: one shuffle of ids, no driver collect, and the result does not depend on partitioning. The
stage's output is the removals alone. 128 bits make a
false match among even 10^12 documents improbable (about 10^-15).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import xxhash
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_jobs.batches import CHARS, ColumnValues, map_batches, size_counts
from spark_jobs.stage import CorpusResult, CorpusStage, NoOptions, RowPrep, StageView

REASON_EXACT_DUPLICATE = "exact_duplicate"
HASH_RULE = "xxh3-128"
HASH_COLUMN = "text_hash"
HASH_FIELD = T.StructField(HASH_COLUMN, T.BinaryType(), True)
TOP_GROUPS = 10


def normalize_whitespace(texts: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """``" ".join(text.split())`` of each text as UTF-8 (a null text is empty).

    Python's own split, so "whitespace" is exactly ``str.split``'s (Arrow's ``utf8_split_whitespace`` +
    ``binary_join`` uses a slightly different set, and was not faster: docs/benchmarks.md).
    """
    return [" ".join(text.split()).encode() if text else b"" for text in texts.to_pylist()]


def text_hashes(batch: pa.RecordBatch) -> Mapping[str, ColumnValues]:
    """Batch function: the 16-byte xxh3-128 digest of each normalised text."""
    normalized = normalize_whitespace(batch.column("text"))
    return {HASH_COLUMN: pa.array(list(map(xxhash.xxh3_128_digest, normalized)), type=pa.binary(16))}


class ExactDedupStage(CorpusStage):
    """Stage ``exact_dedup``: rule ``xxh3-128``, ``duplicate_of`` = the kept (smallest) doc_id of the group."""

    name = "exact_dedup"
    reasons = (REASON_EXACT_DUPLICATE,)

    def row_prep(self, opts: NoOptions) -> RowPrep:
        return RowPrep(text_hashes, (HASH_FIELD,))

    def run(self, docs: DataFrame, opts: NoOptions, directory: str) -> CorpusResult:
        """Every document whose normalised text an earlier ``doc_id`` has; uses ``docs``' hash column if present.

        Removals carry the documents' ``kind``, ``lang`` and character count when ``docs`` has them (a few bytes
        each), so the runner counts them without joining the documents again.
        """
        carried = [name for name in ("kind", "lang", CHARS) if name in docs.columns]
        if HASH_COLUMN not in docs.columns:
            schema = T.StructType([docs.schema["doc_id"], HASH_FIELD, *(docs.schema[name] for name in carried)])
            docs = map_batches(docs.select("doc_id", "text", *carried), text_hashes, schema)
        kept = F.min("doc_id").over(Window.partitionBy(HASH_COLUMN))
        removals = (
            docs.select("doc_id", HASH_COLUMN, *carried)
            .withColumn("duplicate_of", kept)
            .where(F.col("doc_id") != F.col("duplicate_of"))
            .select(
                "doc_id",
                F.lit(REASON_EXACT_DUPLICATE).alias("reason"),
                F.lit(HASH_RULE).alias("rule"),
                "duplicate_of",
                *carried,
            )
        )
        return CorpusResult(removals)

    def summary(self, view: StageView, opts: NoOptions) -> dict[str, Any]:
        """Duplicate groups (a kept document and its copies): how many, and the sizes of the largest; from the
        removals alone, by one query: the number of groups of each size (a few distinct sizes reach the driver)."""
        groups = view.removals.groupBy("duplicate_of").agg((F.count("*") + 1).alias("size"))
        sizes = size_counts(groups)
        descending = (size for size in sorted(sizes, reverse=True) for _ in range(sizes[size]))
        return {
            "hash": HASH_RULE,
            "duplicate_groups": sum(sizes.values()),
            "duplicates_removed": sum((size - 1) * count for size, count in sizes.items()),
            "largest_groups": list(itertools.islice(descending, TOP_GROUPS)),
        }
