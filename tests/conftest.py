"""Shared fixtures: one local SparkSession for the whole test session, offline Hugging Face, quiet Spark UI."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("SLM_SPARK_UI", "0")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    """A real local SparkSession (2 cores), shared by every test that needs Spark."""
    from spark_jobs.session import get_spark

    session = get_spark(master="local[2]", app_name="slm-tests", shuffle_partitions=4, driver_memory="2g", ui=False)
    yield session
    session.stop()
