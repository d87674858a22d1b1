"""The pipeline config: flags over YAML over defaults, one-line errors, each stage's options typed and validated."""

from __future__ import annotations

import dataclasses

import pytest

from slm_common.options import opt
from spark_jobs.config import PipelineConfig, option_fields
from spark_jobs.filters import FilterStage
from spark_jobs.pack.stage import PackOptions


def test_flags_win_over_yaml_and_yaml_over_defaults(tmp_path):
    yml = tmp_path / "run.yaml"
    yml.write_text("seq-len: 64\nlanguages: en,fr\ninput: [a.jsonl]\noutput: out\n")
    cfg = PipelineConfig.from_args(["--config", str(yml), "--seq-len", "128"])
    assert cfg.seq_len == 128 and cfg.languages == "en,fr" and cfg.input == ["a.jsonl"]
    assert cfg.num_perm == 128 and cfg.dedup_threshold == 0.8


def test_unknown_yaml_key_and_bad_values_are_one_line_errors(tmp_path):
    yml = tmp_path / "bad.yaml"
    yml.write_text("sequence_length: 64\n")
    with pytest.raises(SystemExit, match="unknown option.*sequence_length"):
        PipelineConfig.from_args(["--config", str(yml), "--input", "x", "--output", "o"])
    with pytest.raises(SystemExit, match="unknown stage"):
        PipelineConfig.from_args(["--input", "x", "--output", "o", "--stages", "filter,bogus"])
    with pytest.raises(SystemExit, match="--input is required"):
        PipelineConfig.from_args(["--output", "o"])


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        PipelineConfig.from_args(["--help"])
    text = capsys.readouterr().out
    for name in option_fields():
        assert "--" + name.replace("_", "-") in text


def test_each_stage_gets_its_own_typed_options():
    cfg = PipelineConfig(input=["x"], output="o", seq_len=64, seed=3, lang_threshold=0.7)
    assert cfg.options(PackOptions) == PackOptions(seq_len=64, seed=3)
    chosen = dict((stage.name, opts) for stage, opts in cfg.stages_to_run())
    assert chosen["langid"].lang_threshold == 0.7 and chosen["near_dedup"].seed == 3
    with pytest.raises(AttributeError):
        cfg.seq_len = 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stages", "pack,filter"], "must come before the corpus stages"),
        (["--stages", "exact_dedup,langid"], "must come before the corpus stages"),
        (["--stages", "filter,filter"], "twice"),
        (["--dedup-threshold", "1.5"], "--dedup-threshold"),
        (["--dedup-checkpoint", "sometimes"], "--dedup-checkpoint"),
        (["--dedup-local-docs", "-1"], "--dedup-local-docs"),
        (["--seq-len", "0"], "--seq-len"),
        (["--max-top-ngram-char-frac", "1:0.5"], "bad n-gram threshold"),
        (["--languages", ","], "--languages"),
    ],
)
def test_every_stage_validates_its_options_before_any_work(flags, message):
    with pytest.raises(SystemExit, match=message):
        PipelineConfig.from_args(["--input", "x", "--output", "o", *flags])


def test_an_option_name_owned_twice_is_refused(monkeypatch):
    @dataclasses.dataclass
    class Clash:
        seq_len: int = opt(1, "a second --seq-len")

    monkeypatch.setattr(FilterStage, "Options", Clash)
    with pytest.raises(TypeError, match="seq_len"):
        option_fields()
