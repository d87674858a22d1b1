"""The ``pii`` stage (opt-in): e-mail addresses and IP addresses in kept text and code replaced by fixed placeholders.

Not a removal: the stage rewrites ``text`` (a row stage's batch function may return it) and counts what it replaced
per document in columns of the fused pass's copy (:data:`COUNT_FIELDS`), which its report sums by kind. What is
replaced, and what is deliberately not:

* e-mail: ``local@domain.tld`` (a dotted domain, a letter TLD); obfuscated forms (``user at example dot com``,
  ``user[at]example.com``) are left alone: matching "at" and "dot" as words would rewrite ordinary prose;
* IPv4: four decimal octets of at most 255, no leading zeros, not inside a longer dotted number (``1.2.3.4.5``)
  and not right after a version or section word (:data:`VERSION_BEFORE`: ``version 1.2.3.4``,
  ``__version__ = "2.6.3.1"``, ``#section-7.1.1.1``; ``v1.2.3.4`` is not an address either, being part of a word);
* IPv6: what Python's ``ipaddress`` accepts, with at least three groups of hex digits (an embedded IPv4 counts as
  one), so that ``a::b`` (C++ scopes), ``12:30:45`` (times) and ``::`` are never taken for addresses;
* loopback and unspecified addresses (``127.0.0.1``, ``0.0.0.0``, ``::1``) stay: they name no one and are
  constants in code. Everything else is replaced wherever it stands, in code comments and string literals too.

Documents are searched by a quick Arrow test first (an ``@``, a digit-dot-digit run, two colons): only the few that
may hold an address go through Python's ``re``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from slm_common.options import opt
from spark_jobs.batches import ColumnValues
from spark_jobs.stage import RowStage, StageView

PLACEHOLDERS = {"email": "<EMAIL>", "ipv4": "<IPV4>", "ipv6": "<IPV6>"}
COUNT_FIELDS = tuple(T.StructField(f"_pii_{kind}", T.IntegerType(), True) for kind in PLACEHOLDERS)
"""Replacements of each kind in each document (null where the stage did not look: removed earlier)."""

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w@-])",
    re.ASCII,
)
OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?![\w]|\.[0-9])", re.ASCII)
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?(?![\w:]|\.[0-9A-Fa-f])",
    re.ASCII,
)
VERSION_BEFORE = re.compile(
    r"(?:\b|_)(?:(?:version|ver|release|rev|build|section|sec|chapter|rfc)\w*|v)\.?\s*[-:=#]?\s*[\"']?$|§\s*$",
    re.IGNORECASE | re.ASCII,
)
"""A version or section word right before a dotted number: ``version 1.2.3.4``, ``__version__ = "2.6.3.1"``,
``v. 2.3.4.5``, ``#section-7.1.1.1``, ``§ 4.2.1.1``."""
VERSION_LOOKBACK = 24
"""Characters before an IPv4 candidate searched for a version word."""

MAYBE = r"@|[0-9]\.[0-9]|:[0-9A-Fa-f]*:"
"""A document without a match cannot hold an address of any kind (tested in Arrow, before any Python)."""


def is_version(text: str, start: int) -> bool:
    return VERSION_BEFORE.search(text, max(0, start - VERSION_LOOKBACK), start) is not None


def keep_ipv6(candidate: str) -> bool:
    """Not an address worth replacing: invalid, fewer than three groups, loopback or unspecified."""
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return True
    groups = [g for g in candidate.split(":") if g]
    return len(groups) < 3 or address.is_loopback or address.is_unspecified


def keep_ipv4(candidate: str) -> bool:
    address = ipaddress.IPv4Address(candidate)
    return address.is_loopback or address.is_unspecified


def redact(text: str, kinds: tuple[str, ...]) -> tuple[str, dict[str, int]]:
    """``text`` with the addresses of ``kinds`` replaced (e-mail, then IPv6, then IPv4), and how many of each."""
    counts = dict.fromkeys(kinds, 0)

    def replace(kind: str, keep: Any) -> Any:
        def sub(match: re.Match[str]) -> str:
            if keep(match):
                return match.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return sub

    if "email" in kinds:
        text = EMAIL.sub(replace("email", lambda m: False), text)
    if "ipv6" in kinds:
        text = IPV6.sub(replace("ipv6", lambda m: keep_ipv6(m.group(0))), text)
    if "ipv4" in kinds:
        text = IPV4.sub(replace("ipv4", lambda m: keep_ipv4(m.group(0)) or is_version(m.string, m.start())), text)
    return text, counts


@dataclass
class PiiOptions:
    """What the ``pii`` stage replaces (the placeholders are fixed: :data:`PLACEHOLDERS`)."""

    pii_kinds: str = opt(
        ",".join(PLACEHOLDERS), f"comma list of what the pii stage replaces ({', '.join(PLACEHOLDERS)})"
    )

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in PLACEHOLDERS if kind in {k.strip() for k in self.pii_kinds.split(",")})

    def validate(self) -> None:
        unknown = sorted({k.strip() for k in self.pii_kinds.split(",") if k.strip()} - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"--pii-kinds: unknown kind(s) {','.join(unknown)}; known: {','.join(PLACEHOLDERS)}")


@dataclass(frozen=True)
class Redactor:
    """Batch function: the rewritten ``text`` and the counts per kind of every row (pickled to the workers)."""

    kinds: tuple[str, ...]

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, ColumnValues]:
        texts = batch.column("text")
        maybe = pc.fill_null(pc.match_substring_regex(texts, MAYBE), False).to_numpy(zero_copy_only=False)
        counts = {kind: np.zeros(batch.num_rows, dtype=np.int32) for kind in PLACEHOLDERS}
        rows = np.flatnonzero(maybe)
        if not rows.size or not self.kinds:
            return {field.name: counts[kind] for field, kind in zip(COUNT_FIELDS, PLACEHOLDERS, strict=True)}
        out = texts.to_pylist()
        for row in rows.tolist():
            out[row], found = redact(out[row], self.kinds)
            for kind, count in found.items():
                counts[kind][row] = count
        columns: dict[str, ColumnValues] = {"text": out}
        columns.update({field.name: counts[kind] for field, kind in zip(COUNT_FIELDS, PLACEHOLDERS, strict=True)})
        return columns


class PiiStage(RowStage):
    """Stage ``pii``: replaces e-mail and IP addresses in the kept documents' text (see the module docstring)."""

    name = "pii"
    Options = PiiOptions
    row_fields = COUNT_FIELDS
    rewrites_text = True

    def batch_fn(self, opts: PiiOptions, spark: SparkSession) -> Redactor:
        return Redactor(opts.kinds)

    def summary(self, view: StageView, opts: PiiOptions) -> dict[str, Any]:
        """Replacements by kind, and the documents with any, in the documents the row stages keep."""
        docs: DataFrame = view.docs.where(F.col("reason").isNull())
        names = [field.name for field in COUNT_FIELDS]
        row = docs.agg(
            *(F.sum(name).alias(name) for name in names),
            F.sum(F.when(sum(F.coalesce(F.col(n), F.lit(0)) for n in names) > 0, 1).otherwise(0)).alias("docs"),
        ).first()
        replaced = {kind: int(row[name] or 0) for kind, name in zip(PLACEHOLDERS, names, strict=True)}
        return {"replaced": replaced, "docs_changed": int(row["docs"] or 0), "placeholders": PLACEHOLDERS}
