"""Read a Hugging Face dataset into Spark through the maintained ``pyspark_huggingface`` data source.

URI syntax (query parameters, both optional)::

    hf://datasets/OWNER/NAME                         config: the dataset's default, split: train
    hf://datasets/OWNER/NAME?config=xyz&split=test

A local directory of data files (Parquet, JSONL, CSV, ...), given as a path or a ``file://`` URI (which takes the same
query), goes through the very same data source and ``datasets`` builder: that is how the real read path is tested
offline, and how a user without Hub access reads a dataset they copied by hand.

Every row gets two extra columns:

- ``_source``: ``hf://datasets/OWNER/NAME/<config>/<split>`` (``file:///abs/dir/<config>/<split>`` for a local
  directory), ``default`` standing for the config when none is named. Doc ids may derive from it, so it depends
  only on the URI, never on the run.
- ``_position``: the row's place in the dataset, ``shard << 33 | row in shard``. The data source makes one Spark
  partition per dataset shard (one data file) in the dataset's own file order and reads each shard front to back,
  so this number depends only on the data files: never on the core count, ``spark.sql.shuffle.partitions`` or
  anything done downstream. It is unique and increases along the dataset, but is not dense.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from huggingface_hub.utils import validate_repo_id
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark_huggingface.huggingface import HuggingFaceDatasets
from pyspark_huggingface.huggingface_source import HuggingFaceSource

HF_SCHEME = "hf://datasets/"
DEFAULT_SPLIT = HuggingFaceSource.DEFAULT_SPLIT
DEFAULT_CONFIG = "default"
SOURCE_COLUMN = "_source"
POSITION_COLUMN = "_position"
_QUERY_KEYS = ("config", "split")


def is_hf_uri(uri: str) -> bool:
    """Whether ``uri`` names a Hub dataset (``hf://datasets/...``), as opposed to files Spark reads itself."""
    return uri.startswith(HF_SCHEME)


def _query(uri: str, query: str) -> tuple[str | None, str | None]:
    """``(config, split)`` from a URI's query; an unknown key is an error, since silently ignoring it would read
    different data from what the user asked for."""
    params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = sorted(set(params) - set(_QUERY_KEYS))
    if unknown:
        raise ValueError(f"{uri}: unknown query parameter(s) {unknown}; allowed: {list(_QUERY_KEYS)}")
    values = {}
    for key in _QUERY_KEYS:
        given = params.get(key, [])
        if len(given) > 1 or (given and not given[0]):
            raise ValueError(f"{uri}: {key!r} must be given once, non-empty")
        values[key] = given[0] if given else None
    return values["config"], values["split"]


def parse_hf_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``hf://datasets/OWNER/NAME[?config=C&split=S]`` -> ``("OWNER/NAME", C or None, S or None)``.

    ``None`` leaves the choice to the data source (the dataset's only/default config; split ``train``).
    """
    if not is_hf_uri(uri):
        raise ValueError(f"not a Hugging Face dataset URI (expected {HF_SCHEME}OWNER/NAME): {uri}")
    parts = urlsplit(uri)
    name = unquote(parts.path).strip("/")
    if name.count("/") != 1:
        raise ValueError(f"expected {HF_SCHEME}OWNER/NAME, got {uri}")
    validate_repo_id(name)  # a ValueError naming what is wrong with it
    return (name, *_query(uri, parts.query))


def _parse_local(uri: str) -> tuple[str, str | None, str | None]:
    """A local dataset directory (plain path, or ``file://`` URI with an optional query) -> ``(abs path, config,
    split)``."""
    if not uri.startswith("file://"):
        return os.path.abspath(uri), None, None
    parts = urlsplit(uri)
    return os.path.abspath(unquote(parts.path)), *_query(uri, parts.query)


class _LocalDirCheck:
    """Stands in for the Hub API in the data source's existence check, which is the only Hub-only step of its read:
    ``datasets.load_dataset_builder`` itself reads a local directory as happily as a Hub repo."""

    def repo_info(self, path: str, **_: object) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no dataset directory at {path}")


class _LocalSource(HuggingFaceSource):
    """The ``huggingface`` source for a local directory: same builder, same shards, same reader."""

    def _get_api(self) -> _LocalDirCheck:
        return _LocalDirCheck()


class LocalHuggingFaceDatasets(HuggingFaceDatasets):
    """``huggingface_local``: the ``huggingface`` data source minus the Hub existence check (see :class:`_LocalSource`).

    Defined in an importable module so Spark's Python workers unpickle it by reference."""

    @classmethod
    def name(cls) -> str:
        return "huggingface_local"

    def get_source(self) -> HuggingFaceSource:
        if self.source is None:
            self.source = _LocalSource(self.options.copy())
        return self.source


def hub_revision(uri: str) -> str:
    """The commit a Hub dataset URI reads now: what identifies its content for the pipeline's reruns (a dataset
    whose commit is not known gets a fresh value, so its outputs are never reused)."""
    return f"{uri}@{_check_hub(parse_hf_uri(uri)[0]) or uuid.uuid4()}"


def _check_hub(name: str) -> str:
    """Ask the Hub about ``name`` on the driver first (returns the commit it reads): the data source asks too, but from a Python worker, where a
    failure surfaces as a Spark error wrapping a long remote traceback.

    Anything but "not found" counts as unreachable: offline mode, DNS, refused connections, timeouts and server
    errors all mean the same to the user, and the HTTP client's exception classes change between releases.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return HfApi().repo_info(name, repo_type="dataset").sha or ""
    except RepositoryNotFoundError:
        raise RuntimeError(
            f"Hugging Face dataset {name} not found (or private/gated: set HF_TOKEN to a token with access)"
        ) from None
    except Exception as e:  # deliberately broad: see the docstring
        reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise RuntimeError(
            f"cannot reach the Hugging Face Hub for {name}: {reason}; set HF_ENDPOINT or pass local files"
        ) from None


def _last_python_error(e: Exception) -> str:
    """The line of a Spark-wrapped Python traceback that says what went wrong (e.g. an invalid split)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line or "Exception:" in line:
            return line
    return lines[0] if lines else type(e).__name__


def read_hf_dataset(spark: SparkSession, uri: str) -> DataFrame:
    """A Hugging Face dataset (``hf://datasets/...``) or a local dataset directory as a DataFrame: the dataset's own
    columns unchanged, plus ``_source`` and ``_position`` (see the module docstring).

    Raises ``RuntimeError`` with a one-line message when the Hub cannot be reached, the dataset does not exist, or
    the data source rejects the read (an unknown split or config, say).
    """
    if is_hf_uri(uri):
        name, config, split = parse_hf_uri(uri)
        _check_hub(name)
        source_class: type[HuggingFaceDatasets] = HuggingFaceDatasets
        base = HF_SCHEME + name
    else:
        name, config, split = _parse_local(uri)
        if not os.path.isdir(name):
            raise FileNotFoundError(f"no dataset directory at {name}")
        source_class = LocalHuggingFaceDatasets
        base = "file://" + name
    spark.dataSource.register(source_class)
    reader = spark.read.format(source_class.name())
    if config:
        reader = reader.option("config", config)
    if split:
        reader = reader.option("split", split)
    try:
        df = reader.load(name)
    except PySparkException as e:
        raise RuntimeError(f"cannot read {uri}: {_last_python_error(e)}") from None
    clash = [c for c in (SOURCE_COLUMN, POSITION_COLUMN) if c in df.columns]
    if clash:
        raise ValueError(f"{uri} already has column(s) {clash}, which the reader adds")
    source = f"{base}/{config or DEFAULT_CONFIG}/{split or DEFAULT_SPLIT}"
    # monotonically_increasing_id() is partition index << 33 | row in partition. Applied right on top of the scan
    # (nothing in between can move rows across partitions), partition index = shard index.
    return df.withColumn(SOURCE_COLUMN, F.lit(source)).withColumn(POSITION_COLUMN, F.monotonically_increasing_id())
