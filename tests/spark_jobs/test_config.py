"""The pipeline config: flags over YAML over defaults, one-line errors, every option classified for invalidation."""

from __future__ import annotations

import dataclasses

import pytest

from spark_jobs.config import EXECUTION_ONLY, STAGE_OPTIONS, PipelineConfig
from spark_jobs.pipeline import stage_key


def test_flags_win_over_yaml_and_yaml_over_defaults(tmp_path):
    yml = tmp_path / "run.yaml"
    yml.write_text("seq-len: 64\nlanguages: en,fr\ninput: [a.jsonl]\noutput: out\n")
    cfg = PipelineConfig.from_args(["--config", str(yml), "--seq-len", "128"])
    assert cfg.seq_len == 128 and cfg.languages == "en,fr" and cfg.input == ["a.jsonl"]
    assert cfg.num_perm == 128 and cfg.dedup_threshold == 0.8  # defaults of SPEC.md


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
    for f in dataclasses.fields(PipelineConfig):
        assert "--" + f.name.replace("_", "-") in text


def test_every_option_is_classified_for_stage_invalidation():
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    classified = set(EXECUTION_ONLY) | {n for fields in STAGE_OPTIONS.values() for n in fields}
    assert names == classified


def test_stage_key_changes_only_downstream_of_a_changed_option():
    base = PipelineConfig(input=["x"], output="o")
    changed = dataclasses.replace(base, lang_threshold=0.9)
    assert stage_key(base, ["ingest", "filter"]) == stage_key(changed, ["ingest", "filter"])
    assert stage_key(base, ["ingest", "filter", "langid"]) != stage_key(changed, ["ingest", "filter", "langid"])
    faster = dataclasses.replace(base, master="local[8]", shuffle_partitions=64)
    assert stage_key(base, ["ingest", "filter", "langid"]) == stage_key(faster, ["ingest", "filter", "langid"])
