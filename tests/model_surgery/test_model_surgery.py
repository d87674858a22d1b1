"""model_surgery: SOLAR depth up-scaling, LLaMA Pro identity growth, random init, save/load and the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from model_surgery import init_random, load_pretrained, resize, save
from model_surgery.__main__ import main
from model_surgery.checks import LIMITS, Refused, check_overrides, is_model_save
from model_surgery.report import format_table, row
from model_surgery.resize import dus_plan, identity_plan

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(hidden_size=32, num_attention_heads=4, ffn_dim=64, vocab_size=128, max_position_embeddings=64)
TINY_FLAGS = ["--hidden", "32", "--heads", "4", "--ffn", "64", "--vocab", "128", "--positions", "64"]
WORDS = "the a cat dog sat on mat and ran far".split()


def tiny(layers: int = 4, seed: int = 0, **overrides):
    return init_random(seed=seed, num_hidden_layers=layers, **{**TINY, **overrides})


def tokens(seed: int = 0, batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(3, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(seed))


def trained(layers: int = 4, seed: int = 0, steps: int = 3):
    """A tiny model after a few AdamW steps, returned in eval mode.

    A fresh OPT starts every bias at zero, so a growth that zeroed only the new layers' weights would still look
    function-preserving on it; training moves the biases, which makes the bias zeroing observable.
    """
    model = tiny(layers=layers, seed=seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(steps):
        ids = tokens(seed=100 + step, batch=4)
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def residual_writers(layer) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """The two projections whose outputs are added to the residual stream."""
    return layer.self_attn.out_proj, layer.fc2


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids).logits


def layer_state(model, index: int) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.model.decoder.layers[index].state_dict().items()}


def save_tokenizer(directory: Path) -> None:
    """A tiny word-level tokenizer, built locally because the tests never reach the hub."""
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="</s>", eos_token="</s>"
    )
    fast.save_pretrained(directory)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model_surgery", *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(text: str) -> dict[str, tuple[int, int]]:
    """label -> (layers, parameters) for each data row of the printed table."""
    found = re.findall(r"^(.+?)\s+(\d+)\s+([\d,]+)\s+[\d.]+M$", text, flags=re.MULTILINE)
    return {label.strip(): (int(layers), int(params.replace(",", ""))) for label, layers, params in found}


# --- plans -------------------------------------------------------------------------------------------------------


def test_dus_plan_matches_the_solar_examples():
    layers = list(range(12))
    assert dus_plan(12, 16) == layers[:-4] + layers[4:]
    assert dus_plan(12, 16) == [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11]
    assert dus_plan(12, 10) == layers[:5] + layers[-5:]
    assert dus_plan(12, 10) == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (12, 12, list(range(12))),
        (12, 13, list(range(7)) + list(range(6, 12))),  # odd: the first part keeps one more layer
        (12, 24, list(range(12)) * 2),
        (4, 1, [0]),
        (4, 3, [0, 1, 3]),
        (3, 5, [0, 1, 2, 1, 2]),
        (2, 6, [0, 1, 0, 1, 0, 1]),  # past 2L: 2 -> 4 = [0, 1, 0, 1], then 4 -> 6 = its first 3 + last 3
    ],
)
def test_dus_plan_general(source, target, expected):
    assert dus_plan(source, target) == expected


def test_dus_plan_keeps_both_ends_for_every_size():
    for target in range(2, 40):
        plan = dus_plan(12, target)
        assert len(plan) == target
        assert plan[0] == 0 and plan[-1] == 11
        assert set(plan) <= set(range(12))
        if target >= 12:
            assert set(plan) == set(range(12)), "growing never drops a layer"
    with pytest.raises(ValueError, match="at least 1"):
        dus_plan(12, 0)


def test_identity_plan_spreads_evenly_or_interleaves():
    new = [i for i, (_, silent) in enumerate(identity_plan(12, 16)) if silent]
    assert [s for s, _ in identity_plan(12, 16)] == [0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11, 11]
    assert new == [3, 7, 11, 15]
    assert identity_plan(12, 16, interleave=3) == identity_plan(12, 16)
    assert identity_plan(4, 6, interleave=2) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True)]
    assert identity_plan(2, 6) == [(0, False), (0, True), (0, True), (1, False), (1, True), (1, True)]
    with pytest.raises(ValueError, match="14 layers in all, not 16"):
        identity_plan(12, 16, interleave=5)
    with pytest.raises(ValueError, match="only adds layers"):
        identity_plan(12, 10)


# --- resize on models ------------------------------------------------------------------------------------------


def test_dus_resize_places_copies_of_the_planned_layers():
    model = tiny(layers=12, hidden_size=16, num_attention_heads=2, ffn_dim=32)
    before = [layer_state(model, i) for i in range(12)]
    embed = model.model.decoder.embed_tokens.weight
    resize(model, 16)
    assert model.config.num_hidden_layers == 16 and len(model.model.decoder.layers) == 16
    for position, source in enumerate(dus_plan(12, 16)):
        state = layer_state(model, position)
        assert all(torch.equal(state[k], before[source][k]) for k in state), (position, source)
        assert model.model.decoder.layers[position].self_attn.layer_idx == position
    assert model.model.decoder.embed_tokens.weight is embed and model.lm_head.weight is embed


@pytest.mark.parametrize("method", ["dus", "identity"])
def test_copies_share_no_parameter(method):
    model = resize(tiny(layers=4), 6, method=method)
    layers = model.model.decoder.layers
    pointers = [p.data_ptr() for p in layers.parameters()]
    assert len(pointers) == len(set(pointers)) == 16 * 6
    twin, copy = (1, 3) if method == "dus" else (1, 2)  # dus: [0, 1, 2, 1, 2, 3]; identity: 1 then its new copy
    twin_before = layer_state(model, twin)
    copy_before = layer_state(model, copy)
    model.train()
    optimizer = torch.optim.AdamW(layers[copy].parameters(), lr=1e-2)
    ids = tokens()
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    assert all(torch.equal(v, twin_before[k]) for k, v in layer_state(model, twin).items())
    assert any(not torch.equal(v, copy_before[k]) for k, v in layer_state(model, copy).items())


@pytest.mark.parametrize(("method", "target"), [("dus", 7), ("dus", 2), ("identity", 6)])
def test_generate_with_kv_cache_matches_without(method, target):
    model = resize(tiny(layers=4, seed=3), target, method=method)
    assert [layer.self_attn.layer_idx for layer in model.model.decoder.layers] == list(range(target))
    prompt = tokens(seed=1, batch=1, length=5)
    runs = [
        model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=8,
            min_new_tokens=8,
            use_cache=use_cache,
            output_scores=True,
            return_dict_in_generate=True,
        )
        for use_cache in (True, False)
    ]
    cached, uncached = runs
    assert cached.sequences.shape == (1, 13)
    assert torch.equal(cached.sequences, uncached.sequences)
    for with_cache, without in zip(cached.scores, uncached.scores, strict=True):
        torch.testing.assert_close(with_cache, without, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("target", "interleave"), [(6, None), (6, 2), (8, 1), (11, None)])
def test_identity_growth_preserves_logits_of_a_trained_model(target, interleave):
    model = trained(layers=4, seed=5)
    for layer in model.model.decoder.layers:
        for linear in residual_writers(layer):
            assert linear.bias.abs().min() > 0, "precondition: training left no zero bias to hide a missed zeroing"
    ids = tokens(seed=2)
    expected = logits(model, ids)
    resize(model, target, method="identity", interleave=interleave)
    assert len(model.model.decoder.layers) == model.config.num_hidden_layers == target
    assert (logits(model, ids) - expected).abs().max().item() <= 1e-5
    plan = identity_plan(4, target, interleave)
    for layer, (_, silent) in zip(model.model.decoder.layers, plan, strict=True):
        for linear in residual_writers(layer):
            assert (linear.weight.abs().sum() == 0) == silent
            assert (linear.bias.abs().sum() == 0) == silent


def test_dus_growth_changes_the_function():
    """Contrast with identity growth: the duplicated block really does run twice."""
    model = tiny(layers=4, seed=5)
    ids = tokens(seed=2)
    expected = logits(model, ids)
    assert (logits(resize(model, 6), ids) - expected).abs().max().item() > 1e-3


def test_resize_rejects_bad_requests():
    with pytest.raises(ValueError, match="only adds layers"):
        resize(tiny(), 3, method="identity")
    with pytest.raises(ValueError, match="only applies to method 'identity'"):
        resize(tiny(), 6, interleave=2)
    with pytest.raises(ValueError, match="unknown method"):
        resize(tiny(), 6, method="stack")
    with pytest.raises(ValueError, match="pre-LayerNorm"):
        resize(tiny(do_layer_norm_before=False), 6, method="identity")
    with pytest.raises(TypeError, match="OPTForCausalLM"):
        resize(tiny().model, 6)


# --- init, save and load ---------------------------------------------------------------------------------------


def test_init_random_is_seeded_typed_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = tiny(seed=1), tiny(seed=1), tiny(seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.model.decoder.layers[0].fc1.weight, b.model.decoder.layers[0].fc1.weight)
    assert not torch.equal(a.model.decoder.layers[0].fc1.weight, c.model.decoder.layers[0].fc1.weight)
    assert not a.training
    half = tiny(dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert (a.config.hidden_size, a.config.word_embed_proj_dim, a.config.vocab_size) == (32, 32, 128)


def test_opt125m_parameter_counts():
    """The full preset: 125.2M as published, 10 layers ~111M, 16 layers ~153.6M (built on meta, no memory)."""
    per_layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 2 * 2 * 768
    with torch.device("meta"):
        base = init_random()
        shrunk = resize(init_random(), 10)
        grown = resize(init_random(), 16, method="identity")
    shape = (
        "num_hidden_layers",
        "hidden_size",
        "ffn_dim",
        "num_attention_heads",
        "vocab_size",
        "max_position_embeddings",
    )
    assert [getattr(base.config, field) for field in shape] == [12, 768, 3072, 12, 50272, 2048]
    assert base.num_parameters() == 125_239_296
    assert shrunk.num_parameters() == 125_239_296 - 2 * per_layer == 111_063_552
    assert grown.num_parameters() == 125_239_296 + 4 * per_layer == 153_590_784
    table = format_table([row("before", base), row("after", grown)])
    assert table_rows(table) == {"before": (12, 125_239_296), "after": (16, 153_590_784)}
    assert "125.2M" in table and "153.6M" in table


def test_save_load_round_trip_keeps_weights_tie_and_tokenizer(tmp_path):
    source = tmp_path / "source"
    save(tiny(layers=4), source)
    save_tokenizer(source)
    model = resize(load_pretrained(source), 6)
    save(model, tmp_path / "grown", tokenizer_source=source)
    assert (tmp_path / "grown" / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "grown")
    assert loaded.config.num_hidden_layers == 6
    assert [layer.self_attn.layer_idx for layer in loaded.model.decoder.layers] == list(range(6))
    assert loaded.lm_head.weight.data_ptr() == loaded.model.decoder.embed_tokens.weight.data_ptr()
    ids = tokens()
    assert torch.equal(logits(loaded, ids), logits(model, ids))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "grown")
    assert tokenizer("the cat sat").input_ids == AutoTokenizer.from_pretrained(source)("the cat sat").input_ids


def test_save_without_tokenizer_source_writes_no_tokenizer(tmp_path):
    save(tiny(), tmp_path / "a")
    save(load_pretrained(tmp_path / "a"), tmp_path / "b", tokenizer_source=tmp_path / "a")
    assert not (tmp_path / "b" / "tokenizer_config.json").exists()


# --- CLI -------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # subprocesses, each importing transformers
def test_cli_init_then_resize_end_to_end(tmp_path):
    small = tmp_path / "m"
    made = run_cli("init", "--preset", "opt-125m", "--layers", "4", *TINY_FLAGS, "--seed", "7", "--output", str(small))
    assert made.returncode == 0, made.stderr
    model = AutoModelForCausalLM.from_pretrained(small)
    assert table_rows(made.stdout) == {str(small): (4, model.num_parameters())}
    assert torch.equal(model.model.decoder.layers[0].fc1.weight, tiny(seed=7).model.decoder.layers[0].fc1.weight)

    grown = run_cli("resize", "--model", str(small), "--layers", "6", "--output", str(tmp_path / "g"))
    assert grown.returncode == 0, grown.stderr
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "g")
    assert after.config.num_hidden_layers == 6
    assert table_rows(grown.stdout) == {
        "before": (4, model.num_parameters()),
        "after (dus)": (6, after.num_parameters()),
    }
    assert after.num_parameters() > model.num_parameters()
    source_layers = [model.model.decoder.layers[i] for i in dus_plan(4, 6)]
    for got, want in zip(after.model.decoder.layers, source_layers, strict=True):
        assert torch.equal(got.fc2.weight, want.fc2.weight)


def test_cli_identity_resize_of_a_trained_model_in_process(tmp_path, capsys):
    save(trained(layers=4), tmp_path / "m")
    grow = "--layers 6 --method identity --interleave 2".split()
    main(["resize", "--model", str(tmp_path / "m"), *grow, "--output", str(tmp_path / "g")])
    rows = table_rows(capsys.readouterr().out)
    assert [layers for layers, _ in rows.values()] == [4, 6]
    ids = tokens()
    original, grown = load_pretrained(tmp_path / "m"), load_pretrained(tmp_path / "g")
    assert (logits(grown, ids) - logits(original, ids)).abs().max().item() <= 1e-5


def test_cli_init_from_local_directory_copies_model_and_tokenizer(tmp_path, capsys):
    source = tmp_path / "pretrained"
    save(tiny(layers=3, seed=4), source)
    save_tokenizer(source)
    main(["init", "--from", str(source), "--dtype", "bfloat16", "--output", str(tmp_path / "out")])
    assert table_rows(capsys.readouterr().out)[str(tmp_path / "out")][0] == 3
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert loaded.dtype == torch.bfloat16
    expected = tiny(layers=3, seed=4).model.decoder.layers[2].fc1.weight.to(torch.bfloat16)
    assert torch.equal(loaded.model.decoder.layers[2].fc1.weight, expected)
    assert AutoTokenizer.from_pretrained(tmp_path / "out")("cat dog").input_ids == [5, 6]


@pytest.mark.slow  # subprocesses, each importing transformers
def test_cli_hub_id_offline_fails_with_one_line(tmp_path):
    failed = run_cli(
        "init", "--from", "facebook/opt-125m", "--output", str(tmp_path / "x"), env={"HF_HOME": str(tmp_path / "hf")}
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot load model 'facebook/opt-125m'"), failed.stderr
    assert not (tmp_path / "x").exists()


def test_cli_bad_arguments_fail_clearly(tmp_path, capsys):
    model, out = str(tmp_path / "m"), str(tmp_path / "x")
    save(tiny(layers=4), model)
    with pytest.raises(SystemExit) as failed:
        main(["resize", "--model", model, "--layers", "3", "--method", "identity", "--output", out])
    message = "error: identity growth only adds layers (4 -> 3 is not growth); use method 'dus' to shrink"
    assert str(failed.value) == message
    assert not Path(out).exists()

    with pytest.raises(SystemExit) as failed:
        main(["resize", "--model", model, *"--layers 7 --method identity --interleave 2".split(), "--output", out])
    assert "6 layers in all, not 7" in str(failed.value)

    with pytest.raises(SystemExit) as failed:
        main(["init", "--hidden", "30", "--heads", "4", "--layers", "1", "--output", out])
    assert str(failed.value).startswith("error: embed_dim must be divisible by num_heads")

    for argv, message in [
        (["init", "--from", model, "--layers", "2", "--output", out], "--layers only"),
        (["resize", "--model", model, "--layers", "0", "--output", out], "positive"),
        (["resize", "--model", model, "--layers", "6", "--output", model], "must differ"),
    ]:
        with pytest.raises(SystemExit) as failed:
            main(argv)
        assert failed.value.code == 2
        assert message in capsys.readouterr().err


def test_cli_help_states_the_rules(capsys):
    with pytest.raises(SystemExit):
        main(["resize", "--help"])
    text = capsys.readouterr().out
    assert "layers[:-4] + layers[4:]" in text and "layers[:5] + layers[-5:]" in text
    assert "ceil(N/2)" in text and "out_proj" in text and "--interleave K" in text


def test_config_on_disk_matches_the_new_depth(tmp_path):
    save(resize(tiny(layers=4), 2), tmp_path / "s")
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert config["tie_word_embeddings"] is True


# --- bounds and refusals ---------------------------------------------------------------------------------------


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one stderr line of a CLI call that must be refused with exit code 2."""
    capsys.readouterr()  # what earlier saves printed (progress bars)
    with pytest.raises(SystemExit) as failed:
        main(argv)
    assert failed.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize(
    ("flag", "field", "bound"),
    [
        ("--layers", "num_hidden_layers", 128),
        ("--hidden", "hidden_size", 8192),
        ("--ffn", "ffn_dim", 32768),
        ("--heads", "num_attention_heads", 128),
        ("--vocab", "vocab_size", 262144),
        ("--positions", "max_position_embeddings", 32768),
    ],
)
def test_init_sizes_over_the_bounds_are_refused(tmp_path, capsys, flag, field, bound):
    assert LIMITS[field] == bound
    out = tmp_path / "m"
    flags = dict(zip(TINY_FLAGS[::2], TINY_FLAGS[1::2], strict=True)) | {"--layers": "2", flag: str(bound + 1)}
    message = refused(["init", *(x for kv in flags.items() for x in kv), "--output", str(out)], capsys)
    assert (
        message
        == f"error: {field} must be an integer from 1 to {bound} (the bound for small language models), got {bound + 1}"
    )
    assert not out.exists()


def test_resize_bound_and_bounds_in_the_api(tmp_path, capsys):
    save(tiny(layers=2), tmp_path / "m")
    argv = ["resize", "--model", str(tmp_path / "m"), "--layers", "129", "--output", str(tmp_path / "g")]
    assert "num_hidden_layers must be an integer from 1 to 128" in refused(argv, capsys)
    assert not (tmp_path / "g").exists()
    with pytest.raises(Refused, match="num_hidden_layers must be an integer from 1 to 128"):
        resize(tiny(layers=2), 129)
    with pytest.raises(Refused, match="vocab_size must be an integer from 1 to 262144"):
        init_random(vocab_size=10**7)
    with torch.device("meta"):  # the bound itself is allowed
        assert resize(init_random(num_hidden_layers=2, **TINY), 128).config.num_hidden_layers == 128


def test_overrides_must_be_opt_config_fields():
    for key in ("trust_remote_code", "revision", "token", "dtype", "attn_implementation"):
        with pytest.raises(Refused, match=f"model override\\(s\\) {key} not allowed: only OPTConfig fields"):
            check_overrides({key: True})
    with pytest.raises(Refused, match="num_attention_heads must be an integer from 1 to 128.*got 'many'"):
        check_overrides({"num_attention_heads": "many"})
    check_overrides({"hidden_size": 64, "activation_function": "gelu", "dropout": 0.0, "pad_token_id": 1})
    with pytest.raises(Refused, match="trust_remote_code"):
        init_random(trust_remote_code=True, **TINY)


def test_init_from_itself_is_refused_in_any_spelling(tmp_path, capsys, monkeypatch):
    source = tmp_path / "m"
    save(tiny(layers=2), source)
    weights = (source / "model.safetensors").read_bytes()
    (tmp_path / "link").symlink_to(source)
    monkeypatch.chdir(tmp_path)
    for output in (str(source), "m", "./m/", str(tmp_path / "other" / ".." / "m"), "link"):
        message = refused(["init", "--from", str(source), "--output", output], capsys)
        assert message == "error: --output must differ from --from: the source weights are still being read from it"
        message = refused(["resize", "--model", "m", "--layers", "3", "--output", output], capsys)
        assert "--output must differ from --model" in message
    assert (source / "model.safetensors").read_bytes() == weights
    assert "holds the working directory" in refused(["init", *TINY_FLAGS, "--layers", "2", "--output", "."], capsys)


def test_output_is_new_empty_or_an_earlier_save_replaced_whole(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    init = ["init", *TINY_FLAGS, "--layers", "2", "--output"]
    assert "is not empty and is not an earlier model save" in refused([*init, str(mine)], capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert "exists and is not a directory" in refused([*init, str(tmp_path / "file")], capsys)

    earlier = tmp_path / "earlier"
    save(tiny(layers=3), earlier)
    save_tokenizer(earlier)  # an earlier save with a tokenizer; the new model has none
    main([*init, str(earlier)])
    capsys.readouterr()
    assert not (earlier / "tokenizer_config.json").exists() and not (earlier / "tokenizer.json").exists()
    assert AutoModelForCausalLM.from_pretrained(earlier).config.num_hidden_layers == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier", "file", "mine"], "no staging directory left"
    (tmp_path / "empty").mkdir()
    main([*init, str(tmp_path / "empty")])
    assert is_model_save(tmp_path / "empty")
