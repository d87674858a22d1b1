"""Packing: the plain-Python packer and writer without Spark, then the Spark stage end to end on a small corpus."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import xxhash
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.tokenizer import fingerprint, load_tokenizer, worker_tokenizer
from spark_jobs.documents import doc_schema
from spark_jobs.pack import packing
from spark_jobs.pack.job import (
    options_hash,
    pack_corpus,
    pack_summary,
    partition_keys,
    spark_hash_long,
    tokenizer_threads,
    val_shard_count,
)
from spark_jobs.pack.packing import Packer, ShardWriter, rows_per_group
from spark_jobs.pack.stage import PackOptions

BOS, EOS = 100, 101

# --- Packer and ShardWriter, no Spark -----------------------------------------------------------------------------


def framed(docs: list[list[int]], bos: int = BOS, eos: int = EOS) -> list[int]:
    return [token for doc in docs for token in (bos, *doc, eos)]


def test_packer_frames_documents_and_carries_the_remainder():
    packer = Packer(seq_len=4, bos_id=BOS, eos_id=EOS)
    assert packer.add([[1, 2], [3]]).tolist() == [[BOS, 1, 2, EOS]]
    assert packer.remainder.tolist() == [BOS, 3, EOS]
    assert packer.add([[4, 5, 6, 7, 8]]).tolist() == [[BOS, 3, EOS, BOS], [4, 5, 6, 7]]
    assert packer.remainder.tolist() == [8, EOS]
    assert packer.add([]).shape == (0, 4)
    assert packer.remainder.tolist() == [8, EOS]


def test_packer_output_does_not_depend_on_batch_boundaries():
    rng = random.Random(0)
    docs = [[rng.randrange(100) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    whole = Packer(seq_len=16, bos_id=BOS, eos_id=EOS)
    at_once = whole.add(docs)
    pieces, start = Packer(seq_len=16, bos_id=BOS, eos_id=EOS), 0
    batched = []
    while start < len(docs):
        size = rng.randrange(0, 9)
        batched.append(pieces.add(docs[start : start + size]))
        start += size
    assert np.array_equal(np.concatenate(batched), at_once)
    assert np.array_equal(pieces.remainder, whole.remainder)
    stream = framed(docs)
    assert at_once.dtype == np.int32 and at_once.shape[1] == 16
    assert at_once.reshape(-1).tolist() + whole.remainder.tolist() == stream
    assert len(whole.remainder) == len(stream) % 16


def test_packer_takes_arrow_list_arrays_sliced_or_not():
    docs = [[1, 2, 3], [], [4], [5, 6, 7, 8, 9]]
    arrow = pa.array([[99], *docs, [98]], type=pa.list_(pa.int32())).slice(1, len(docs))  # offset into its buffers
    from_lists, from_arrow = Packer(3, BOS, EOS), Packer(3, BOS, EOS)
    assert np.array_equal(from_arrow.add(arrow), from_lists.add(docs))
    assert np.array_equal(from_arrow.remainder, from_lists.remainder)
    assert from_lists.add(docs[:0]).shape == (0, 3)


def test_rows_per_group_is_a_few_megabytes():
    assert rows_per_group(2048) == 512
    assert rows_per_group(32) == 32768
    assert rows_per_group(1 << 30) == 1


def test_shard_writer_row_groups_depend_only_on_the_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(packing, "ROW_GROUP_BYTES", 3 * 4 * 8)  # 3 sequences of 8 tokens per group
    fs = pafs.LocalFileSystem()
    rows = np.arange(8 * 8, dtype=np.int32).reshape(8, 8)
    with ShardWriter(fs, str(tmp_path / "a.parquet"), seq_len=8) as writer:
        for chunk in (rows[:2], rows[2:2], rows[2:7], rows[7:]):
            writer.write(chunk)
    with ShardWriter(fs, str(tmp_path / "b.parquet"), seq_len=8) as once:
        once.write(rows)
    assert writer.sequences == once.sequences == 8
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3, 2]
    table = pq.read_table(tmp_path / "a.parquet")
    assert table.schema == packing.SEQUENCE_SCHEMA
    assert table.column("input_ids").to_pylist() == rows.tolist()
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]  # no temporary files left


def test_shard_writer_leaves_nothing_behind_on_error(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(pafs.LocalFileSystem(), str(tmp_path / "s.parquet"), 4) as writer:
        writer.write(np.zeros((3, 4), dtype=np.int32))
        raise RuntimeError("task failed")
    assert list(tmp_path.iterdir()) == []


def test_val_shard_count():
    assert val_shard_count(10, 0.005) == 1
    assert val_shard_count(1000, 0.005) == 5
    assert val_shard_count(10, 0.0) == 0


def test_spark_hash_long_is_sparks_hash_and_keys_land_alone(spark):
    """The shard keys are computed in Python, so check them against Spark's own ``hash`` and partitioning."""
    rng = random.Random(2)
    values = [0, 1, -1, 42, 2**63 - 1, -(2**63), *range(2, 300), *(rng.randrange(-(2**63), 2**63) for _ in range(300))]
    hashed = spark.createDataFrame([(v,) for v in values], "v long").select("v", F.hash("v").alias("h")).collect()
    assert [row.h for row in hashed] == [spark_hash_long(row.v) for row in hashed]
    for partitions in (1, 4, 11):
        keys = partition_keys(partitions)
        placed = spark.createDataFrame([(k,) for k in keys], "k long").repartition(partitions, "k")
        assert placed.rdd.glom().map(lambda rows: [row.k for row in rows]).collect() == [[k] for k in keys]


def test_tokenizer_threads_cover_the_cores(spark):
    """The test session is local[2]: shard tasks at least as many as the 2 slots get one thread each, fewer get more."""
    sc = spark.sparkContext
    assert [tokenizer_threads(sc, partitions) for partitions in (11, 2, 1)] == [1, 1, 2]


# --- the Spark stage ----------------------------------------------------------------------------------------------

SEED = 3
CFG = dict(seq_len=32, num_shards=3, val_fraction=0.2, seed=SEED)


def corpus() -> list[tuple]:
    """Text and code documents of varied length, with Unicode and text that spells a special token."""
    rng = random.Random(1)
    words = ["alpha", "beta", "café", "東京", "🚀", "</s>", "def", "return", "\n", "    ", "x=1;", "<pad>"]
    rows = []
    for i in range(150):
        text = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 60)))
        kind = "code" if i % 4 == 0 else "text"
        rows.append((i * 7919 - 500_000, text, kind, "mem://corpus", None, None, None))
    return rows


@pytest.fixture(scope="module")
def docs(spark):
    return spark.createDataFrame(corpus(), doc_schema())


@pytest.fixture(scope="module")
def packed(docs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "packed"
    pack_corpus(docs.repartition(1), PackOptions(**CFG), str(out))
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def shard_ids(out: Path, file: str) -> list[list[int]]:
    return pq.read_table(out / file).column("input_ids").to_pylist()


def signed_xxh64(text: str) -> int:
    """Spark's ``xxhash64`` of a string column (seed 42), in Python."""
    value = xxhash.xxh64_intdigest(text.encode(), seed=42)
    return value - (1 << 64) if value >= 1 << 63 else value


def tree_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}


def test_sequences_have_exactly_seq_len_int32_tokens(packed):
    manifest = manifest_of(packed)
    for split in ("train", "val"):
        for shard in manifest["shards"][split]:
            table = pq.read_table(packed / shard["file"])
            assert table.schema.field("input_ids").type == pa.list_(pa.int32())
            assert all(len(row) == 32 for row in table.column("input_ids").to_pylist())


def placement(doc_id: int) -> tuple[str, int, int]:
    """(split, shard, order) of a document, computed here from the documented rule, independently of Spark."""
    order = signed_xxh64(f"{SEED}:{doc_id}")
    val_draw = signed_xxh64(f"{SEED}:val:{doc_id}") % (1 << 64) >> 11
    if val_draw < int(CFG["val_fraction"] * 2**53):
        return "val", order % val_shard_count(CFG["num_shards"], CFG["val_fraction"]), order
    return "train", order % CFG["num_shards"], order


def test_shards_round_trip_to_the_documents_in_seeded_order(packed, tokenizer):
    """A shard's sequences, concatenated, are ``[bos] doc [eos] [bos] doc [eos] ...`` over its documents in seeded
    order, cut after the last full sequence; decoded, the complete documents are the texts."""
    worker = worker_tokenizer(str(packed / "tokenizer" / "tokenizer.json"))
    manifest = manifest_of(packed)
    bos, eos = manifest["bos_id"], manifest["eos_id"]
    placed: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for doc_id, text, *_ in corpus():
        split, shard, order = placement(doc_id)
        placed.setdefault((split, shard), []).append((order, doc_id, text))
    dropped = 0
    for split in ("train", "val"):
        for shard, entry in enumerate(manifest["shards"][split]):
            docs = [text for _, _, text in sorted(placed.get((split, shard), []))]
            frames = [[bos, *worker.encode(text, add_special_tokens=False).ids, eos] for text in docs]
            expected = [token for frame in frames for token in frame]
            stream = [token for row in shard_ids(packed, entry["file"]) for token in row]
            assert len(stream) == len(expected) // 32 * 32 and stream == expected[: len(stream)]
            assert entry["documents"] == len(docs)
            dropped += len(expected) - len(stream)
            complete = np.searchsorted(np.cumsum([len(frame) for frame in frames]), len(stream), side="right")
            decoded = tokenizer.decode(stream[: sum(len(frame) for frame in frames[:complete])])
            assert decoded == "".join(f"</s>{text}</s>" for text in docs[:complete])
    assert dropped == manifest["totals"]["dropped_tokens"]


def test_manifest_totals_equal_the_data(packed, tokenizer):
    manifest = manifest_of(packed)
    assert (manifest["seq_len"], manifest["seed"], manifest["vocab_size"]) == (32, SEED, len(tokenizer))
    assert (manifest["bos_id"], manifest["eos_id"], manifest["pad_id"]) == (50257, 50257, 50259)
    assert manifest["config_hash"] == options_hash(PackOptions(**CFG))
    totals = manifest["totals"]
    assert [s["file"] for s in manifest["shards"]["train"]] == [f"train/part-0000{i}.parquet" for i in range(3)]
    assert [s["file"] for s in manifest["shards"]["val"]] == ["val/part-00000.parquet"]
    for split in ("train", "val"):
        rows = [len(shard_ids(packed, s["file"])) for s in manifest["shards"][split]]
        assert rows == [s["sequences"] for s in manifest["shards"][split]]
        assert [s["tokens"] for s in manifest["shards"][split]] == [32 * n for n in rows]
        assert totals[split]["sequences"] == sum(rows)
        assert totals[split]["tokens"] == 32 * sum(rows)
    assert totals["documents"] == totals["train"]["documents"] + totals["val"]["documents"] == len(corpus())
    worker = worker_tokenizer(str(packed / "tokenizer" / "tokenizer.json"))
    expected_by_kind = {"code": 0, "text": 0}
    for _, text, kind, *_ in corpus():
        expected_by_kind[kind] += len(worker.encode(text, add_special_tokens=False).ids) + 2
    assert totals["tokens_by_kind"] == expected_by_kind
    packed_tokens = totals["train"]["tokens"] + totals["val"]["tokens"]
    assert sum(expected_by_kind.values()) == packed_tokens + totals["dropped_tokens"]
    assert totals["dropped_tokens"] < 32 * 4  # less than one sequence per shard
    assert (packed / "tokenizer" / "tokenizer.json").is_file()


def test_manifest_names_the_tokenizer_and_the_largest_id(packed, tokenizer):
    """The fingerprint is the tokenizer's and that of its saved copy in ``tokenizer/``; ``max_token_id`` is the
    largest id in the shards as read back; the manifest was written through a temporary file that is gone."""
    manifest = manifest_of(packed)
    assert manifest["tokenizer_fingerprint"] == fingerprint(tokenizer)
    assert fingerprint(load_tokenizer(str(packed / "tokenizer"))) == manifest["tokenizer_fingerprint"]
    files = [s["file"] for split in ("train", "val") for s in manifest["shards"][split]]
    assert manifest["max_token_id"] == max(max(row) for file in files for row in shard_ids(packed, file))
    assert manifest["max_token_id"] >= manifest["eos_id"]  # every sequence holds a BOS or EOS, the largest ids
    assert sorted(p.name for p in packed.iterdir()) == ["manifest.json", "tokenizer", "train", "val"]


def test_reruns_are_byte_identical_whatever_the_input_partitioning(packed, docs, tmp_path):
    pack_corpus(docs.repartition(5), PackOptions(**CFG), str(tmp_path / "again"))
    assert tree_digest(tmp_path / "again") == tree_digest(packed)


def test_a_model_directory_packs_with_its_own_tokenizer_and_replaces_stale_output(packed, docs, tokenizer, tmp_path):
    """``--tokenizer`` names a model directory as ``model_surgery`` writes it, holding a saved tokenizer next to its
    config and weights: the shards get that tokenizer's ids and the manifest its fingerprint."""
    from model_surgery import init_random, save

    model_dir = tmp_path / "model"
    save(init_random("opt-125m", num_hidden_layers=1, hidden_size=16, ffn_dim=32, num_attention_heads=2), model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "packed"
    (out / "train").mkdir(parents=True)
    (out / "train" / "part-00099.parquet").write_bytes(b"stale shard of an earlier run with more shards")
    pack_corpus(docs, PackOptions(**CFG, tokenizer=str(model_dir)), str(out))
    assert manifest_of(out)["tokenizer"] == str(model_dir)
    assert manifest_of(out)["tokenizer_fingerprint"] == fingerprint(load_tokenizer(str(model_dir)))
    assert tree_digest(out).keys() == tree_digest(packed).keys()
    shards = {name: digest for name, digest in tree_digest(packed).items() if name.endswith(".parquet")}
    assert {name: tree_digest(out)[name] for name in shards} == shards


def test_hugging_face_datasets_reads_the_shards(packed, tmp_path):
    import datasets

    loaded = datasets.load_dataset(
        "parquet",
        data_files={"train": str(packed / "train" / "*.parquet"), "validation": str(packed / "val" / "*.parquet")},
        cache_dir=str(tmp_path / "hf-cache"),
    )
    totals = manifest_of(packed)["totals"]
    assert loaded["train"].num_rows == totals["train"]["sequences"]
    assert loaded["validation"].num_rows == totals["val"]["sequences"]
    assert loaded["train"].features["input_ids"].feature.dtype == "int32"
    assert loaded["train"][0]["input_ids"] == shard_ids(packed, "train/part-00000.parquet")[0]


def test_empty_shards_get_empty_files(spark, tmp_path):
    """String doc ids, more shards than documents, no validation split."""
    schema = doc_schema(T.StringType())
    docs = spark.createDataFrame([(f"doc-{i}", "word " * 40, "text", "s", None, None, None) for i in range(3)], schema)
    out = tmp_path / "packed"
    summary = pack_summary(pack_corpus(docs, PackOptions(**{**CFG, "num_shards": 8, "val_fraction": 0.0}), str(out)))
    manifest = manifest_of(out)
    assert manifest["shards"]["val"] == [] and summary["val"]["shards"] == 0
    counts = [s["documents"] for s in manifest["shards"]["train"]]
    assert len(counts) == 8 and sum(counts) == 3 and 0 in counts
    for shard in manifest["shards"]["train"]:
        assert pq.read_table(out / shard["file"]).num_rows == shard["sequences"]
    framed = len(worker_tokenizer(str(out / "tokenizer" / "tokenizer.json")).encode("word " * 40).ids) + 2
    assert [s["sequences"] for s in manifest["shards"]["train"]] == [n * framed // 32 for n in counts]
    assert summary["sequences"] == manifest["totals"]["train"]["sequences"]


def test_pack_loads_its_tokenizer_while_earlier_stages_run_and_fails_only_when_it_runs(spark, tmp_path):
    """``prepare`` returns at once (the pipeline calls it when the run begins); a tokenizer that cannot be loaded
    fails the stage when it runs, with the loader's one line, and leaves an earlier pack untouched."""
    from spark_jobs.pack.stage import PackStage

    stage = PackStage()
    stage.prepare(PackOptions(tokenizer=str(tmp_path / "no-such-tokenizer")))
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "manifest.json").write_text("{}")
    docs = spark.createDataFrame([(1, "some text", "text")], "doc_id long, text string, kind string")
    with pytest.raises(RuntimeError, match="no such directory"):
        stage.run(docs, PackOptions(tokenizer=str(tmp_path / "no-such-tokenizer")), str(tmp_path / "packed"))
    assert (tmp_path / "packed" / "manifest.json").read_text() == "{}"

    loaded = PackStage()
    loaded.prepare(PackOptions())
    assert fingerprint(loaded._tokenizer.result()) == fingerprint(load_tokenizer())
