"""The pack stage on Spark: shuffle documents into seeded shards, then tokenize, pack and write each on an executor.

Layout of ``packed/``: ``train/part-NNNNN.parquet`` (``--num-shards`` files), ``val/part-NNNNN.parquet``
(:func:`val_shard_count` files), ``tokenizer/`` (``save_pretrained``), ``manifest.json`` (written last and
atomically, so its presence means every shard it lists is complete). Besides the shard counts and totals, the
manifest records the tokenizer's :func:`~slm_common.tokenizer.fingerprint` (``tokenizer_fingerprint``) and the
largest token id in the shards (``max_token_id``), so ``train`` can tell whether a model's own tokenizer and
vocabulary fit the data.

Where a document goes, deterministically whatever the input partitioning or core count:

- ``order = xxhash64("{seed}:{doc_id}")`` (Spark's ``xxhash64``, seed 42; equal to ``xxhash.xxh64`` in Python).
- An independently salted draw sends ``--val-fraction`` of the documents to validation:
  ``xxhash64("{seed}:val:{doc_id}") >>> 11 < val_fraction * 2**53``.
- Its shard is ``order mod shards`` of its split, and a shard is packed in ``(order, doc_id)`` order: a seeded
  shuffle, so neighbouring documents in a sequence are unrelated (not all files of one repository in a row).

The job is one shuffle and one ``mapInArrow``:

1. **shuffle** the documents (their text, not token ids: text is about half the bytes of its int32 ids) into one
   partition per shard, train shards then validation shards, sorted by ``(order, doc_id)``;
2. **tokenize and pack** in the same task, one per shard, streaming one Arrow batch at a time: batch-encode with the
   Rust tokenizer, stream the ids through :class:`~spark_jobs.pack.packing.Packer` into a
   :class:`~spark_jobs.pack.packing.ShardWriter`, and return one small stats row; data never reaches the driver.

Tokenizing where the shard is packed saves what tokenizing in a stage of its own costs: a second shuffle, sending
every id from Python to the JVM, shuffling and sorting twice the bytes of the text, and sending the ids back to
Python (docs/benchmarks.md compares the two designs against the raw tokenizer). Shard tasks are few
(``--num-shards`` plus validation) while cores may be many, so each task's tokenizer gets enough Rust threads for the shard tasks to cover every core
(:func:`tokenizer_threads`); the Python side of a task (id conversion, packing, Parquet) stays on one core, so with
far more cores than shards, more shards pack faster.

Shards are written from the executors with ``pyarrow.fs``, so on a cluster ``--output`` must be shared storage
(HDFS, S3, a network file system). An empty shard (no documents) gets a valid Parquet file with no rows, written by
the driver, so the file names are always ``part-00000`` to ``part-{shards-1}``.

The tokenizer travels by ``SparkContext.addFile`` (its ``tokenizer.json``, content-addressed), not by shared
storage: every executor encodes with exactly the file saved to ``packed/tokenizer/``, whatever ``--tokenizer`` was.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import itertools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from pyspark import SparkContext, SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.tokenizer import fingerprint, load_tokenizer, special_token_ids
from spark_jobs import storage
from spark_jobs.documents import arrow_schema
from spark_jobs.pack.encoder import BatchEncoder, batch_encoder
from spark_jobs.pack.packing import Packer, ShardWriter

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from spark_jobs.pack.stage import PackOptions

SPLITS = ("train", "val")
SHARD_COUNTS = ("sequences", "tokens", "documents")
"""Per-shard counts in the manifest (sequences, tokens, and the documents they came from)."""

STATS_SCHEMA = T.StructType(
    [
        T.StructField("split", T.StringType(), False),
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("file", T.StringType(), False),
        T.StructField("documents", T.LongType(), False),
        T.StructField("sequences", T.LongType(), False),
        T.StructField("tokens", T.LongType(), False),
        T.StructField("dropped_tokens", T.LongType(), False),
        T.StructField("max_token_id", T.LongType(), True),
        T.StructField("tokens_by_kind", T.MapType(T.StringType(), T.LongType(), False), False),
    ]
)
"""One row per written shard, the only thing the executors send back."""


@dataclass(frozen=True)
class PackTask:
    """What every pack task needs: small, shipped in the task closure. Targets number train shards first.

    ``tokenizer_file`` is the ``addFile`` name of the shipped ``tokenizer.json``; ``threads`` the size of the Rust
    thread pool each task's tokenizer encodes with (:func:`tokenizer_threads`).
    """

    root: str
    train_shards: int
    seq_len: int
    bos_id: int
    eos_id: int
    tokenizer_file: str
    threads: int

    def split_shard(self, target: int) -> tuple[str, int]:
        """The split and shard number of a target (a shuffle partition)."""
        return ("train", target) if target < self.train_shards else ("val", target - self.train_shards)


def shard_file(split: str, shard: int) -> str:
    """A shard's path relative to ``packed/``, as listed in the manifest."""
    return f"{split}/part-{shard:05d}.parquet"


def val_shard_count(num_shards: int, val_fraction: float) -> int:
    """Validation shards: proportional to its share of the data, at least one when there is a validation split."""
    return 0 if val_fraction <= 0 else max(1, round(num_shards * val_fraction))


def pack_corpus(
    cleaned: DataFrame, cfg: PackOptions, out_dir: str, tokenizer: PreTrainedTokenizerFast | None = None
) -> dict[str, Any]:
    """Tokenize and pack ``cleaned`` (doc_schema rows) into ``out_dir`` (``OUT/packed``); return the manifest.

    Replaces any previous ``train/``, ``val/``, ``tokenizer/`` and ``manifest.json`` under ``out_dir``, so stale
    shards of an earlier run with more shards can never be globbed together with the new ones. The tokenizer is
    loaded, saved and shipped on a second thread while this one has the JVM plan the shuffle: one after the other,
    both delayed the first task.
    """
    spark = cleaned.sparkSession
    root_uri = storage.spark_path(out_dir)  # absolute: executors run elsewhere
    fs, root = storage.resolve(root_uri)
    shard_counts = {"train": cfg.num_shards, "val": val_shard_count(cfg.num_shards, cfg.val_fraction)}
    partitions = sum(shard_counts.values())
    with ThreadPoolExecutor(1) as pool:
        prepared = pool.submit(_prepare_tokenizer, tokenizer or cfg.tokenizer, spark.sparkContext, fs, root)
        shuffled = _shuffled(_targeted(cleaned, cfg.seed, cfg.val_fraction, shard_counts), partitions)
        threads = tokenizer_threads(spark.sparkContext, partitions)
        tok, tokenizer_file = prepared.result()
    bos_id, eos_id, pad_id = special_token_ids(tok)
    task = PackTask(root_uri, cfg.num_shards, cfg.seq_len, bos_id, eos_id, tokenizer_file, threads)
    packed = shuffled.mapInArrow(functools.partial(_pack_partition, task=task), STATS_SCHEMA)
    stats = [row.asDict() for row in packed.collect()]

    manifest = _manifest(stats, shard_counts, cfg, tok, (bos_id, eos_id, pad_id), fs, root)
    storage.write_text(storage.join(root_uri, "manifest.json"), json.dumps(manifest, indent=2) + "\n")
    return manifest


def _prepare_tokenizer(
    tokenizer: str | PreTrainedTokenizerFast, sc: SparkContext, fs: pafs.FileSystem, root: str
) -> tuple[PreTrainedTokenizerFast, str]:
    """Load the tokenizer (unless given loaded), clear the old outputs, save it to ``packed/tokenizer/`` and ship it:
    the tokenizer and its shipped file name. Loading comes first, so a tokenizer that cannot be loaded leaves an
    earlier pack untouched."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    _clear_outputs(fs, root)
    return tok, _ship_tokenizer(sc, _save_tokenizer(tok, fs, root))


def _clear_outputs(fs: pafs.FileSystem, root: str) -> None:
    """Remove the manifest first (a crash from here on leaves no manifest vouching for stale shards), then the rest."""
    if fs.get_file_info(f"{root}/manifest.json").is_file:
        fs.delete_file(f"{root}/manifest.json")
    for sub in (*SPLITS, "tokenizer"):
        fs.create_dir(f"{root}/{sub}")
        fs.delete_dir_contents(f"{root}/{sub}")


def _save_tokenizer(tok: PreTrainedTokenizerFast, fs: pafs.FileSystem, root: str) -> Path:
    """``save_pretrained`` into ``packed/tokenizer/``; return a local copy of its ``tokenizer.json`` to ship.

    ``save_pretrained`` writes local files only, so it goes through a temporary directory and ``pyarrow.fs`` copies
    it to wherever ``packed/`` is. The shipped copy is named by content hash: Spark refuses two different files of
    one name in a session, and the same tokenizer packed twice is then shipped once.
    """
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        pafs.copy_files(tmp, f"{root}/tokenizer", pafs.LocalFileSystem(), fs)
        blob = Path(tmp, "tokenizer.json").read_bytes()
    shipped = Path(tempfile.gettempdir(), "slm-pack", f"tokenizer-{hashlib.sha256(blob).hexdigest()[:16]}.json")
    if not shipped.exists():
        shipped.parent.mkdir(parents=True, exist_ok=True)
        partial = shipped.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(blob)
        partial.replace(shipped)
    return shipped


def _ship_tokenizer(sc: SparkContext, path: Path) -> str:
    """Register ``path`` with ``addFile`` (once per session); executors find it by name with ``SparkFiles.get``.

    The registered files are read as one string: ``sc.listFiles`` iterates the JVM list one py4j call per file.
    """
    registered = sc._jsc.sc().listFiles().mkString("\n")  # type: ignore[union-attr]  # py4j
    if not any(uri.endswith("/" + path.name) for uri in registered.splitlines()):
        sc.addFile(str(path))
    return path.name


def _targeted(cleaned: DataFrame, seed: int, val_fraction: float, shard_counts: dict[str, int]) -> DataFrame:
    """The columns packing needs, the seeded ``order`` and the ``target`` partition (see the module docstring)."""
    doc_id = F.col("doc_id").cast("string")
    order = F.xxhash64(F.concat(F.lit(f"{seed}:"), doc_id))
    target = F.pmod(order, F.lit(shard_counts["train"]))
    if shard_counts["val"]:
        val_draw = F.shiftrightunsigned(F.xxhash64(F.concat(F.lit(f"{seed}:val:"), doc_id)), 11)
        val_target = shard_counts["train"] + F.pmod(order, F.lit(shard_counts["val"]))
        target = F.when(val_draw < F.lit(int(val_fraction * 2**53)), val_target).otherwise(target)
    text = F.coalesce("text", F.lit(""))
    return cleaned.select(
        "doc_id", text.alias("text"), "kind", order.alias("order"), target.cast("int").alias("target")
    )


def tokenizer_threads(sc: SparkContext, partitions: int) -> int:
    """Rust threads per shard task: ``spark.task.cpus``, times as many as it takes for the tasks to fill the cores.

    With at least as many shard tasks as task slots (2 cores, 10 shards), every slot runs one task and one thread
    each (``spark.task.cpus`` threads) is right: more would only compete with the other tasks. With fewer shard tasks
    than slots (64 cores, 10 shards), Spark would leave cores idle, so each task's tokenizer takes ``ceil(slots /
    tasks)`` times as many threads. Slots are the scheduler's count of tasks that can run at once
    (``maxNumConcurrentTasks``, the number barrier stages rely on), at least one before any executor has registered.
    """
    jsc = sc._jsc.sc()  # type: ignore[union-attr]  # py4j: the JVM SparkContext
    slots = jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile())
    task_cpus = int(jsc.conf().get("spark.task.cpus", "1"))
    return task_cpus * max(1, math.ceil(slots / partitions))


def spark_hash_long(value: int, seed: int = 42) -> int:
    """Spark's SQL ``hash`` of one bigint (``Murmur3_x86_32.hashLong``, seed 42): the hash ``repartition`` uses.

    Computed here rather than asked of Spark, which would take a job (noticeable in a small pack's wall clock);
    :func:`_pack_partition` checks every row's partition, so a Spark that hashed differently fails loudly.
    """

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    def mix(h: int, k: int) -> int:
        k = rotl(k * 0xCC9E2D51 & 0xFFFFFFFF, 15) * 0x1B873593 & 0xFFFFFFFF
        return (rotl(h ^ k, 13) * 5 + 0xE6546B64) & 0xFFFFFFFF

    value &= 0xFFFFFFFFFFFFFFFF
    h = mix(mix(seed & 0xFFFFFFFF, value & 0xFFFFFFFF), value >> 32) ^ 8
    h = (h ^ h >> 16) * 0x85EBCA6B & 0xFFFFFFFF
    h = (h ^ h >> 13) * 0xC2B2AE35 & 0xFFFFFFFF
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_keys(partitions: int) -> list[int]:
    """For each partition number p, the smallest long that ``repartition(partitions, key)`` sends to partition p.

    Spark places a row in partition ``pmod(hash(key), partitions)``, so repartitioning by the target number itself
    would scatter shards: 0..9 land in only 7 of 10 partitions, leaving tasks with two shards and cores with none.
    One key per partition, found by hashing 0, 1, 2, ... until every partition has one, instead puts every shard
    alone in the partition numbered like it.
    """
    keys: dict[int, int] = {}
    candidate = 0
    while len(keys) < partitions:
        keys.setdefault(spark_hash_long(candidate) % partitions, candidate)
        candidate += 1
    return [keys[p] for p in range(partitions)]


def _shuffled(docs: DataFrame, partitions: int) -> DataFrame:
    """One shuffle into one partition per shard (:func:`partition_keys`), each sorted by ``(order, doc_id)``."""
    keys = F.array(*[F.lit(key) for key in partition_keys(partitions)]).cast("array<bigint>")
    return (
        docs.repartition(partitions, F.element_at(keys, F.col("target") + 1))
        .sortWithinPartitions("order", "doc_id")
        .select("target", "kind", "text")
    )


def _task_encoder(task: PackTask) -> BatchEncoder:
    """The shipped tokenizer's batch encoder (:mod:`~spark_jobs.pack.encoder`: tiktoken's where it gives the same
    ids), built once per Python worker process, which Spark reuses across tasks, and set up so:

    - The ``tokenizers`` fallback always encodes on its Rust thread pool (``TOKENIZERS_PARALLELISM=true``), even with
      one thread: encoding on the Python worker's main thread costs more CPU per token than encoding on any other
      thread (most likely glibc's main malloc arena, which the Python heap shares). ``RAYON_NUM_THREADS`` sizes the
      pool when the worker first encodes, so a reused worker keeps the size of the first job that encoded in it.
      tiktoken encodes on a thread pool of ``task.threads`` threads, for the same reason.
    - ``gc.freeze()``: PySpark's daemon runs a full ``gc.collect()`` after every task of a reused worker, over the
      tens of thousands of objects that importing pyspark, pandas and pyarrow leaves, once per shard task. Frozen,
      those objects are skipped, and the collections only scan what later tasks allocate.
    """
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ["RAYON_NUM_THREADS"] = str(task.threads)
    encoder = batch_encoder(SparkFiles.get(task.tokenizer_file), task.threads)
    gc.freeze()
    return encoder


def _pack_partition(batches: Iterator[pa.RecordBatch], task: PackTask) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: tokenize one shard's documents, in order, into its Parquet file; yield its stats row.

    Memory is one Arrow batch of documents and their ids plus at most one row group of sequences.
    """
    batches = (batch for batch in batches if batch.num_rows)
    first = next(batches, None)
    if first is None:
        return  # an empty shard: the driver writes its file
    encoder = _task_encoder(task)
    target = first.column("target")[0].as_py()
    split, shard = task.split_shard(target)
    fs, root = storage.resolve(task.root)
    packer = Packer(task.seq_len, task.bos_id, task.eos_id)
    documents = 0
    tokens_by_kind: Counter[str] = Counter()
    with ShardWriter(fs, f"{root}/{shard_file(split, shard)}", task.seq_len) as writer:
        for batch in itertools.chain([first], batches):
            if pc.min_max(batch.column("target")).as_py() != {"min": target, "max": target}:
                raise RuntimeError(f"shard {target} shares its partition: Spark no longer partitions by `hash`")
            ids = encoder(batch.column("text").to_pylist())
            writer.write(packer.add(ids))
            framed = pa.table({"kind": batch.column("kind"), "tokens": pc.list_value_length(ids)})
            for group in framed.group_by("kind").aggregate([("tokens", "sum"), ("tokens", "count")]).to_pylist():
                tokens_by_kind[group["kind"]] += group["tokens_sum"] + 2 * group["tokens_count"]  # BOS and EOS
            documents += batch.num_rows
    row = {
        "split": split,
        "shard": shard,
        "file": shard_file(split, shard),
        "documents": documents,
        "sequences": writer.sequences,
        "tokens": writer.sequences * task.seq_len,
        "dropped_tokens": len(packer.remainder),
        "max_token_id": writer.max_token_id,
        "tokens_by_kind": sorted(tokens_by_kind.items()),
    }
    yield pa.RecordBatch.from_pylist([row], schema=arrow_schema(STATS_SCHEMA))


def _manifest(
    stats: list[dict[str, Any]],
    shard_counts: dict[str, int],
    cfg: PackOptions,
    tok: PreTrainedTokenizerFast,
    special_ids: tuple[int, int, int | None],
    fs: pafs.FileSystem,
    root: str,
) -> dict[str, Any]:
    """manifest.json from the stats rows; writes the empty file of every shard that had no documents.

    ``max_token_id`` is the largest id over the shards' written sequences (each task's writer keeps its own), or
    None when no shard holds a sequence.
    """
    by_file = {row["file"]: row for row in stats}
    shards: dict[str, list[dict[str, Any]]] = {}
    totals: dict[str, Any] = {}
    for split in SPLITS:
        shards[split] = []
        for shard in range(shard_counts[split]):
            file = shard_file(split, shard)
            if file not in by_file:
                with ShardWriter(fs, f"{root}/{file}", cfg.seq_len):
                    pass
            row = by_file.get(file, {})
            shards[split].append({"file": file, **{key: row.get(key, 0) for key in SHARD_COUNTS}})
        totals[split] = {key: sum(entry[key] for entry in shards[split]) for key in SHARD_COUNTS}
    by_kind: Counter[str] = Counter()
    for row in stats:
        by_kind.update(dict(row["tokens_by_kind"]))
    totals["documents"] = sum(row["documents"] for row in stats)
    totals["tokens_by_kind"] = dict(sorted(by_kind.items()))
    totals["dropped_tokens"] = sum(row["dropped_tokens"] for row in stats)
    maxima = [row["max_token_id"] for row in stats if row["max_token_id"] is not None]
    bos_id, eos_id, pad_id = special_ids
    return {
        "seq_len": cfg.seq_len,
        "tokenizer": cfg.tokenizer,
        "bos_id": bos_id,
        "eos_id": eos_id,
        "pad_id": pad_id,
        "vocab_size": len(tok),
        "tokenizer_fingerprint": fingerprint(tok),
        "max_token_id": max(maxima, default=None),
        "shards": shards,
        "totals": totals,
        "config_hash": options_hash(cfg),
        "seed": cfg.seed,
    }


def options_hash(opts: PackOptions) -> str:
    """The manifest's ``config_hash``: a short hash of every option that changes the packed output."""
    blob = json.dumps(dataclasses.asdict(opts), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pack_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pack entry of report.json: the manifest's totals, flattened, with the shard counts."""
    totals = manifest["totals"]
    shard_counts = {split: len(manifest["shards"][split]) for split in SPLITS}
    return {
        "seq_len": manifest["seq_len"],
        "documents": totals["documents"],
        "sequences": sum(totals[split]["sequences"] for split in SPLITS),
        "tokens": sum(totals[split]["tokens"] for split in SPLITS),
        "dropped_tokens": totals["dropped_tokens"],
        "tokens_by_kind": totals["tokens_by_kind"],
        **{split: {"shards": shard_counts[split], **totals[split]} for split in SPLITS},
        "tokenizer": manifest["tokenizer"],
        "config_hash": manifest["config_hash"],
    }


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the console: total tokens, sequences, tokens per sequence, and where they went."""
    train, val = summary["train"], summary["val"]
    return (
        f"pack: {summary['tokens']:,} tokens in {summary['sequences']:,} sequences of {summary['seq_len']:,} tokens "
        f"(train {train['sequences']:,} in {train['shards']} shards, val {val['sequences']:,} in {val['shards']}) "
        f"from {summary['documents']:,} documents; {summary['dropped_tokens']:,} tail tokens dropped"
    )
