"""The one typed configuration of a training run, read from flags and an optional YAML file (flags win).

Every field of :class:`TrainConfig` is a command-line flag (``max_steps`` -> ``--max-steps``) and a YAML key, so
there is a single place that lists what a run can be told, and a YAML file from an earlier run replays it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from slm_common.options import read_yaml_options

SCHEDULES = ("cosine", "linear", "constant")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
LOSSES = ("hf", "chunked")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2", "flex_attention")


@dataclass
class TrainConfig:
    """Everything a run needs; the ``help`` metadata doubles as the ``--help`` text."""

    data: str = field(metadata={"help": "packed data directory (with manifest.json, train/, val/, tokenizer/)"})
    model: str = field(metadata={"help": "save_pretrained directory, or preset:NAME for random init (preset:opt-125m)"})
    output: str = field(metadata={"help": "run directory (metrics.jsonl, checkpoints/, final/, loss.png)"})
    eval_data: str | None = field(
        default=None,
        metadata={"help": "packed dir whose val split is evaluated instead of --data's (same tokenizer, seq_len)"},
    )
    model_overrides: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "OPTConfig fields to override (nothing else), e.g. num_hidden_layers=2,hidden_size=64"},
    )
    max_steps: int = field(default=1000, metadata={"help": "optimizer steps to train for (in total, across resumes)"})
    batch_size: int = field(default=8, metadata={"help": "sequences per device per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches accumulated per optimizer step"})
    lr: float = field(default=6e-4, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final lr as a fraction of --lr (cosine and linear)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps"})
    schedule: str = field(default="cosine", metadata={"help": "lr decay after warmup", "choices": SCHEDULES})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (matrices only, not norms/biases)"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm; 0 disables clipping"})
    log_every: int = field(default=10, metadata={"help": "steps between metrics.jsonl records"})
    eval_every: int = field(
        default=200, metadata={"help": "steps between evaluations on val (and at the end); 0: never"}
    )
    eval_batches: int = field(default=20, metadata={"help": "val batches per device per evaluation"})
    save_every: int = field(default=500, metadata={"help": "steps between checkpoints (and at the end); 0: never"})
    keep_checkpoints: int = field(default=3, metadata={"help": "checkpoints kept (the newest)"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest complete checkpoint, if any"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model (inductor)"})
    loss: str = field(
        default="hf",
        metadata={
            "help": "hf: the model's own loss; chunked: LM head and cross-entropy by chunks of tokens, no whole logits",
            "choices": LOSSES,
        },
    )
    attn_implementation: str = field(
        default="auto",
        metadata={"help": "attention kernels; auto: transformers' choice (sdpa for OPT)", "choices": ATTENTION},
    )
    seed: int = field(default=0, metadata={"help": "seed of model init, dropout and the data order"})
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per device"})
    shuffle_window: int = field(default=4, metadata={"help": "row groups whose sequences are shuffled together"})
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto: bf16 on a GPU that has it, else no", "choices": MIXED_PRECISION}
    )
    report_to: str = field(
        default="auto", metadata={"help": "accelerate trackers, comma separated; auto: tensorboard if installed"}
    )
    peak_tflops: float | None = field(
        default=None, metadata={"help": "per-device peak TFLOP/s for the mfu estimate (default: known GPUs' bf16 peak)"}
    )
    allow_tokenizer_mismatch: bool = field(
        default=False,
        metadata={"help": "train even when the model's own tokenizer is not the data's (final/ gets the data's)"},
    )
    debug_log_data: bool = field(
        default=False,
        metadata={"help": "write RUN/data-log/rank-R.jsonl with every micro-batch's sequence ids and hash"},
    )

    def __post_init__(self) -> None:
        """Reject settings that would only fail (or silently misbehave) deep inside the loop."""
        positive = (
            "max_steps",
            "batch_size",
            "grad_accum",
            "log_every",
            "eval_batches",
            "keep_checkpoints",
            "shuffle_window",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "save_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("schedule", "mixed_precision", "loss", "attn_implementation"):
            choices = _field(name).metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if isinstance(self.model_overrides, str):
            self.model_overrides = parse_overrides(self.model_overrides)
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must map config fields to values, got {self.model_overrides!r}")
        if self.model_overrides:
            # Only config fields within bounds: anything else would reach from_pretrained as a loader keyword
            # (trust_remote_code, revision, token). Imported here since it loads transformers, which --help need not.
            from model_surgery.checks import check_overrides

            check_overrides(self.model_overrides)

    def to_flat_dict(self) -> dict[str, int | float | str | bool]:
        """Scalars only, as trackers (TensorBoard hparams) accept nothing else."""
        flat = {}
        for key, value in dataclasses.asdict(self).items():
            flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
        return flat


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == name)


def parse_overrides(text: str) -> dict[str, Any]:
    """``a=1,b=relu,c=0.1`` -> ``{"a": 1, "b": "relu", "c": 0.1}``; values are typed by YAML's scalar rules."""
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"model override {item!r} is not KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _scalar_type(hint: Any) -> Any:
    """The concrete type of ``int``/``float | None`` style hints, for argparse's ``type=``."""
    if get_origin(hint) in (types.UnionType,):
        return next(arg for arg in get_args(hint) if arg is not type(None))
    return hint


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"default: {f.default}"
    if f.default_factory is not dataclasses.MISSING:
        return f"default: {f.default_factory()}"
    return "required"


def build_parser() -> argparse.ArgumentParser:
    """A parser with one flag per field; every default is SUPPRESS so that only flags actually given are seen."""
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Pretrain an OPT model on packed Parquet shards (single process or under `accelerate launch`).",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML file with any of the options below (flags given here win)")
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = _scalar_type(hints[f.name])
        help_text = f"{f.metadata['help']} ({_default_text(f)})"
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif get_origin(hint) is dict:
            parser.add_argument(flag, type=parse_overrides, metavar="K=V,...", help=help_text)
        else:
            parser.add_argument(flag, type=hint, choices=f.metadata.get("choices"), help=help_text)
    return parser


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then flags; YAML keys may use ``-`` or ``_``."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    if "config" in args:
        values = read_yaml_options(args.pop("config"), TrainConfig)
    values.update(args)
    missing = [name for name in ("data", "model", "output") if name not in values]
    if missing:
        raise SystemExit(f"missing required option(s): {', '.join('--' + m for m in missing)}")
    return TrainConfig(**values)
