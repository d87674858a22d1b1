"""``python -m train.ablate``: what each pipeline stage does to a model, measured the way FineWeb chose its filters.

For every variant (a ``+``-joined stage list; ``none`` is ingestion only) the pipeline runs with those stages and
``pack``, and a fresh model trains on the result from the same seed for the same number of tokens; every model is
evaluated on one common held-out set. The variant whose model reaches the lower loss on that set made the better
data for it.

The common evaluation set is the fullest variant's (most stages) ``packed/val``. Pack sends a document to val by a
seeded hash of its ``doc_id`` alone, and every variant is packed with the same ``--seed`` and ``--val-fraction``, so
a document drawn for val is in val in every variant it survives in and in no variant's train split. The set is
therefore: the documents set aside by id hash, minus whatever any stage of the fullest variant removes, packed once
with the tokenizer and sequence length that every variant shares. One leak is inherent to hashing ids rather than
text: a duplicate of a val document with another id can be in the train split of a variant that does not dedup, as
it would be in a corpus that was not deduplicated.

Pipelines run as subprocesses through the pipeline's command line (training never imports the Spark side). A
variant whose stage list extends an earlier one's starts from a hard-linked copy of that variant's output, so the
pipeline's stage cache reuses every stage whose key still matches. Ingestion and the row stages (filter, langid,
quality...) are one fused pass whose key covers all of them, so only a variant that adds corpus stages (dedup) after
the same row stages reuses work; ``report.json``'s ``reused`` says what was.

Training runs in this process by default (one import of torch for all models); ``--launcher 'accelerate launch
--num_processes 2 ...'`` starts each run as ``LAUNCHER -m train ...`` instead. Outputs under ``--output``:
``data/VARIANT/`` (pipeline outputs), ``runs/VARIANT/seed-S/`` (training runs), ``ablation.json``, ``ablation.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, get_type_hints

from slm_common.options import add_flags, opt

NONE = "none"
OWNED_PIPELINE_FLAGS = ("--input", "--output", "--stages", "--seq-len", "--val-fraction")
"""Pipeline flags the ablation sets itself; every other unknown flag is passed to every pipeline run."""


@dataclass
class AblationConfig:
    """What to compare and how each model trains; pipeline options not listed here go to every pipeline run."""

    input: list[str] = opt([], "pipeline sources (as for python -m spark_jobs.pipeline)")
    output: str = opt("", "directory for data/, runs/, ablation.json and ablation.png")
    variants: str = opt(
        "none,filter,filter+langid,filter+langid+exact_dedup+near_dedup",
        "comma list of variants, each a +-joined stage list; 'none' is ingestion only",
    )
    train_tokens: int = opt(50_000_000, "tokens each model trains on (the same budget for every variant)")
    seq_len: int = opt(1024, "tokens per packed sequence (pipeline and training)")
    val_fraction: float = opt(0.01, "share of documents (by id hash) held out; the fullest variant's are the eval set")
    model: str = opt("preset:opt-125m", "model to train from scratch (python -m train --model)")
    model_overrides: str = opt("", "model config overrides, e.g. num_hidden_layers=2,hidden_size=64")
    seeds: int = opt(1, "models per variant, trained with seeds 0..N-1 (the same seeds for every variant)")
    batch_size: int = opt(8, "sequences per device per micro-batch")
    grad_accum: int = opt(1, "micro-batches per optimizer step")
    lr: float = opt(6e-4, "peak learning rate")
    warmup_steps: int = opt(-1, "linear warmup steps; -1: 10%% of the steps")
    eval_every: int = opt(0, "steps between evaluations on the common set; 0: ten evaluations per run")
    launcher: str = opt("", "command that runs `-m train`, e.g. 'accelerate launch --num_processes 2'; '': in-process")
    train_options: str = opt("", "further python -m train flags for every run, e.g. --train-options='--compile'")

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ValueError("--input and --output are required")
        for name in ("train_tokens", "seq_len", "seeds", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0 < self.val_fraction < 1:
            raise ValueError("--val-fraction must be in (0, 1): the evaluation set is the fullest variant's val split")
        names = self.variant_names
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"--variants must name distinct variants: {self.variants}")

    @property
    def variant_names(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    @property
    def world_size(self) -> int:
        """Training processes per run: the launcher's ``--num_processes`` (1 in-process)."""
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        parser.add_argument("--num_processes", "--num-processes", type=int, default=1)
        return parser.parse_known_args(shlex.split(self.launcher))[0].num_processes

    @property
    def max_steps(self) -> int:
        """Optimizer steps that consume ``train_tokens``: every variant sees the same number of tokens."""
        return math.ceil(self.train_tokens / (self.batch_size * self.grad_accum * self.world_size * self.seq_len))


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 2, like the pipeline's own errors."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def stages_of(variant: str) -> list[str]:
    return [] if variant == NONE else [s.strip() for s in variant.split("+") if s.strip()]


def run_order(variants: list[str]) -> list[str]:
    """Fewest stages first, so a variant's prefix variants have run before it (ties keep the given order)."""
    return sorted(variants, key=lambda v: len(stages_of(v)))


def fullest(variants: list[str]) -> str:
    """The variant with the most stages (the first one given of those): its val split is the common eval set."""
    return max(variants, key=lambda v: len(stages_of(v)))


def base_of(variant: str, done: list[str]) -> str | None:
    """The finished variant with the longest stage list that ``variant``'s list starts with."""
    stages = stages_of(variant)
    bases = [d for d in done if stages[: len(stages_of(d))] == stages_of(d)]
    return max(bases, key=lambda d: len(stages_of(d)), default=None)


def link_copy(src: Path, dst: Path) -> None:
    """A copy of ``src`` whose files are hard links (markers included), so no data is duplicated.

    Safe for the source because the pipeline never rewrites a file in place: Spark replaces whole directories,
    pack deletes its old shards, and markers and reports are written to a temporary name and renamed.
    """
    shutil.copytree(src, dst, copy_function=os.link)


def run_pipeline(cfg: AblationConfig, variant: str, out: Path, passthrough: list[str]) -> dict[str, Any]:
    """Run the pipeline for one variant as a subprocess; its report."""
    cmd = [
        sys.executable, "-m", "spark_jobs.pipeline", "--input", *cfg.input, "--output", str(out),
        "--stages", ",".join([*stages_of(variant), "pack"]), "--seq-len", str(cfg.seq_len),
        "--val-fraction", str(cfg.val_fraction), *passthrough,
    ]  # fmt: skip
    print(f"[ablate] {variant}: {shlex.join(cmd)}", flush=True)
    done = subprocess.run(cmd)
    if done.returncode:
        fail(f"the pipeline of variant {variant!r} failed (exit {done.returncode})")
    return json.loads((out / "report.json").read_text())


def train_args(
    cfg: AblationConfig, data: Path, eval_data: Path, run: Path, seed: int, eval_sequences: int
) -> list[str]:
    """``python -m train`` flags of one run: the whole common set is evaluated (every full global batch of it)."""
    steps = cfg.max_steps
    warmup = cfg.warmup_steps if cfg.warmup_steps >= 0 else steps // 10
    args = [
        "--data", str(data), "--eval-data", str(eval_data), "--model", cfg.model, "--output", str(run),
        "--max-steps", str(steps), "--batch-size", str(cfg.batch_size), "--grad-accum", str(cfg.grad_accum),
        "--lr", str(cfg.lr), "--warmup-steps", str(warmup), "--eval-every", str(cfg.eval_every or max(1, steps // 10)),
        "--eval-batches", str(max(1, eval_sequences)), "--log-every", str(max(1, steps // 10)),
        "--save-every", "0", "--seed", str(seed), "--num-workers", "0",
    ]  # fmt: skip
    if cfg.model_overrides:
        args += ["--model-overrides", cfg.model_overrides]
    return args + shlex.split(cfg.train_options)


def run_training(cfg: AblationConfig, args: list[str]) -> None:
    if cfg.launcher:
        cmd = [*shlex.split(cfg.launcher), "-m", "train", *args]
        print(f"[ablate] {shlex.join(cmd)}", flush=True)
        code = subprocess.run(cmd).returncode
    else:
        from train.__main__ import main

        print(f"[ablate] python -m train {shlex.join(args)}", flush=True)
        code = main(args)
    if code:
        fail(f"training failed (exit {code}): train {shlex.join(args)}")


def eval_curve(run: Path) -> list[list[float]]:
    """``[[tokens_seen, eval_loss], ...]`` of a finished run."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    return [[r["tokens_seen"], r["eval_loss"]] for r in records if "eval_loss" in r]


def summarize(report: dict[str, Any], manifest: dict[str, Any], curves: dict[int, list[list[float]]]) -> dict:
    """One variant's entry of ablation.json: its data, the mean final loss over seeds, the spread, the curves."""
    finals = [curve[-1][1] for curve in curves.values()]
    mean_curve = [
        [points[0][0], statistics.fmean(p[1] for p in points)] for points in zip(*curves.values(), strict=True)
    ]
    loss = statistics.fmean(finals)
    tokens = manifest["totals"]["train"]["tokens"]
    return {
        "stages": report["config"]["stages"],
        "docs": report["accounting"]["cleaned"],
        "tokens": tokens,
        "eval_loss": loss,
        "eval_ppl": math.exp(min(loss, 700.0)),
        "loss_min": min(finals),
        "loss_max": max(finals),
        "loss_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
        "curve": mean_curve,
        "seeds": [{"seed": seed, "eval_loss": curve[-1][1], "curve": curve} for seed, curve in curves.items()],
        "reused": {name: stage.get("reused", False) for name, stage in report["stages"].items()},
    }


def overlapping(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of variants whose seeds' final losses overlap (min-max): their difference is within the noise across seeds."""
    names = list(results)
    return [
        (a, b)
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if results[a]["loss_min"] <= results[b]["loss_max"] and results[b]["loss_min"] <= results[a]["loss_max"]
    ]


def table(results: dict[str, dict[str, Any]], train_tokens: int, seeds: int) -> str:
    """The printed comparison, best variant first."""
    rows = sorted(results.items(), key=lambda item: item[1]["eval_loss"])
    head = f"{'variant':<44} {'docs':>9} {'train tokens':>13} {'epochs':>7} {'eval loss':>10} {'ppl':>9}"
    lines = [head + ("  seed min-max (std)" if seeds > 1 else ""), "-" * len(head)]
    for name, r in rows:
        epochs = train_tokens / r["tokens"] if r["tokens"] else math.inf
        line = f"{name:<44} {r['docs']:>9,} {r['tokens']:>13,} {epochs:>7.2f} {r['eval_loss']:>10.4f} {r['eval_ppl']:>9.2f}"
        if seeds > 1:
            line += f"  {r['loss_min']:.4f}-{r['loss_max']:.4f} ({r['loss_std']:.4f})"
        lines.append(line)
    if seeds > 1:
        pairs = overlapping(results)
        lines += [f"within the spread across seeds: {a} and {b}" for a, b in pairs] or ["no two variants overlap across seeds"]
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], eval_variant: str, path: Path) -> None:
    """Eval loss against tokens seen, one line per variant (the mean over seeds), the seeds' min-max as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        x = [p[0] for p in r["curve"]]
        (line,) = ax.plot(x, [p[1] for p in r["curve"]], "o-", markersize=3, label=name)
        if len(r["seeds"]) > 1:
            per_point = list(zip(*(s["curve"] for s in r["seeds"]), strict=True))
            low = [min(p[1] for p in points) for points in per_point]
            high = [max(p[1] for p in points) for points in per_point]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("eval loss")
    ax.set_title(f"held-out documents of {eval_variant}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def run(cfg: AblationConfig, passthrough: list[str]) -> dict[str, Any]:
    out = Path(cfg.output)
    names = cfg.variant_names
    eval_variant = fullest(names)
    reports, done = {}, []
    for variant in run_order(names):
        data = out / "data" / variant
        base = base_of(variant, done)
        if base is not None and not data.exists():
            link_copy(out / "data" / base, data)
            print(f"[ablate] {variant}: starting from a hard-linked copy of {base}'s outputs", flush=True)
        reports[variant] = run_pipeline(cfg, variant, data, passthrough)
        done.append(variant)

    eval_data = out / "data" / eval_variant / "packed"
    eval_manifest = json.loads((eval_data / "manifest.json").read_text())
    eval_sequences = eval_manifest["totals"]["val"]["sequences"]
    if eval_sequences < cfg.batch_size * cfg.world_size:
        fail(
            f"the evaluation set ({eval_variant}'s packed/val) holds {eval_sequences} sequences, fewer than one "
            f"batch ({cfg.batch_size * cfg.world_size}): raise --val-fraction or use a larger corpus"
        )
    results = {}
    for variant in names:
        data = out / "data" / variant / "packed"
        manifest = json.loads((data / "manifest.json").read_text())
        if not manifest["totals"]["train"]["sequences"]:
            fail(f"variant {variant!r} left no training sequences")
        curves = {}
        for seed in range(cfg.seeds):
            run_dir = out / "runs" / variant / f"seed-{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_training(cfg, train_args(cfg, data, eval_data, run_dir, seed, eval_sequences))
            curves[seed] = eval_curve(run_dir)
        results[variant] = summarize(reports[variant], manifest, curves)

    ablation = {
        "eval_set": {
            "variant": eval_variant,
            "path": str(eval_data),
            "documents": eval_manifest["totals"]["val"]["documents"],
            "sequences": eval_sequences,
            "tokens": eval_manifest["totals"]["val"]["tokens"],
        },
        "train_tokens": cfg.train_tokens,
        "max_steps": cfg.max_steps,
        "config": dataclasses.asdict(cfg) | {"pipeline_options": passthrough},
        "variants": results,
    }
    (out / "ablation.json").write_text(json.dumps(ablation, indent=2))
    plot(results, eval_variant, out / "ablation.png")
    return ablation


def parse_args(argv: list[str] | None = None) -> tuple[AblationConfig, list[str]]:
    """The ablation's own options, and the rest: pipeline options for every variant's run."""
    parser = argparse.ArgumentParser(
        prog="python -m train.ablate",
        description="Train a small model on each pipeline variant's output and compare them on one held-out set. "
        "Options not listed here (e.g. --languages, --seed, --tokenizer) go to every pipeline run.",
        allow_abbrev=False,  # --seed is the pipeline's, not an abbreviation of --seeds
    )
    add_flags(parser, dataclasses.fields(AblationConfig), get_type_hints(AblationConfig))
    given, rest = parser.parse_known_args(argv)
    owned = [arg for arg in rest if arg.split("=", 1)[0] in OWNED_PIPELINE_FLAGS]
    if owned:
        parser.error(f"{', '.join(owned)}: set by the ablation for every variant")
    cfg = AblationConfig(**vars(given))
    try:
        cfg.validate()
    except ValueError as err:
        parser.error(str(err))
    return cfg, rest


def main(argv: list[str] | None = None) -> int:
    cfg, passthrough = parse_args(argv)
    ablation = run(cfg, passthrough)
    eval_set = ablation["eval_set"]
    print(
        f"\neval set: {eval_set['sequences']} sequences ({eval_set['tokens']:,} tokens) from {eval_set['documents']} "
        f"held-out documents of {eval_set['variant']}; {cfg.max_steps} steps, {cfg.train_tokens:,} tokens per model"
    )
    print(table(ablation["variants"], cfg.train_tokens, cfg.seeds))
    print(f"wrote {Path(cfg.output) / 'ablation.json'} and {Path(cfg.output) / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
