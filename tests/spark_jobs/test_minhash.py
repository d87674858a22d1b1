"""The vectorised MinHash equals datasketch's, the hashes follow their written definition, banding is datasketch's."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from spark_jobs.dedup import minhash
from spark_jobs.dedup.minhash import MinHasher, choose_bands, exact_jaccard, shingle_hash, shingle_set

MASK64 = (1 << 64) - 1

TRICKY_TEXTS = [
    "The quick brown fox jumps over the lazy dog again and again",
    "  leading and trailing   whitespace\tand\ttabs\nand newlines  ",
    "non\u00a0breaking\u3000ideographic\u2028line\x1csep\x1dgroup\x1erecord\x1funit spaces",
    "ΟΔΟΣ ΣΟΦΟΣ final sigma İstanbul ǅemal Straße ﬁnance 😀 emoji words here",
    "one two three four",  # fewer than 5 words: no shingle
    "",
    None,
    "repeat " * 40,  # one distinct shingle repeated
    "a\x00b nul byte inside a word and more words",
]


def random_texts(rng: random.Random, count: int) -> list[str]:
    vocab = [f"w{i}" for i in range(60)] + ["é", "日本", "ß", "İ", "Σ", "x\x00y"]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 200))) for _ in range(count)]


def reference_word_hash(word: str) -> int:
    """The documented word hash, written independently: fmix64(M^L + sum c_j M^j mod 2^64) over the UTF-8 bytes."""
    h, power = 0, 1
    for byte in word.encode("utf-8"):
        h = (h + byte * power) & MASK64
        power = (power * 0x100000001B3) & MASK64
    h = (h + power) & MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def reference_shingle_hash(shingle: str) -> int:
    """The documented shingle hash: xor-multiply chain over the word hashes, upper 32 bits."""
    acc = 0
    for word in shingle.split(" "):
        acc = ((acc ^ reference_word_hash(word)) * 0x9E3779B97F4A7C15) & MASK64
    return acc >> 32


def datasketch_signature(text: str | None, n: int, num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
    m.update_batch(sorted(shingle_set(text, n)))
    return m.hashvalues


@pytest.mark.parametrize(("num_perm", "seed", "n"), [(128, 0, 5), (64, 3, 3)])
def test_signatures_equal_datasketch(num_perm, seed, n):
    texts = TRICKY_TEXTS + random_texts(random.Random(seed), 40)
    sigs, eligible = MinHasher(n, num_perm, seed).signatures(texts)
    assert sigs.dtype == np.uint32 and sigs.shape == (len(texts), num_perm)
    for text, sig, ok in zip(texts, sigs, eligible, strict=True):
        assert ok == bool(shingle_set(text, n))
        np.testing.assert_array_equal(sig, datasketch_signature(text, n, num_perm, seed))


def test_permutations_are_datasketchs():
    a, b = minhash.permutations(128, 7)
    ref = MinHash(num_perm=128, seed=7).permutations
    np.testing.assert_array_equal(a, ref[0])
    np.testing.assert_array_equal(b, ref[1])


def test_hashes_follow_their_definition():
    for text in TRICKY_TEXTS[:4] + random_texts(random.Random(1), 10):
        for shingle in shingle_set(text, 5):
            assert shingle_hash(shingle) == reference_shingle_hash(shingle)


def test_batch_hashes_are_the_per_shingle_hashes_in_order():
    """Splitting a batch (with Arrow) finds exactly the n-grams str.split finds, in each text's order."""
    texts = TRICKY_TEXTS + random_texts(random.Random(2), 10)
    hashes, counts = minhash.shingle_hashes(texts, 5)
    expected = []
    for text in texts:
        w = minhash.words(text)
        grams = [" ".join(w[i : i + 5]) for i in range(len(w) - 4)]
        expected.extend(shingle_hash(g) for g in grams)
    assert counts.tolist() == [max(len(minhash.words(t)) - 4, 0) for t in texts]
    assert hashes.tolist() == expected


def test_words_split_exactly_where_str_split_does_for_every_code_point():
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000]
    texts = ["".join(f"a{c}b" for c in chars[i : i + 64]) + chars[i] for i in range(0, len(chars), 64)]
    _, counts = minhash._word_hashes(texts)
    assert counts.tolist() == [len(t.lower().split()) for t in texts]


def test_chunking_does_not_change_signatures(monkeypatch):
    texts = random_texts(random.Random(3), 30)
    whole, _ = MinHasher(5, 32, 0).signatures(texts)
    monkeypatch.setattr(minhash, "_CHUNK_BYTES", 300)
    monkeypatch.setattr(minhash, "_CHUNK_SHINGLES", 7)
    np.testing.assert_array_equal(MinHasher(5, 32, 0).signatures(texts)[0], whole)


def test_estimate_tracks_exact_jaccard():
    rng = random.Random(4)
    base = [f"t{rng.randrange(10**9)}" for _ in range(600)]
    copy = list(base)
    for i in range(10, 600, 40):
        copy[i] = "changed"
    a, b = " ".join(base), " ".join(copy)
    sigs, _ = MinHasher(5, 256, 0).signatures([a, b])
    estimate = float(np.mean(sigs[0] == sigs[1]))
    assert abs(estimate - exact_jaccard(a, b, 5)) < 0.08


@pytest.mark.parametrize(("threshold", "weights"), [(0.8, (0.5, 0.5)), (0.8, (0.02, 0.98)), (0.7, (0.3, 0.7))])
def test_band_choice_is_datasketchs(threshold, weights):
    lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=weights)
    bands = choose_bands(threshold, 128, *weights)
    assert (bands.b, bands.r) == (lsh.b, lsh.r)
    curve = bands.s_curve()
    assert list(curve) == [f"{s / 10:.1f}" for s in range(1, 11)]
    assert curve["1.0"] == 1.0 and all(
        x <= y for x, y in zip(list(curve.values())[:-1], list(curve.values())[1:], strict=True)
    )


def test_default_bands_favour_recall_at_the_threshold():
    assert choose_bands(0.8, 128, 0.02, 0.98).candidate_probability(0.8) > 0.97


def test_exact_jaccard_definition():
    assert exact_jaccard("A b c d e f", "a B c d e f", 5) == 1.0
    assert exact_jaccard("a b c d e f", "a b c d e g", 5) == pytest.approx(1 / 3)
    assert exact_jaccard("a b c d", "a b c d", 5) == 0.0  # fewer than n words: never near-duplicates
