"""The ``decontam`` stage (opt-in): documents sharing a word n-gram with an evaluation set are removed.

The test of GPT-3 (Brown et al. 2020, appendix C) and of the decontamination passes after it: texts are lowercased,
punctuation and symbols (Unicode classes P and S) are deleted, the rest is split at whitespace, and a document that
shares one ``--decontam-ngram``-word sequence (13 by default) with any text of an evaluation set is *contaminated*:
reason ``contaminated``, rule ``decontam: SET "the shared n-gram"`` (the set's name is its file's stem). An eval text
shorter than n words counts as one n-gram of all its words, so a document containing it whole is contaminated: a
set of one-word answers would therefore remove every document using those words, and belongs in no ``--decontam-sets``.

It scales as a join of hashes: the eval sets' n-grams (small: benchmarks have thousands of texts) are hashed on the
driver into a table that is broadcast; every document's n-grams are hashed per Arrow batch (a rolling polynomial hash
of its words' xxh3-64 hashes, vectorised over the batch) in a ``mapInArrow`` that emits one ``(doc_id, hash)`` row per
n-gram found among the eval hashes (the eval hashes ship with the function, so the bulk of n-grams never leaves
Python), and the join with the broadcast table names the set and the n-gram. No document reaches the driver. Hashes
are 64 bits: 10^12 document n-grams against 10^6 eval n-grams give an expected 0.05 false matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.options import opt
from spark_jobs import storage
from spark_jobs.ingest import InputError
from spark_jobs.stage import CorpusResult, CorpusStage, StageView

REASON_CONTAMINATED = "contaminated"
PUNCTUATION = r"[\p{P}\p{S}]"
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
HASH_COLUMN = "ngram_hash"
SET_COLUMN = "eval_set"


@dataclass
class DecontamOptions:
    decontam_sets: list[str] = opt(
        [], "evaluation sets (Parquet or JSONL files, a text column) for the decontam stage", files=True
    )
    decontam_column: str = opt("text", "the eval sets' text column")
    decontam_ngram: int = opt(13, "a document sharing a word n-gram of this length with an eval text is removed")

    def validate(self) -> None:
        if not self.decontam_sets:
            raise ValueError("the decontam stage needs --decontam-sets (Parquet or JSONL files)")
        for path in self.decontam_sets:
            if not path.endswith((".parquet", ".jsonl", ".jsonl.gz")):
                raise ValueError(f"--decontam-sets {path}: not a .parquet, .jsonl or .jsonl.gz file")
            if not storage.exists(path):
                raise ValueError(f"--decontam-sets {path}: no such file")
        stems = [set_name(path) for path in self.decontam_sets]
        if len(set(stems)) != len(stems):
            raise ValueError(f"--decontam-sets: two files with the same name ({', '.join(stems)})")
        if self.decontam_ngram < 1:
            raise ValueError("--decontam-ngram must be at least 1")


def set_name(path: str) -> str:
    """An eval set's name: its file name without the extension(s)."""
    name = PurePosixPath(path).name
    for suffix in (".gz", ".jsonl", ".parquet"):
        name = name.removesuffix(suffix)
    return name


def normalized_words(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Each text lowercased, punctuation and symbols deleted, split at whitespace; a text without words is null
    (Arrow's split would give it one empty word)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    kept = pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(texts), PUNCTUATION, ""))
    return pc.utf8_split_whitespace(pc.if_else(pc.equal(kept, ""), pa.scalar(None, pa.string()), kept))


def word_counts(words: pa.ListArray) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(words), 0).to_numpy(zero_copy_only=False)


def windows(words: pa.ListArray, lengths: Iterable[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """For each length, every window of that many words of every text: (length, each window's text row, its first
    word's position in the text, its hash).

    A word's hash is xxh3-64 of its UTF-8 (each distinct word of the batch hashed once, for all lengths); a window's
    is the polynomial ``sum(word_hash[i] * MULTIPLIER ** (length - 1 - i))`` modulo 2**64, computed for all windows
    of the batch at once, of which those within one text are kept.
    """
    flat = words.flatten()
    encoded = flat.dictionary_encode()
    unique = [xxhash.xxh3_64_intdigest(word.encode()) for word in encoded.dictionary.to_pylist()]
    word_hashes = np.array(unique, dtype=np.uint64)[encoded.indices.to_numpy()]
    row_of_word = pc.list_parent_indices(words).to_numpy().astype(np.int64)
    first_word = np.searchsorted(row_of_word, np.arange(len(words)))
    for length in lengths:
        starts = len(flat) - length + 1
        if starts <= 0:
            empty = np.zeros(0, dtype=np.int64)
            yield length, empty, empty, empty
            continue
        acc = np.zeros(starts, dtype=np.uint64)
        for i in range(length):
            acc = acc * MULTIPLIER + word_hashes[i : i + starts]
        inside = row_of_word[:starts] == row_of_word[length - 1 :]
        rows = row_of_word[:starts][inside]
        yield length, rows, np.flatnonzero(inside) - first_word[rows], acc[inside].view(np.int64)


@dataclass(frozen=True)
class EvalNgrams:
    """The eval sets' n-gram hashes (sorted, with their set and n-gram text) and the window lengths to look for:
    ``ngram``, and the length of every eval text shorter than that."""

    hashes: np.ndarray
    sets: list[str]
    ngrams: list[str]
    lengths: tuple[int, ...]
    stats: dict[str, Any]

    @classmethod
    def build(cls, sets: dict[str, list[str | None]], ngram: int) -> EvalNgrams:
        """From each set's texts: every n-gram, the first set (by name) and text naming a hash shared by several."""
        found: dict[int, tuple[str, str]] = {}
        lengths = {ngram}
        stats: dict[str, Any] = {}
        for name in sorted(sets):
            words = normalized_words(pa.array(sets[name], type=pa.string()))
            counts = word_counts(words)
            short = sorted({int(n) for n in counts if 0 < n < ngram})
            lengths.update(short)
            texts = words.to_pylist()
            before = len(found)
            for length, rows, starts, hashes in windows(words, (ngram, *short)):
                keep = (counts[rows] >= ngram) if length == ngram else (counts[rows] == length)
                for row, start, value in zip(
                    rows[keep].tolist(), starts[keep].tolist(), hashes[keep].tolist(), strict=True
                ):
                    found.setdefault(value, (name, " ".join(texts[row][start : start + length])))
            stats[name] = {
                "texts": len(texts),
                "empty_texts": int((counts == 0).sum()),
                "short_texts": int(((counts > 0) & (counts < ngram)).sum()),
                "ngrams": len(found) - before,
            }
        order = sorted(found)
        return cls(
            np.array(order, dtype=np.int64),
            [found[h][0] for h in order],
            [found[h][1] for h in order],
            tuple(sorted(lengths)),
            stats,
        )

    def table(self) -> pa.Table:
        return pa.table({HASH_COLUMN: pa.array(self.hashes, pa.int64()), SET_COLUMN: self.sets, "ngram": self.ngrams})


def read_eval_set(path: str, column: str) -> list[str | None]:
    """The texts of one eval set; a file that cannot be read, or lacks the column, fails in one line."""
    try:
        if path.endswith(".parquet"):
            fs, local = storage.resolve(path)
            return pq.read_table(local, filesystem=fs, columns=[column]).column(column).to_pylist()
        with storage.open_input(path) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError, KeyError, pa.ArrowException) as err:
        raise InputError(f"--decontam-sets {path}: cannot read column {column!r} ({err})") from None
    if not all(isinstance(r, dict) and isinstance(r.get(column, 0), str | None) for r in records):
        raise InputError(f"--decontam-sets {path}: every line must be a JSON object with a string {column!r}")
    return [r.get(column) for r in records]


@dataclass(frozen=True)
class NgramMatcher:
    """``mapInArrow`` function: for each document of each batch, its distinct n-gram hashes among ``hashes``."""

    hashes: np.ndarray
    lengths: tuple[int, ...]

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            words = normalized_words(batch.column("text"))
            found_rows, found_hashes = [], []
            for _, rows, _, hashes in windows(words, self.lengths):
                hit = np.isin(hashes, self.hashes)
                found_rows.append(rows[hit])
                found_hashes.append(hashes[hit])
            pairs = np.unique(np.stack([np.concatenate(found_rows), np.concatenate(found_hashes)]), axis=1)
            yield pa.RecordBatch.from_arrays(
                [batch.column("doc_id").take(pa.array(pairs[0])), pa.array(pairs[1], pa.int64())],
                names=["doc_id", HASH_COLUMN],
            )


class DecontamStage(CorpusStage):
    """Stage ``decontam``: removes documents sharing an n-gram with an eval set (see the module docstring)."""

    name = "decontam"
    reasons = (REASON_CONTAMINATED,)
    Options = DecontamOptions

    def run(self, docs: DataFrame, opts: DecontamOptions, directory: str) -> CorpusResult:
        """The contaminated documents, each named by the smallest (set, n-gram) it shares; per-set eval facts."""
        sets = {set_name(path): read_eval_set(path, opts.decontam_column) for path in opts.decontam_sets}
        evals = EvalNgrams.build(sets, opts.decontam_ngram)
        spark = docs.sparkSession
        id_field = docs.schema["doc_id"]
        table = spark.createDataFrame(evals.table())
        schema = T.StructType([id_field, T.StructField(HASH_COLUMN, T.LongType(), False)])
        found = docs.select("doc_id", "text").mapInArrow(NgramMatcher(evals.hashes, evals.lengths), schema)
        first = F.row_number().over(Window.partitionBy("doc_id").orderBy(SET_COLUMN, "ngram"))
        removals = (
            found.join(F.broadcast(table), HASH_COLUMN)
            .withColumn("_first", first)
            .where(F.col("_first") == 1)
            .select(
                "doc_id",
                F.lit(REASON_CONTAMINATED).alias("reason"),
                F.format_string('decontam: %s "%s"', SET_COLUMN, "ngram").alias("rule"),
                F.lit(None).cast(id_field.dataType).alias("duplicate_of"),
                SET_COLUMN,
            )
        )
        stats = {"ngram": opts.decontam_ngram, "lengths": list(evals.lengths), "sets": evals.stats}
        return CorpusResult(removals, stats)

    def summary(self, view: StageView, opts: DecontamOptions) -> dict[str, Any]:
        """Documents removed per eval set (each under the first set it shares an n-gram with), and the sets' sizes."""
        rows = view.removals.groupBy(SET_COLUMN).count().collect()
        removed = {row[SET_COLUMN]: row["count"] for row in rows}
        sets = view.stats.get("sets", {})
        return {
            "ngram": view.stats.get("ngram"),
            "removed_by_set": {name: removed.get(name, 0) for name in sorted(set(sets) | set(removed))},
            "sets": sets,
        }
