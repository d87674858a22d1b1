"""Pretraining of OPT models with Accelerate on packed Parquet shards (``python -m train --help``)."""
