"""Deduplication stages: exact (content hash) and near (MinHash LSH + connected components)."""
