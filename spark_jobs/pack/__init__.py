"""The pack stage: tokenize cleaned documents and pack them into fixed-length sequences (``packed/``)."""

from spark_jobs.pack.job import pack_corpus

__all__ = ["pack_corpus"]
