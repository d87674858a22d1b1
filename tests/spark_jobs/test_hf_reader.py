"""The Hugging Face reader through the real pyspark_huggingface data source, on a local dataset directory (offline)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession

from spark_jobs.ingest.hf import is_hf_uri, parse_hf_uri, read_hf_dataset

FILES = 3
ROWS = 7


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three Parquet files (so three shards) with a text column and metadata of several types."""
    root = tmp_path_factory.mktemp("hf_local")
    for f in range(FILES):
        pq.write_table(
            pa.table(
                {
                    "text": [f"document {f}-{r}" for r in range(ROWS)],
                    "url": [f"https://example.com/{f}/{r}" for r in range(ROWS)],
                    "score": [f + r / 10 for r in range(ROWS)],
                    "tags": [["a", str(r)] for r in range(ROWS)],
                }
            ),
            root / f"part-{f:02d}.parquet",
            row_group_size=3,  # several batches per shard: positions must run on across them
        )
    return root


def positions(df: DataFrame) -> dict[str, int]:
    return {r["text"]: r["_position"] for r in df.select("text", "_position").collect()}


def test_reads_all_rows_columns_and_deterministic_positions(spark: SparkSession, dataset_dir: Path) -> None:
    df = read_hf_dataset(spark, str(dataset_dir))
    assert df.columns == ["text", "url", "score", "tags", "_source", "_position"]
    assert dict(df.dtypes) == {
        "text": "string",
        "url": "string",
        "score": "double",
        "tags": "array<string>",
        "_source": "string",
        "_position": "bigint",
    }
    rows = df.collect()
    assert len(rows) == FILES * ROWS
    by_text = {r["text"]: r for r in rows}
    assert by_text["document 2-5"]["url"] == "https://example.com/2/5"
    assert by_text["document 2-5"]["tags"] == ["a", "5"]
    assert {r["_source"] for r in rows} == {f"file://{dataset_dir}/default/train"}

    first = {r["text"]: r["_position"] for r in rows}
    # Shard (file) index in the high bits, row within the shard in the low bits.
    assert first == {f"document {f}-{r}": (f << 33) | r for f in range(FILES) for r in range(ROWS)}

    # A different shuffle width, a downstream repartition and a fresh read change nothing.
    old = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        again = read_hf_dataset(spark, f"file://{dataset_dir}?split=train").repartition(5, "url")
        assert positions(again) == first
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)
    assert len(set(first.values())) == FILES * ROWS


def test_unknown_split_is_one_line(spark: SparkSession, dataset_dir: Path) -> None:
    with pytest.raises(RuntimeError, match=r"Split nope is invalid") as err:
        read_hf_dataset(spark, f"file://{dataset_dir}?split=nope")
    assert "\n" not in str(err.value)


def test_offline_hub_gives_one_line_error(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import; make sure whatever the import order
    with pytest.raises(RuntimeError) as err:
        read_hf_dataset(spark, "hf://datasets/owner/name")
    message = str(err.value)
    assert message.startswith("cannot reach the Hugging Face Hub for owner/name: ")
    assert message.endswith("; set HF_ENDPOINT or pass local files")
    assert "\n" not in message and err.value.__suppress_context__


def test_unreachable_endpoint_gives_one_line_error(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RuntimeError, match=r"^cannot reach the Hugging Face Hub for upstage/Pretraining_Dataset: "):
        read_hf_dataset(spark, "hf://datasets/upstage/Pretraining_Dataset?split=train")


def test_missing_local_dir(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_hf_dataset(spark, str(tmp_path / "nothing"))


def test_uri_parsing() -> None:
    assert is_hf_uri("hf://datasets/upstage/Pretraining_Dataset")
    assert not is_hf_uri("/data/x.parquet") and not is_hf_uri("hf://models/a/b")
    assert parse_hf_uri("hf://datasets/upstage/Pretraining_Dataset") == ("upstage/Pretraining_Dataset", None, None)
    assert parse_hf_uri("hf://datasets/a/b?split=test&config=xyz") == ("a/b", "xyz", "test")
    for bad in [
        "hf://datasets/a",
        "hf://datasets/a/b/c",
        "hf://datasets/a/b?splt=x",
        "hf://datasets/a/b?split=",
        "hf://datasets/a/b?split=x&split=y",
        "hf://datasets/a b/c",
        "s3://a/b",
    ]:
        with pytest.raises(ValueError):
            parse_hf_uri(bad)
