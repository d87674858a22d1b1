"""Do resized models keep what they learned? Continue training four starts on the same packed data and plot them.

A small base OPT model is first trained for ``--base-steps`` so the surgery has something to keep. Then four starts
continue for ``--steps`` on identical batches with a plain AdamW loop on the CPU:

* ``down (dus)``: the base shrunk to ``--down`` layers by SOLAR's rule (first and last layers kept);
* ``up (dus)``: the base grown to ``--up`` layers by SOLAR's depth up-scaling;
* ``up (identity)``: the base grown to ``--up`` layers by LLaMA Pro's zero-output copies (starts at the base's loss);
* ``random``: a fresh model of the up-scaled size, the baseline the surgery has to beat.

Their loss curves go into one PNG (``--out``) and the raw losses into a JSON file next to it.

    python bench/surgery_experiment.py --data out/packed --out bench/results/surgery.png --steps 200

Reads ``PACKED_DIR/train/*.parquet`` (column ``input_ids``, fixed-length int32 lists) and takes the vocabulary size
from ``PACKED_DIR/manifest.json``. Defaults run in a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow.parquet as pq
import torch
from transformers import OPTForCausalLM

from model_surgery import init_random, resize

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot is imported)


def load_sequences(packed_dir: Path, seq_len: int | None) -> tuple[torch.Tensor, int]:
    """All training sequences as one ``(N, seq_len)`` int tensor, and the vocabulary size the model needs.

    Reading every shard into memory is fine at the scale this experiment runs at and keeps batching trivial.
    """
    manifest = json.loads((packed_dir / "manifest.json").read_text())
    arrays = []
    for shard in sorted((packed_dir / "train").glob("*.parquet")):
        column = pq.read_table(shard, columns=["input_ids"]).column("input_ids").combine_chunks()
        if len(column):
            arrays.append(column.flatten().to_numpy().reshape(len(column), -1))
    if not arrays:
        raise SystemExit(f"error: no training sequences under {packed_dir / 'train'}")
    ids = torch.from_numpy(np.concatenate(arrays)[:, :seq_len].astype(np.int64))
    vocab = manifest.get("vocab_size") or int(ids.max()) + 1
    return ids, vocab


def train(model: OPTForCausalLM, data: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Per-step training loss; the batch order depends only on ``seed``, so every start sees the same batches."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average, so a curve starts at its real first loss instead of a centred blur."""
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="packed directory (train/*.parquet, manifest.json)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/surgery_experiment.png"))
    parser.add_argument("--layers", type=int, default=4, help="base model depth")
    parser.add_argument("--up", type=int, default=6, help="depth of the up-scaled starts and of the random one")
    parser.add_argument("--down", type=int, default=2, help="depth of the down-scaled start")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=256)
    parser.add_argument("--seq-len", type=int, help="truncate sequences to this many tokens (default: as packed)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--base-steps", type=int, default=200, help="training of the base before the surgery")
    parser.add_argument("--steps", type=int, default=200, help="continued training of each start")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; 1 because models this small gain nothing from more"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data, vocab = load_sequences(args.data, args.seq_len)
    shape = dict(
        hidden_size=args.hidden,
        num_attention_heads=args.heads,
        ffn_dim=args.ffn,
        vocab_size=vocab,
        max_position_embeddings=data.shape[1],
    )
    base = init_random(seed=args.seed, num_hidden_layers=args.layers, **shape)
    base_losses = train(base, data, args.base_steps, args.batch_size, args.lr, seed=args.seed + 1)
    print(f"base: {args.layers} layers, {base.num_parameters():,} parameters, loss {base_losses[-1]:.3f}")

    starts = {
        f"down (dus, {args.down} layers)": resize(copy.deepcopy(base), args.down),
        f"up (dus, {args.up} layers)": resize(copy.deepcopy(base), args.up),
        f"up (identity, {args.up} layers)": resize(copy.deepcopy(base), args.up, method="identity"),
        f"random ({args.up} layers)": init_random(seed=args.seed + 2, num_hidden_layers=args.up, **shape),
    }
    curves = {}
    for label, model in starts.items():
        curves[label] = train(model, data, args.steps, args.batch_size, args.lr, seed=args.seed + 3)
        print(f"{label}: {model.num_parameters():,} parameters, loss {curves[label][0]:.3f} -> {curves[label][-1]:.3f}")

    window = max(1, args.steps // 20)
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, losses in curves.items():
        axes.plot(range(1, len(losses) + 1), smooth(losses, window), label=label)
    axes.set(xlabel="continued training step", ylabel=f"training loss (mean of last {window} steps)")
    axes.set_title(f"Continued training after surgery (base: {args.layers} layers, {args.base_steps} steps)")
    axes.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120, bbox_inches="tight")
    record = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    args.out.with_suffix(".json").write_text(json.dumps(record | {"base": base_losses, "curves": curves}, indent=1))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
