"""``python -m train`` / ``accelerate launch -m train`` / ``slm-train``: pretrain on packed Parquet shards.

Examples::

    python -m train --data OUT/packed --model preset:opt-125m --output runs/r1 --max-steps 2000
    accelerate launch --multi_gpu --num_processes 8 -m train --data OUT/packed --model OUT/models/grown \\
        --output runs/r2 --batch-size 16 --grad-accum 4 --resume
"""

from __future__ import annotations

import sys

from train.config import load_config


def main(argv: list[str] | None = None) -> int:
    cfg = load_config(argv)
    from train.data import EvalDataError
    from train.loop import train  # after parsing, so that --help and flag errors do not wait for torch

    try:
        final = train(cfg)
    except EvalDataError as err:
        print(f"error: --eval-data: {err}", file=sys.stderr)
        return 2
    print(f"final model: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
