"""Every stage the pipeline knows, by name: adding a stage is a file of its own and one line here.

Entries are ``"module:Class"`` strings, imported when first asked for, so listing the names costs nothing.
"""

from __future__ import annotations

import importlib
from functools import cache

from spark_jobs.stage import Stage

STAGES: dict[str, str] = {
    "filter": "spark_jobs.filters.stage:FilterStage",
    "quality": "spark_jobs.quality.stage:QualityStage",
    "classifier": "spark_jobs.classifier:ClassifierStage",
    "langid": "spark_jobs.langid.stage:LangIdStage",
    "pii": "spark_jobs.pii:PiiStage",
    "exact_dedup": "spark_jobs.dedup.exact:ExactDedupStage",
    "near_dedup": "spark_jobs.dedup.near:NearDedupStage",
    "decontam": "spark_jobs.decontam:DecontamStage",
    "pack": "spark_jobs.pack.stage:PackStage",
}

DEFAULT_STAGES = ("filter", "langid", "exact_dedup", "near_dedup", "pack")


@cache
def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {','.join(STAGES)}")
    module, cls = STAGES[name].split(":")
    found = getattr(importlib.import_module(module), cls)
    if not (isinstance(found, type) and issubclass(found, Stage)) or found.name != name:
        raise TypeError(f"{STAGES[name]} is not a Stage named {name!r}")
    return found


def all_stage_classes() -> list[type[Stage]]:
    """Every registered stage class, in registry order (their options make up the pipeline's flags)."""
    return [stage_class(name) for name in STAGES]
