"""MinHash signatures of word n-gram sets, vectorised over a batch of documents, and the LSH band choice.

Similarity (the usual MinHash-dedup definition): the Jaccard index of the sets of word n-grams of ``text.lower().split()``; a document with
fewer than n words has no n-grams and is never a near-duplicate.

Why not call datasketch per document: ``MinHash.update_batch`` hashes every shingle with a Python call (SHA-1 by
default) and permutes one document at a time, so a Python loop runs per shingle. Here a whole batch goes through
numpy at once:

1. lowercase with Python's ``str.lower`` (the definition; Arrow's ``utf8_lower`` differs on a few code points and
   on the final sigma) and split on the UTF-8 bytes with numpy, on exactly the characters ``str.isspace`` accepts;
2. hash every word with a 64-bit polynomial hash of its UTF-8 bytes (prefix sums over the whole chunk, no per-word
   Python), finished by MurmurHash3's ``fmix64``;
3. combine n consecutive word hashes into a 32-bit shingle hash (xor-multiply, upper 32 bits);
4. apply datasketch's default permutation scheme ("affine32": ``fmix32``, then ``a * h + b`` mod 2^32 with the
   parameters datasketch draws from ``np.random.RandomState(seed)``) and take per-document minima.

The result is bit-identical to ``datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash)`` updated with the
document's shingles (the tests check this), so estimates, LSH banding and the datasketch baseline all agree.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_WORD_MUL = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime; odd, so invertible mod 2^64 (word sums need M^-1)
_SHINGLE_MUL = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: multiplicative hashing of the xor chain
_MAX_HASH32 = np.uint32(0xFFFFFFFF)  # datasketch's initial value: a document without shingles keeps it everywhere
_CHUNK_BYTES = 1 << 20  # characters hashed at once: the byte passes hold ~40 bytes of temporaries per byte
_CHUNK_SHINGLES = 8192  # shingles permuted at once: num_perm x this many uint32 (4 MiB at 128 permutations)


def words(text: str | None) -> list[str]:
    """The word sequence n-grams are built from: lowercased, split on any Unicode whitespace."""
    return (text or "").lower().split()


def shingle_set(text: str | None, n: int) -> set[str]:
    """The set of word n-grams of ``text``, each the words joined by one space (the reference, used for audits)."""
    w = words(text)
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def exact_jaccard(a: str | None, b: str | None, n: int) -> float:
    """The exact n-gram Jaccard index of two texts; 0.0 when either has fewer than ``n`` words."""
    sa, sb = shingle_set(a, n), shingle_set(b, n)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


# --- hashing ----------------------------------------------------------------------------------------------------


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads the weak low-order mixing of the polynomial hash over all bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch's affine32 scheme applies it before permuting."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _powers(base: int, count: int) -> np.ndarray:
    """``base ** k`` mod 2^64 for k in [0, count) (numpy's uint64 products wrap, which is the modulus)."""
    return _power_table(base, 1 << max(count - 1, 0).bit_length())[:count]


@functools.lru_cache(maxsize=4)
def _power_table(base: int, size: int) -> np.ndarray:
    """A cached power table of a power-of-two size, so chunks of similar sizes share one."""
    table = np.full(size, np.uint64(base), dtype=np.uint64)
    table[:1] = 1
    return np.cumprod(table, dtype=np.uint64)


@functools.cache
def _whitespace() -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """What ``str.split()`` splits on, as UTF-8: a byte table of 1-byte whitespace, a byte table of the first bytes
    of longer whitespace characters, and those characters' big-endian codes by length.

    Derived from ``str.isspace`` itself (once per process), so it is Python's definition by construction.
    """
    single = np.zeros(256, dtype=bool)
    leads = np.zeros(256, dtype=bool)
    longer: dict[int, list[int]] = {}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if char.isspace():
            raw = char.encode()
            if len(raw) == 1:
                single[raw[0]] = True
            else:
                leads[raw[0]] = True
                longer.setdefault(len(raw), []).append(int.from_bytes(raw, "big"))
    return single, leads, {length: np.array(codes) for length, codes in longer.items()}


def _whitespace_mask(data: np.ndarray) -> np.ndarray:
    """True for every byte of ``data`` (UTF-8) that belongs to a whitespace character.

    Two table lookups per byte; only positions holding a possible first byte of a multi-byte whitespace character
    (rare outside non-ASCII text) are decoded further.
    """
    single, leads, longer = _whitespace()
    mask = single[data]
    at = np.flatnonzero(leads[data])
    for length, codes in longer.items():
        candidates = at[at <= len(data) - length]
        value = np.zeros(len(candidates), dtype=np.int64)
        for k in range(length):
            value = (value << 8) | data[candidates + k]
        hit = candidates[np.isin(value, codes)]
        for k in range(length):
            mask[hit + k] = True
    return mask


def _word_hashes(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words of every text (lowercased, split like ``str.split``), and each text's word count.

    A word of UTF-8 bytes c_0..c_{L-1} hashes to fmix64(M^L + sum c_j M^j) mod 2^64. With a prefix sum of
    ``c_t M^t`` over the whole chunk, a word's sum is a difference of two prefixes times M^-start (M is odd, so it
    is invertible mod 2^64): three streaming passes over the bytes and no per-word Python.
    """
    lowered = pa.array([(t or "").lower() for t in texts], type=pa.large_string())
    bounds = np.frombuffer(lowered.buffers()[1], dtype=np.int64)[: len(texts) + 1]
    data = np.frombuffer(lowered.buffers()[2], dtype=np.uint8)[: bounds[-1]] if bounds[-1] else np.zeros(0, np.uint8)
    inside = ~_whitespace_mask(data)
    cut = np.zeros(len(data) + 1, dtype=bool)
    cut[bounds] = True  # a word never runs from one text into the next
    starts = np.flatnonzero(inside & (cut[:-1] | ~np.concatenate(([False], inside[:-1]))))
    ends = np.flatnonzero(inside & (cut[1:] | ~np.concatenate((inside[1:], [False])))) + 1
    counts = np.bincount(np.searchsorted(bounds, starts, side="right") - 1, minlength=len(texts))
    powers = _powers(int(_WORD_MUL), len(data) + 1)
    prefix = np.concatenate((np.zeros(1, np.uint64), np.cumsum(data * powers[:-1], dtype=np.uint64)))
    inverse = _powers(pow(int(_WORD_MUL), -1, 1 << 64), len(data) + 1)
    sums = (prefix[ends] - prefix[starts]) * inverse[starts]
    return _fmix64(sums + powers[ends - starts]), counts


def _combine(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """32-bit hashes of every window of ``n`` consecutive word hashes (order-sensitive xor-multiply chain)."""
    count = max(len(word_hashes) - n + 1, 0)
    acc = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        acc = (acc ^ word_hashes[k : k + count]) * _SHINGLE_MUL
    return (acc >> np.uint64(32)).astype(np.uint32)


def shingle_hashes(texts: Sequence[str | None], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit hashes of every word n-gram of every text, concatenated, and each text's shingle count.

    Repeated n-grams are kept (MinHash takes minima, so a repeat changes nothing and deduplicating costs more).
    """
    hashes, word_counts = _word_hashes(texts)
    windows = _combine(hashes, n)
    # a window is a shingle only when its n words belong to one text: starts at most (words - n) into that text
    shingle_counts = np.maximum(word_counts - n + 1, 0)
    text_starts = np.cumsum(word_counts) - word_counts
    starts = np.repeat(text_starts, shingle_counts) + _ranks(shingle_counts)
    return windows[starts], shingle_counts


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c-1 for each count c, concatenated (the position of each item inside its group)."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def shingle_hash(shingle: str) -> int:
    """The hash of one shingle (words joined by single spaces): ``hashfunc`` for an equivalent datasketch MinHash."""
    hashes, _ = shingle_hashes([shingle], len(shingle.split(" ")))
    return int(hashes[0])


# --- MinHash ----------------------------------------------------------------------------------------------------


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine32 permutation parameters (a odd, b) exactly as ``datasketch.MinHash(num_perm, seed)`` draws them."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@dataclass(frozen=True)
class MinHasher:
    """Computes MinHash signatures for batches of texts; picklable, so Spark ships it to the Python workers."""

    ngram: int
    num_perm: int
    seed: int

    @functools.cached_property
    def _perms(self) -> tuple[np.ndarray, np.ndarray]:
        return permutations(self.num_perm, self.seed)

    def signatures(self, texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """Signatures (``len(texts)`` x ``num_perm`` uint32) and which texts have at least one n-gram.

        Texts go through in chunks of about ``_CHUNK_BYTES`` so memory stays bounded whatever the batch holds.
        """
        sigs = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        eligible = np.zeros(len(texts), dtype=bool)
        for lo, hi in _chunks([len(t or "") for t in texts], _CHUNK_BYTES):
            hashes, counts = shingle_hashes(texts[lo:hi], self.ngram)
            sigs[lo:hi] = self._min_per_text(hashes, counts)
            eligible[lo:hi] = counts > 0
        return sigs, eligible

    def _min_per_text(self, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per-text minima of every permuted shingle hash; texts without shingles keep datasketch's max value.

        Permuted values are laid out permutation-major (num_perm x shingles), so each row is contiguous and
        ``minimum.reduceat`` reduces every text's run of shingles in one call per chunk.
        """
        a, b = self._perms
        sigs = np.full((len(counts), self.num_perm), _MAX_HASH32, dtype=np.uint32)
        owner = np.repeat(np.arange(len(counts)), counts)
        mixed = _fmix32(hashes)
        space = np.empty((self.num_perm, min(len(mixed), _CHUNK_SHINGLES)), dtype=np.uint32)
        for start in range(0, len(mixed), _CHUNK_SHINGLES):
            chunk = mixed[start : start + _CHUNK_SHINGLES]
            chunk_owner = owner[start : start + len(chunk)]
            runs = np.flatnonzero(np.diff(chunk_owner, prepend=-1))
            permuted = np.multiply(a[:, None], chunk[None, :], out=space[:, : len(chunk)])
            permuted += b[:, None]  # in place: one buffer for all chunks, no new array per step
            run_min = np.minimum.reduceat(permuted, runs, axis=1).T
            who = chunk_owner[runs]
            sigs[who] = np.minimum(sigs[who], run_min)
        return sigs


def _chunks(sizes: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` ranges whose sizes add up to about ``budget`` (at least one item each)."""
    ranges, lo, used = [], 0, 0
    for i, size in enumerate(sizes):
        if i > lo and used + size > budget:
            ranges.append((lo, i))
            lo, used = i, 0
        used += size
    if lo < len(sizes):
        ranges.append((lo, len(sizes)))
    return ranges


# --- LSH banding ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bands:
    """LSH banding: ``b`` bands of ``r`` signature values; two documents are candidates when any band is equal."""

    b: int
    r: int

    def candidate_probability(self, s: float) -> float:
        """Probability that two documents at Jaccard ``s`` share at least one band: 1 - (1 - s^r)^b."""
        return 1.0 - (1.0 - s**self.r) ** self.b

    def s_curve(self) -> dict[str, float]:
        """The candidacy probability at s = 0.1, 0.2, ..., 1.0 (for the report)."""
        return {f"{s / 10:.1f}": round(self.candidate_probability(s / 10), 6) for s in range(1, 11)}


@functools.lru_cache(maxsize=32)
def choose_bands(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> Bands:
    """datasketch's own search (the (b, r) with b*r <= num_perm minimising the weighted areas under/over the S-curve).

    Same function as ``MinHashLSH(threshold, num_perm, weights=(fp_weight, fn_weight))``, so our banding matches the
    reference index exactly.
    """
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, fp_weight, fn_weight)
    return Bands(b=b, r=r)
