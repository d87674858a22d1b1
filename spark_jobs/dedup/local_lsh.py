"""Near dedup of a few signatures in one process: LSH buckets, star edges, verification and components in numpy.

The distributed path (:mod:`.near`) runs a dozen Spark jobs for buckets, edges, estimates and component rounds;
on a corpus of some hundred thousand documents each of them is mostly scheduling, and together they cost more than
the work. Up to ``--dedup-local-docs`` signed documents, one task gets all signatures (512 bytes per document at
128 permutations) and computes the same answer here, with the same statistics:

* documents are numbered by ``doc_id`` in sorted order, so "the smallest doc_id" is the smallest number;
* per band, a stable sort groups equal keys (the band's r values), members in number order: the first member of
  each group is its hub, and each other member gives the star edge member -> hub;
* edges are made distinct over the bands, verified by the share of equal signature values, and the verified ones
  go to :func:`.components.smallest_roots`, whose roots are the components' smallest documents.

Memory: the signature matrix twice (as given, and in number order) plus about 200 bytes per document for one
band's sort and the edges.
"""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from spark_jobs.dedup.components import smallest_roots
from spark_jobs.dedup.minhash import Bands

TOP = 10
_CHUNK_EDGES = 1 << 15  # edges verified at once: two (chunk x num_perm) uint32 gathers
_KEY_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: xor-multiply chain over a band's values


class LocalResult(NamedTuple):
    """Removals (``doc_id`` -> ``duplicate_of`` with the pair's estimate) and the LSH statistics."""

    doc_id: pa.Array
    duplicate_of: pa.Array
    est: np.ndarray
    buckets: dict[int, int]
    """Shared buckets (two or more documents) per size."""
    largest_buckets: list[dict[str, Any]]
    """The ``TOP`` largest shared buckets: ``hub``, ``band``, ``size``; by size descending, then hub, then band."""
    candidate_edges: int
    verified_edges: int


def estimates(sigs: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Share of equal values of the signatures of rows ``src`` and ``dst`` (the MinHash Jaccard estimate)."""
    equal = np.empty(len(src), dtype=np.int64)
    for start in range(0, len(src), _CHUNK_EDGES):
        end = start + _CHUNK_EDGES
        equal[start:end] = (sigs[src[start:end]] == sigs[dst[start:end]]).sum(axis=1)
    return equal / sigs.shape[1]


def _bucket_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order of the rows that makes equal keys adjacent, rows in number order within them, and where each run of
    equal keys starts: a stable sort of a 64-bit hash of the keys (one sort instead of r), checked for collisions,
    which fall back to sorting by every value."""
    mixed = np.zeros(len(keys), dtype=np.uint64)
    for column in keys.T:
        mixed = (mixed ^ column.astype(np.uint64)) * _KEY_MUL
    order = np.argsort(mixed, kind="stable")
    ordered, hashes = keys[order], mixed[order]
    same_key = (ordered[1:] == ordered[:-1]).all(axis=1)
    if (same_key != (hashes[1:] == hashes[:-1])).any():  # two keys share a hash: order by the values themselves
        order = np.lexsort(keys.T[::-1])
        ordered = keys[order]
        same_key = (ordered[1:] == ordered[:-1]).all(axis=1)
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = ~same_key
    return order, starts


def _band_buckets(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one band's keys (rows of r values): each row's hub row, and the shared buckets' hubs and sizes."""
    order, starts = _bucket_order(keys)
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    sizes = np.diff(np.append(first, len(order)))
    hub = np.empty(len(order), dtype=np.int64)
    hub[order] = order[first][group]
    shared = sizes > 1
    return hub, order[first][shared], sizes[shared]


def near_duplicates(ids: pa.Array, sigs: np.ndarray, bands: Bands, min_estimate: float) -> LocalResult:
    """Removals and statistics for documents ``ids`` with signatures ``sigs`` (one row each, uint32), exactly as the
    distributed path computes them."""
    codes, nodes = pd.factorize(ids.to_numpy(zero_copy_only=False), sort=True)
    rows = np.empty(len(codes), dtype=np.int64)
    rows[codes] = np.arange(len(codes))
    sigs = sigs[rows]  # row k is the document numbered k (ids are distinct)
    n = len(sigs)
    buckets: dict[int, int] = {}
    largest: list[tuple[int, int, int]] = []  # (-size, hub, band): the smallest tuples are the largest buckets
    edges = []
    for band in range(bands.b):
        hub, hubs, sizes = _band_buckets(sigs[:, band * bands.r : (band + 1) * bands.r])
        for size, count in zip(*np.unique(sizes, return_counts=True), strict=True):
            buckets[int(size)] = buckets.get(int(size), 0) + int(count)
        top = np.lexsort((hubs, -sizes))[:TOP]
        largest = heapq.nsmallest(TOP, largest + [(-int(sizes[i]), int(hubs[i]), band) for i in top])
        member = np.flatnonzero(hub != np.arange(n))
        edges.append(member * n + hub[member])
    pairs = np.unique(np.concatenate(edges)) if edges else np.empty(0, dtype=np.int64)
    src, dst = pairs // max(n, 1), pairs % max(n, 1)
    passed = estimates(sigs, src, dst) >= min_estimate
    node, root = smallest_roots(pa.array(src[passed]), pa.array(dst[passed]))
    node, root = node.to_numpy(), root.to_numpy()
    hubs = pa.array(nodes[[h for _, h, _ in largest]], type=ids.type).to_pylist()
    return LocalResult(
        doc_id=pa.array(nodes[node], type=ids.type),
        duplicate_of=pa.array(nodes[root], type=ids.type),
        est=estimates(sigs, node, root),
        buckets=buckets,
        largest_buckets=[{"hub": h, "band": b, "size": -s} for h, (s, _, b) in zip(hubs, largest, strict=True)],
        candidate_edges=len(pairs),
        verified_edges=int(passed.sum()),
    )
