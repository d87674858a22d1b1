"""Pack's batch encoder: tiktoken's ids equal the tokenizer's, and tokenizers it cannot mirror keep their own encoder.

Real tokenizers throughout: the offline GPT-2 BPE, BPEs trained here with ``tokenizers``' trainer on generated text
(one renumbered the way OPT's vocabulary is), and hand-written ``tokenizer.json`` files for the cases that must not
take the fast path.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE

from slm_common.tokenizer import load_tokenizer, worker_tokenizer
from spark_jobs.pack.encoder import BatchEncoder, batch_encoder, tiktoken_ranks

PIECES = [
    "the",
    "The",
    "don't",
    "it's",
    "we'll",
    "THEY'RE",
    "I'd",
    "naïve",
    "Straße",
    "ǅemal",
    "İstanbul",
    "ﬁle",
    "добрый",
    "день",
    "Ελλάδα",
    "中文字符",
    "日本語のテキスト",
    "한국어",
    "العربية",
    "עברית",
    "हिन्दी",
    "ไทย",
    "😀",
    "👩‍💻",
    "🇫🇷",
    "x²",
    "½",
    "١٢٣",
    "12345",
    "3.14159",
    "0x1F",
    "def",
    "return",
    "self.x",
    "a_b",
    "->",
    "==",
    "{}",
    "();",
    "</s>",
    "<pad>",
    "<|endoftext|>",
    "\\n",
    "'",
    "''",
    "'s",
    "--",
    "...",
    "—",
    "«»",
]
SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2003", " \n ", "\x0b", "\x0c"]


def generated_texts(count: int, seed: int) -> list[str]:
    """Texts mixing scripts, code, contractions, special-token spellings and odd whitespace."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 60)):
            parts.append(rng.choice(PIECES))
            parts.append(rng.choice(SPACES))
        texts.append("".join(parts)[rng.randint(0, 3) :])
    return texts + ["", " ", "   x", "x   ", "\n\n\n", "a" * 5000, "ab " * 3000, "'s's's", "  'll  "]


def trained_bpe(texts: list[str], vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE trained here, the way GPT-2-style tokenizers are made."""
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["</s>"]
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def saved(tok: Tokenizer, tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.json"
    tok.save(str(path))
    return str(path)


def renumbered(path: str, tmp_path, seed: int) -> str:
    """The same tokenizer with its vocabulary ids shuffled (ids no longer follow the merges, as in OPT's)."""
    state = json.loads(open(path, encoding="utf-8").read())
    vocab = state["model"]["vocab"]
    new_ids = list(range(len(vocab)))
    random.Random(seed).shuffle(new_ids)
    mapping = dict(zip(sorted(vocab.values()), new_ids, strict=True))
    state["model"]["vocab"] = {token: mapping[i] for token, i in vocab.items()}
    for added in state["added_tokens"]:
        added["id"] = len(vocab) + added["id"]
    out = tmp_path / "renumbered.json"
    out.write_text(json.dumps(state), encoding="utf-8")
    return str(out)


def tokenizer_ids(path: str, texts: list[str]) -> list[list[int]]:
    tok = worker_tokenizer(path)
    return [encoding.ids for encoding in tok.encode_batch_fast(texts, add_special_tokens=False)]


def assert_same_ids(path: str, texts: list[str], expected_encoder: str) -> None:
    encoder = batch_encoder(path, 1)
    ids = encoder(texts)
    assert encoder.name == expected_encoder
    assert isinstance(ids, pa.ListArray) and ids.type.value_type == pa.int32()
    assert ids.to_pylist() == tokenizer_ids(path, texts)


def test_offline_gpt2_bpe_takes_tiktoken_with_identical_ids(tmp_path):
    load_tokenizer().save_pretrained(tmp_path)
    texts = generated_texts(400, seed=1)
    assert_same_ids(str(tmp_path / "tokenizer.json"), texts, "tiktoken")


@pytest.mark.parametrize("renumber", [False, True], ids=["trainer_ids", "shuffled_ids"])
def test_trained_byte_level_bpe_takes_tiktoken_with_identical_ids(tmp_path, renumber):
    path = saved(trained_bpe(generated_texts(300, seed=2)), tmp_path, "trained")
    if renumber:
        path = renumbered(path, tmp_path, seed=3)
    assert_same_ids(path, generated_texts(300, seed=4), "tiktoken")


def _with(state_change, tmp_path) -> str:
    tok = trained_bpe(generated_texts(200, seed=5))
    state = json.loads(tok.to_str())
    state_change(state)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return str(path)


def _lowercase(state):
    state["normalizer"] = json.loads(normalizers.Lowercase().__getstate__())


def _ignore_merges(state):
    state["model"]["ignore_merges"] = True


def _prefix_space(state):
    state["pre_tokenizer"]["add_prefix_space"] = True


def _plain_added_token(state):
    vocab = state["model"]["vocab"]
    state["added_tokens"].append(
        {
            "id": len(vocab) + 5,
            "content": "zq",
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": True,
            "special": False,
        }
    )


@pytest.mark.parametrize("change", [_lowercase, _ignore_merges, _prefix_space, _plain_added_token])
def test_tokenizers_tiktoken_cannot_mirror_keep_their_own_encoder(tmp_path, change):
    path = _with(change, tmp_path)
    assert_same_ids(path, generated_texts(100, seed=6) + ["zq zqzq ZQ"], "tokenizers")


def test_a_merged_token_the_merges_never_reach_disqualifies():
    """Merges b+c, then a+b, then ab+c: the tokenizer encodes "abc" as a, bc (bc is merged first and a+bc is no
    merge), while tiktoken would return the token abc; so no ranks."""
    symbols = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(symbols))}
    merges = [("b", "c"), ("a", "b"), ("ab", "c")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    state = json.loads(tok.to_str())
    assert [t.value for t in tok.model.tokenize("abc")] == ["a", "bc"]
    assert tiktoken_ranks(state, tok) is None
    state["model"]["merges"] = [["a", "b"], ["b", "c"], ["ab", "c"]]  # ab first: abc is reached, ranks exist
    reordered = Tokenizer.from_str(json.dumps(state))
    assert tiktoken_ranks(json.loads(reordered.to_str()), reordered) is not None


def test_the_guard_falls_back_when_the_fast_ids_differ(tmp_path):
    """A fast encoder whose rank -> id table is wrong is caught on its first batch; the batch gets the tokenizer's
    ids."""
    load_tokenizer().save_pretrained(tmp_path)
    path = str(tmp_path / "tokenizer.json")
    good = batch_encoder(path, 1)
    assert good.name == "tiktoken"
    broken = BatchEncoder(good.tokenizer, good.fast, np.roll(good.ids, 1), threads=1)
    texts = generated_texts(50, seed=7)
    assert broken(texts).to_pylist() == tokenizer_ids(path, texts)
    assert broken.name == "tokenizers"
