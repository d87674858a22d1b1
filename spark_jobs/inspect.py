"""What a pipeline run removed and why, to tune thresholds by looking at examples.

``python -m spark_jobs.inspect OUT [--stage S] [--reason R] [--rule NAME] [-n N]`` prints a table per stage of its
removals by reason and rule (from ``OUT/report.json``), then ``N`` excerpts of the chosen removals with their rule,
which carries the measured value and the threshold (``gopher_stop_words: 1 < 2``). The excerpts are read from
``OUT/removed/`` with pyarrow, batch by batch, the rows filtered on ``reason`` and ``rule`` while they are read, so the
text column is never in memory whole; it stops at the ``N``-th match.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

from spark_jobs import storage

RULE_NAME = re.compile(r"^[A-Za-z0-9_.\-]*")
"""A rule's name, its leading identifier: what ``report.json`` counts removals by."""

READ_ROWS = 1024
"""Rows read at a time from ``removed/``."""


def rule_name(rule: str | None) -> str:
    return RULE_NAME.match(rule or "").group(0)


def removal_rows(report: dict[str, Any], stage: str | None, reason: str | None, rule: str | None) -> list[list[Any]]:
    """(stage, reason, rule, documents, share of the stage's input, documents in and out) per counted rule, stages
    in run order, the most frequent rules first."""
    rows = []
    for name, stats in report["stages"].items():
        if "removed_by_rule" not in stats or stage not in (None, name):
            continue
        for key, docs in sorted(stats["removed_by_rule"].items(), key=lambda item: (-item[1], item[0])):
            why, _, what = key.partition(":")
            if reason in (None, why) and rule in (None, what):
                share = docs / stats["docs_in"] if stats["docs_in"] else 0.0
                rows.append([name, why, what or "-", docs, f"{share:.1%}", stats["docs_in"], stats["docs_out"]])
    return rows


def table(header: list[str], rows: list[list[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [header, *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(re.fullmatch(r"[\d.%]+", row[i]) for row in cells[1:]) for i in range(len(header))]
    lines = []
    for row in cells:
        padded = [cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(row, widths, numeric, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def samples(removed: str, reasons: set[str] | None, rule: str | None, count: int) -> Iterator[dict[str, Any]]:
    """The first ``count`` rows of ``removed/`` with a reason in ``reasons`` (any when None) and rule name ``rule``
    (any when None), read ``READ_ROWS`` rows at a time; the filter runs inside the scan."""
    if count <= 0 or reasons == set():
        return
    fs, path = storage.resolve(removed)
    dataset = ds.dataset(path, filesystem=fs, format="parquet")
    wanted = ds.field("reason").is_valid()
    if reasons is not None:
        wanted &= ds.field("reason").isin(sorted(reasons))
    if rule is not None:
        wanted &= pc.starts_with(ds.field("rule"), rule)
    columns = ["doc_id", "reason", "rule", "text"]
    for batch in dataset.to_batches(columns=columns, filter=wanted, batch_size=READ_ROWS):
        for row in batch.to_pylist():
            if rule is None or rule_name(row["rule"]) == rule:
                yield row
                count -= 1
                if count == 0:
                    return


def excerpt(text: str | None, chars: int) -> str:
    """The text's first ``chars`` characters on one line (``⏎`` for line breaks)."""
    text = text or ""
    cut = text[:chars].replace("\r\n", "\n").replace("\n", " ⏎ ")
    return cut + (" …" if len(text) > chars else "")


def inspect(out: str, stage: str | None, reason: str | None, rule: str | None, n: int, chars: int) -> str:
    """The removals table and ``n`` excerpts of the chosen removals, as printed."""
    report_path = storage.join(out, "report.json")
    if not storage.exists(report_path):
        raise FileNotFoundError(f"{report_path} not found: not a finished pipeline output")
    report = json.loads(storage.read_text(report_path))
    if stage is not None and stage not in report["stages"]:
        raise ValueError(f"--stage {stage}: not a stage of this run ({', '.join(report['stages'])})")
    header = ["stage", "reason", "rule", "docs", "share", "docs_in", "docs_out"]
    rows = removal_rows(report, stage, reason, rule)
    parts = [table(header, rows) if rows else "no removals match"]
    reasons = None if stage is None else set(report["stages"][stage].get("removed_by_reason", {}))
    if reason is not None:
        reasons = {reason} & reasons if reasons is not None else {reason}
    shown = 0
    for row in samples(storage.join(out, "removed"), reasons, rule, n):
        shown += 1
        parts.append(f"\n[{row['reason']}] {row['rule']}  doc_id={row['doc_id']}\n  {excerpt(row['text'], chars)}")
    if n and not shown:
        parts.append("\nno removed documents match")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spark_jobs.inspect", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="a pipeline output directory (report.json, removed/)")
    p.add_argument("--stage", help="only this stage's removals (e.g. quality)")
    p.add_argument("--reason", help="only removals with this reason (e.g. repetition)")
    p.add_argument("--rule", help="only removals by this rule name (e.g. gopher_stop_words)")
    p.add_argument("-n", type=int, default=5, help="excerpts to show (default 5; 0 for the table only)")
    p.add_argument("--chars", type=int, default=300, help="characters per excerpt (default 300)")
    args = p.parse_args(argv)
    try:
        print(inspect(args.out, args.stage, args.reason, args.rule, args.n, args.chars))
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
