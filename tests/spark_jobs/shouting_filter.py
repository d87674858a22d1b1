"""A throwaway row stage for the contract tests: one file, registered with one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import SparkSession

from slm_common.options import opt
from spark_jobs.batches import most_frequent
from spark_jobs.stage import RowStage, StageView


@dataclass
class ShoutingOptions:
    max_upper_frac: float = opt(0.5, "text with a larger share of upper-case letters is shouting")

    def validate(self) -> None:
        if not 0 < self.max_upper_frac <= 1:
            raise ValueError("--max-upper-frac must be in (0, 1]")


@dataclass(frozen=True)
class Shouting:
    max_upper_frac: float

    def __call__(self, batch: pa.RecordBatch) -> dict[str, Any]:
        texts = pc.fill_null(batch.column("text"), "")
        upper = pc.utf8_length(pc.replace_substring_regex(texts, r"[^A-Z]", "")).to_pylist()
        letters = pc.utf8_length(pc.replace_substring_regex(texts, r"[^A-Za-z]", "")).to_pylist()
        shares = [u / n if n else 0.0 for u, n in zip(upper, letters, strict=True)]
        return {
            "reason": ["shouting" if s > self.max_upper_frac else None for s in shares],
            "rule": [f"upper_frac: {s:.2f} > {self.max_upper_frac}" if s > self.max_upper_frac else None for s in shares],
        }


class ShoutingStage(RowStage):
    name = "shouting"
    reasons = ("shouting",)
    Options = ShoutingOptions

    def batch_fn(self, opts: ShoutingOptions, spark: SparkSession) -> Shouting:
        return Shouting(opts.max_upper_frac)

    def summary(self, view: StageView, opts: ShoutingOptions) -> dict[str, Any]:
        return {"kinds_removed": most_frequent([r for r in view.counts if r["reason"]], "kind")}
