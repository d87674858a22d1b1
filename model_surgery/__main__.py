"""Command line for model surgery: ``init`` makes a starting model, ``resize`` changes its depth.

A thin layer over the Python API: it parses arguments, calls ``init_random``/``load_pretrained``/``resize``,
saves with ``save`` and prints the size table. Failures the user can fix (bad combination of sizes, missing
model, offline hub) end as one ``error: ...`` line instead of a traceback: exit code 2 for a request refused
before any work (a size over ``checks.LIMITS``, ``--output`` that is the source or holds other files, flags that
do not go together), 1 for one that failed on the way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from model_surgery.checkpoint import load_pretrained, save
from model_surgery.checks import LIMITS, Refused, check_output, check_sizes, same_path
from model_surgery.init import init_random
from model_surgery.presets import PRESETS
from model_surgery.report import format_table, row
from model_surgery.resize import METHODS, resize
from model_surgery.resize import __doc__ as RESIZE_RULES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
OUTPUT_HELP = (
    "directory to write: new, empty, or an earlier model save, which is replaced as a whole (anything else is refused)"
)

# CLI flag -> OPTConfig field, for the preset overrides of ``init``.
OVERRIDES = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "ffn": "ffn_dim",
    "vocab": "vocab_size",
    "positions": "max_position_embeddings",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slm-surgery", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser(
        "init",
        help="random weights from a preset, or a copy of a pretrained model",
        description="Write a starting model: random weights from --preset (overridable field by field), "
        "or a pretrained model from --from (hub id or local directory).",
    )
    source = init.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), default="opt-125m", help="default: %(default)s")
    source.add_argument("--from", dest="source", metavar="HUB_ID_OR_DIR", help="load a pretrained model instead")
    init.add_argument("--output", required=True, type=Path, help=OUTPUT_HELP)
    for flag, field in OVERRIDES.items():
        init.add_argument(
            f"--{flag}", type=_positive_int, help=f"override the preset's {field} (at most {LIMITS[field]})"
        )
    init.add_argument("--dtype", choices=sorted(DTYPES), help="default: float32, or the checkpoint's dtype with --from")
    init.add_argument("--seed", type=int, help="random init seed (default: 0)")
    init.set_defaults(run=_run_init)

    resize_cmd = commands.add_parser(
        "resize",
        help="grow or shrink the number of decoder layers",
        description=RESIZE_RULES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resize_cmd.add_argument("--model", required=True, type=Path, help="save_pretrained directory to read")
    resize_cmd.add_argument(
        "--layers",
        required=True,
        type=_positive_int,
        help=f"number of decoder layers wanted (at most {LIMITS['num_hidden_layers']})",
    )
    resize_cmd.add_argument("--output", required=True, type=Path, help=OUTPUT_HELP)
    resize_cmd.add_argument("--method", choices=METHODS, default="dus", help="default: %(default)s")
    resize_cmd.add_argument(
        "--interleave", type=_positive_int, metavar="K", help="identity only: a new layer after every K-th layer"
    )
    resize_cmd.set_defaults(run=_run_resize)
    return parser


def _run_init(args: argparse.Namespace) -> None:
    overrides = {field: getattr(args, flag) for flag, field in OVERRIDES.items()}
    check_output(args.output)
    if args.source is None:
        dtype = DTYPES[args.dtype or "float32"]
        model = init_random(args.preset, seed=args.seed or 0, dtype=dtype, **overrides)
    else:
        given = [f"--{flag}" for flag, field in OVERRIDES.items() if overrides[field] is not None]
        if args.seed is not None:
            given.append("--seed")
        if given:
            raise Refused(f"{', '.join(given)} only apply to random init; use 'resize' to change a loaded model")
        if same_path(args.source, args.output):
            raise Refused("--output must differ from --from: the source weights are still being read from it")
        model = load_pretrained(args.source)
        if args.dtype is not None:
            model = model.to(DTYPES[args.dtype])
    save(model, args.output, tokenizer_source=args.source)
    print(format_table([row(str(args.output), model)]))


def _run_resize(args: argparse.Namespace) -> None:
    check_sizes({"num_hidden_layers": args.layers})
    if same_path(args.model, args.output):
        raise Refused("--output must differ from --model: the source weights are still being read from it")
    check_output(args.output)
    model = load_pretrained(args.model)
    before = row("before", model)
    resize(model, args.layers, method=args.method, interleave=args.interleave)
    save(model, args.output, tokenizer_source=args.model)
    print(format_table([before, row(f"after ({args.method})", model)]))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m model_surgery`` and the ``slm-surgery`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except Refused as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {' '.join(str(err).split())}") from None


if __name__ == "__main__":
    main()
