"""``python -m train`` / ``accelerate launch -m train`` / ``slm-train``: pretrain on packed Parquet shards.

Examples::

    python -m train --data OUT/packed --model preset:opt-125m --output runs/r1 --max-steps 2000
    accelerate launch --multi_gpu --num_processes 8 -m train --data OUT/packed --model OUT/models/grown \\
        --output runs/r2 --batch-size 16 --grad-accum 4 --resume

Exit codes: 0 trained (``RUN/final`` written); 143 stopped by SIGTERM after saving a checkpoint (rerun with
``--resume``); other non-zero codes are errors (2: a bad flag).
"""

from __future__ import annotations

import sys

from train.config import load_config


def main(argv: list[str] | None = None) -> int:
    """Train; a configuration that is refused (a bad value, an override that is not a config field), or data and a
    model that do not fit together (:mod:`train.compat`), end as one line on stderr and exit status 2."""
    try:
        cfg = load_config(argv)
    except ValueError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    from train.compat import IncompatibleInputs
    from train.data import EvalDataError
    from train.loop import train  # after parsing, so that --help and flag errors do not wait for torch
    from train.preemption import EXIT_CODE, Preempted

    try:
        final = train(cfg)
    except IncompatibleInputs as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Preempted:  # SIGTERM: the checkpoint is saved and the loop has said so
        return EXIT_CODE
    except EvalDataError as err:
        print(f"error: --eval-data: {err}", file=sys.stderr)
        return 2
    print(f"final model: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
