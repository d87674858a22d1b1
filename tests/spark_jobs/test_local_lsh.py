"""One-process LSH (no Spark) against a plain Python reference: dict buckets, pairwise estimates, union-find."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from spark_jobs.dedup import local_lsh
from spark_jobs.dedup.local_lsh import near_duplicates
from spark_jobs.dedup.minhash import Bands

BANDS = Bands(b=6, r=3)
PERM = 18


def corpus(n: int, seed: int) -> np.ndarray:
    """Signatures with planted near copies: values from a small alphabet (so bands collide by chance too), and
    copies of earlier rows with some values changed (chains and stars of near copies)."""
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 6, size=(n, PERM), dtype=np.uint32)
    for i in range(1, n):
        if rng.random() < 0.5:
            sigs[i] = sigs[rng.integers(0, i)]
            changed = rng.choice(PERM, size=rng.integers(0, 6), replace=False)
            sigs[i, changed] = rng.integers(0, 1 << 32, size=len(changed), dtype=np.uint32)
    return sigs


def reference(ids: list, sigs: np.ndarray, min_estimate: float) -> tuple[dict, dict, list, int, int]:
    buckets: dict[tuple, list] = {}
    for band in range(BANDS.b):
        for doc, sig in zip(ids, sigs, strict=True):
            buckets.setdefault((band, tuple(sig[band * BANDS.r : (band + 1) * BANDS.r])), []).append(doc)
    shared = [(band, min(docs), len(docs), docs) for (band, _), docs in buckets.items() if len(docs) > 1]
    edges = {(doc, hub) for _, hub, _, docs in shared for doc in docs if doc != hub}
    by_id = dict(zip(ids, sigs, strict=True))

    def est(a, b) -> float:
        return int((by_id[a] == by_id[b]).sum()) / PERM

    verified = [(a, b) for a, b in edges if est(a, b) >= min_estimate]
    parent = {doc: doc for doc in ids}

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in verified:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    removals = {doc: (find(doc), est(doc, find(doc))) for doc in ids if find(doc) != doc}
    sizes: dict[int, int] = {}
    for _, _, size, _ in shared:
        sizes[size] = sizes.get(size, 0) + 1
    largest = sorted(shared, key=lambda s: (-s[2], s[1], s[0]))[:10]
    top = [{"hub": hub, "band": band, "size": size} for band, hub, size, _ in largest]
    return removals, sizes, top, len(edges), len(verified)


@pytest.mark.parametrize(("seed", "strings", "collisions"), [(0, False, False), (1, False, True), (2, True, False)])
def test_matches_the_reference(seed, strings, collisions, monkeypatch):
    """``collisions``: every band key hashes to 0, so buckets come from the sort by all r values (the fallback)."""
    if collisions:
        monkeypatch.setattr(local_lsh, "_KEY_MUL", np.uint64(0))
    n = 400
    rng = np.random.default_rng(seed)
    numbers = rng.permutation(10 * n)[:n] - 5 * n  # shuffled, negative ones included
    ids = [f"doc-{v}" for v in numbers] if strings else [int(v) for v in numbers]
    sigs = corpus(n, seed)
    result = near_duplicates(pa.array(ids), sigs, BANDS, 0.7)
    removals, sizes, top, candidates, verified = reference(ids, sigs, 0.7)
    pairs = zip(result.duplicate_of.to_pylist(), result.est.tolist(), strict=True)
    got = dict(zip(result.doc_id.to_pylist(), pairs, strict=True))
    assert removals and got == removals
    assert result.buckets == sizes and result.largest_buckets == top
    assert (result.candidate_edges, result.verified_edges) == (candidates, verified)
    assert verified < candidates  # chance collisions were candidates and failed verification


def test_no_documents_and_no_candidates():
    for sigs in (np.zeros((0, PERM), np.uint32), np.arange(3 * PERM, dtype=np.uint32).reshape(3, PERM)):
        result = near_duplicates(pa.array(range(len(sigs)), pa.int64()), sigs, BANDS, 0.8)
        assert len(result.doc_id) == 0 and result.buckets == {} and result.largest_buckets == []
        assert (result.candidate_edges, result.verified_edges) == (0, 0)
