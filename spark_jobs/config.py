"""The pipeline's configuration: run-wide options here, each stage's own options next to the stage.

Every option is a dataclass field with its help text (:func:`~slm_common.options.opt`): :class:`RunOptions` (where
from, where to, which stages, how Spark runs), :class:`~spark_jobs.ingest.IngestOptions` and the ``Options`` of each
registered stage (:mod:`spark_jobs.registry`). :class:`PipelineConfig` gathers all of them into one flat set of
flags and YAML keys (flags win over YAML, YAML over defaults), validates every selected stage's options before any
Spark work, and hands each stage its own typed options.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, get_type_hints

from slm_common.options import add_flags, field_default, opt, read_yaml_options
from spark_jobs.ingest import IngestOptions
from spark_jobs.registry import DEFAULT_STAGES, all_stage_classes, stage_class
from spark_jobs.session import LOCAL_JAVA_OPTIONS
from spark_jobs.stage import CorpusStage, RowStage, Stage


@dataclass
class RunOptions:
    """Where from, where to, which stages, and how Spark runs (the last four never change what a run produces)."""

    input: list[str] = opt(
        [], "sources: Parquet/JSONL(.gz) files or dirs, code dirs, hf://datasets/OWNER/NAME, any URI"
    )
    output: str = opt("", "output directory (cleaned/, removed/, packed/, report.json)")
    config: str | None = opt(None, "YAML file with any of these options (flags win)")
    stages: str = opt(",".join(DEFAULT_STAGES), "comma list of stages to run, in this order")
    seed: int = opt(0, "every random choice derives from it")
    master: str = opt("local[*]", "Spark master for local runs (ignored under spark-submit)", execution_only=True)
    shuffle_partitions: int = opt(0, "spark.sql.shuffle.partitions; 0 picks 4 x cores", execution_only=True)
    driver_memory: str = opt(
        "auto",
        "driver memory (JVM heap bound) for local runs; auto: 384 MB + 128 MB per core, at least 640 MB. G1 grows "
        "the heap towards it the longer a run allocates, so this, not the input, sets the JVM's memory; stages "
        "stream, so more buys no speed",
        execution_only=True,
    )
    driver_java_options: str = opt(
        LOCAL_JAVA_OPTIONS,
        "JVM options of the driver in local runs; '' for HotSpot's defaults (see LOCAL_JAVA_OPTIONS)",
        execution_only=True,
    )
    class_archive: str = opt(
        "auto",
        "directory for the local driver JVM's class archive, which halves its start-up from the second run on "
        "(about 190 MB; 'auto': the user's cache directory; '' for none)",
        execution_only=True,
    )


def option_groups() -> list[tuple[str, type]]:
    """``(owner, options dataclass)`` for the run, ingestion and every registered stage, in flag order."""
    return [("run", RunOptions), ("ingest", IngestOptions), *((cls.name, cls.Options) for cls in all_stage_classes())]


def option_fields() -> dict[str, dataclasses.Field]:
    """Every option by name. Fields marked ``run_wide`` belong to :class:`RunOptions` (a stage's copy only says
    that it reads it); any other name given twice is a registry error."""
    fields: dict[str, dataclasses.Field] = {}
    owners: dict[str, str] = {}
    for owner, options in option_groups():
        for f in dataclasses.fields(options):
            if f.metadata.get("run_wide"):
                continue
            if f.name in fields:
                raise TypeError(f"option {f.name!r} of {owner} is also an option of {owners[f.name]}")
            fields[f.name], owners[f.name] = f, owner
    return fields


def key_fields(options: type) -> list[str]:
    """The fields of an options dataclass that change what its owner produces (not the ``execution_only`` ones)."""
    return [f.name for f in dataclasses.fields(options) if not f.metadata.get("execution_only")]


class PipelineConfig:
    """All options of ``python -m spark_jobs.pipeline`` as attributes (``cfg.seq_len``); each stage's as its own
    typed object (:meth:`options`). Names are the flags with ``_`` for ``-``."""

    def __init__(self, **values: Any) -> None:
        fields = option_fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        self.__dict__["_values"] = {name: values.get(name, field_default(f)) for name, f in fields.items()}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("PipelineConfig is read-only; build a new one")

    def options(self, options: type) -> Any:
        """The typed options ``options`` (a dataclass such as a stage's ``Options``) filled from this config."""
        return options(**{f.name: self._values[f.name] for f in dataclasses.fields(options)})

    @property
    def stage_list(self) -> list[str]:
        """The stages to run, in order, as named (checked by :meth:`stages_to_run`)."""
        return [s.strip() for s in self.stages.split(",") if s.strip()]

    def stages_to_run(self) -> list[tuple[Stage, Any]]:
        """Each selected stage with its validated options; ``ValueError`` for a name or an order that cannot work:
        row stages first (dedup must see what the filters keep), artifact stages (pack) last."""
        names = self.stage_list
        if len(set(names)) != len(names):
            raise ValueError(f"--stages names a stage twice: {self.stages}")
        stages = [stage_class(name)() for name in names]
        kinds = [
            0 if isinstance(s, RowStage) else 2 if isinstance(s, CorpusStage) and s.artifacts else 1 for s in stages
        ]
        if kinds != sorted(kinds):
            raise ValueError(
                f"--stages {self.stages}: row stages ({', '.join(s.name for s in stages if isinstance(s, RowStage))}) "
                "must come before the corpus stages, and pack last"
            )
        chosen = []
        for stage in stages:
            opts = self.options(stage.Options)
            opts.validate()
            chosen.append((stage, opts))
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def hash(self, *names: str) -> str:
        """A short stable hash of the named options (all when none)."""
        keys = names or tuple(sorted(self._values))
        blob = json.dumps({k: self._values[k] for k in keys}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="python -m spark_jobs.pipeline",
            description="Clean, deduplicate and pack a corpus on Spark.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        for owner, options in option_groups():
            group = p.add_argument_group(f"{owner} options")
            fields = [f for f in dataclasses.fields(options) if not f.metadata.get("run_wide")]
            add_flags(group, fields, get_type_hints(options))
        return p

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> PipelineConfig:
        """Defaults, then the YAML of ``--config``, then the flags given; validates the result."""
        given = vars(cls.parser().parse_args(argv))
        values: dict[str, Any] = {}
        if given.get("config"):
            values.update(read_yaml_options(given["config"], option_fields()))
        values.update(given)
        if isinstance(values.get("input"), str):
            values["input"] = [values["input"]]
        try:
            cfg = cls(**values)
        except TypeError as err:
            raise SystemExit(f"error: {err}") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One-line errors for options that cannot work, before any Spark work starts."""
        if not self.input:
            raise SystemExit("error: --input is required (files, directories or hf://datasets/OWNER/NAME)")
        if not self.output:
            raise SystemExit("error: --output is required")
        try:
            self.options(IngestOptions).validate()
            self.stages_to_run()
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
