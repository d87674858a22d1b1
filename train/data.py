"""Streaming reader of packed Parquet shards whose order does not depend on how many processes read it.

The data is an endless stream of *global positions*: epoch ``e`` covers positions ``[e*N, (e+1)*N)`` of the ``N``
packed sequences. Each epoch's order is a pure function of ``(seed, epoch)``:

1. the ``(file, row group)`` units are permuted by a generator seeded with ``(seed, epoch)``;
2. consecutive runs of ``shuffle_window`` units form windows, and the sequences inside a window are permuted by a
   generator seeded with ``(seed, epoch, window)``, so that a batch mixes several row groups (documents of a shard
   are stored together) while a reader only ever needs ``shuffle_window`` row groups decoded at once.

Rank ``r`` of ``W`` takes global positions ``start + r, start + r + W, ...``, so the interleave of all ranks' streams
is the one stream and a run saved on ``W`` processes resumes on any other number. Within a rank, DataLoader worker
``w`` of ``K`` builds the rank's batches ``w, w + K, ...``; the DataLoader returns worker results round robin, so the
rank sees its batches in order whatever ``K`` is. Mapping a position to its row group needs only the row-group row
counts from the Parquet footers, which is why resuming at any position reads no skipped data.

The stream never ends: a global batch that crosses the end of an epoch takes the rest from the next epoch, so no
sequence is dropped and every rank takes the same number of steps. A reader decodes a row group whole (Parquet
cannot decode single rows) and keeps the sequences of its rank and worker; the others decode the same row group for
their share. So each row group is read and decoded by up to ``W*K`` readers (on one node mostly from the page cache):
CPU and read bandwidth traded for an order that is independent of ``W``. A reader holds at most
``shuffle_window + 1`` decoded row groups, and decoding int32 lists runs far ahead of what a GPU consumes.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from train.compat import read_manifest
from train.preemption import ignore_sigterm, kill_workers_at_exit


@dataclass(frozen=True)
class Unit:
    """One Parquet row group: the smallest piece read at once."""

    file: str
    row_group: int
    rows: int
    first_id: int
    """Sequence id of the unit's first row; ids number all sequences of a split in manifest order."""


class ShardIndex:
    """The units of one split and their row counts, from ``manifest.json`` plus the Parquet footers (no data read).

    Only the shards a complete manifest lists are read (:func:`~train.compat.read_manifest`), never a glob: without
    the manifest, pack may still be writing, or files of an earlier run with more shards may lie beside the new ones.
    """

    def __init__(self, data_dir: str | Path, split: str) -> None:
        self.root = Path(data_dir)
        self.manifest: dict[str, Any] = read_manifest(self.root)
        files = [self.root / s["file"] for s in self.manifest["shards"].get(split, [])]
        self.units: list[Unit] = []
        first_id = 0
        for path in files:
            meta = pq.read_metadata(path)
            for rg in range(meta.num_row_groups):
                rows = meta.row_group(rg).num_rows
                if rows:
                    self.units.append(Unit(str(path), rg, rows, first_id))
                    first_id += rows
        self.num_sequences = first_id
        if not self.units:
            raise FileNotFoundError(f"no sequences for split {split!r} under {self.root}")
        self.seq_len = int(self.manifest["seq_len"])

    def seq_id(self, unit_index: int, row: int) -> int:
        return self.units[unit_index].first_id + row


class GlobalOrder:
    """Maps a global stream position to ``(unit index, row)``; a pure function of the index, seed and shuffle."""

    def __init__(self, index: ShardIndex, seed: int = 0, shuffle: bool = True, window: int = 4) -> None:
        self.index, self.seed, self.shuffle, self.window = index, seed, shuffle, window
        # Small memo tables rather than functools caches, so the object pickles into spawned DataLoader workers.
        self._plans: OrderedDict[int, tuple[list[np.ndarray], list[int]]] = OrderedDict()
        self._maps: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _plan(self, epoch: int) -> tuple[list[np.ndarray], list[int]]:
        """The epoch's windows (unit indices each) and the first in-epoch offset of every window."""
        if epoch not in self._plans:
            n = len(self.index.units)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            windows = [order[i : i + self.window] for i in range(0, n, self.window)]
            sizes = [sum(self.index.units[u].rows for u in units) for units in windows]
            _remember(self._plans, epoch, (windows, np.cumsum([0, *sizes[:-1]]).tolist()), size=2)
        return self._plans[epoch]

    def _window_map(self, epoch: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each offset in window ``k``: the unit and row it reads (the window's in-epoch shuffle)."""
        if (epoch, k) not in self._maps:
            units = self._plan(epoch)[0][k]
            unit_of = np.concatenate([np.full(self.index.units[u].rows, u) for u in units])
            row_of = np.concatenate([np.arange(self.index.units[u].rows) for u in units])
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch, k]).permutation(len(unit_of))
                unit_of, row_of = unit_of[perm], row_of[perm]
            _remember(self._maps, (epoch, k), (unit_of, row_of), size=4)
        return self._maps[epoch, k]

    def locate(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.index.num_sequences)
        starts = self._plan(epoch)[1]
        k = bisect.bisect_right(starts, offset) - 1
        unit_of, row_of = self._window_map(epoch, k)
        return int(unit_of[offset - starts[k]]), int(row_of[offset - starts[k]])

    def seq_id(self, position: int) -> int:
        """The id (manifest-order number) of the sequence at ``position``; what tests and data logs compare."""
        return self.index.seq_id(*self.locate(position))


def _remember(table: OrderedDict, key: Any, value: Any, size: int) -> None:
    table[key] = value
    if len(table) > size:
        table.popitem(last=False)


class RowGroupReader:
    """Decoded row groups as ``[rows, seq_len]`` arrays, with a small LRU because positions advance window by window."""

    def __init__(self, index: ShardIndex, capacity: int) -> None:
        self.index, self.capacity = index, capacity
        self._files: dict[str, pq.ParquetFile] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def rows(self, unit_index: int) -> np.ndarray:
        if unit_index in self._cache:
            self._cache.move_to_end(unit_index)
            return self._cache[unit_index]
        unit = self.index.units[unit_index]
        if unit.file not in self._files:
            self._files[unit.file] = pq.ParquetFile(unit.file)
        column = self._files[unit.file].read_row_group(unit.row_group, columns=["input_ids"]).column(0)
        flat = column.combine_chunks().flatten().to_numpy()
        if flat.size != unit.rows * self.index.seq_len:
            raise ValueError(f"{unit.file} row group {unit.row_group}: sequences are not all {self.index.seq_len} long")
        self._cache[unit_index] = flat.reshape(unit.rows, self.index.seq_len)
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return self._cache[unit_index]


class RankBatches(IterableDataset):
    """Endless batches of one rank, starting at a global position; yields ``input_ids`` and ``seq_ids``."""

    def __init__(self, order: GlobalOrder, batch_size: int, rank: int, world_size: int, start: int) -> None:
        super().__init__()
        self.order, self.batch_size, self.rank, self.world_size, self.start = order, batch_size, rank, world_size, start

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        reader = RowGroupReader(self.order.index, capacity=self.order.window + 1)
        batch = worker
        while True:
            first = self.start + self.rank + batch * self.batch_size * self.world_size
            positions = range(first, first + self.batch_size * self.world_size, self.world_size)
            located = [self.order.locate(p) for p in positions]
            rows = np.stack([reader.rows(unit)[row] for unit, row in located])
            ids = [self.order.index.seq_id(unit, row) for unit, row in located]
            yield {"input_ids": torch.from_numpy(rows.astype(np.int64)), "seq_ids": torch.tensor(ids)}
            batch += workers


class DataStream:
    """One rank's batches and the global position they reached: the narrow interface of the loop and checkpoints.

    The position advances by ``batch_size * world_size`` for every batch handed to the consumer (not when a worker
    prefetches it), so :meth:`state_dict` taken between steps says exactly where every rank continues.
    """

    def __init__(
        self,
        data_dir: str | Path,
        split: str,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        window: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.index = ShardIndex(data_dir, split)
        self.order = GlobalOrder(self.index, seed=seed, shuffle=shuffle, window=window)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.position = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def tokens_seen(self) -> int:
        """Tokens consumed by all ranks together since the start of training (not just this run)."""
        return self.position * self.index.seq_len

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        dataset = RankBatches(self.order, self.batch_size, self.rank, self.world_size, self.position)
        # A private generator: DataLoader draws a worker seed from it per iterator, and drawing from the global RNG
        # would shift dropout masks after a resume (which creates one iterator more or less than the original run).
        if self.num_workers:
            kill_workers_at_exit()
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=ignore_sigterm,
            generator=torch.Generator().manual_seed(self.order.seed),
        )
        for batch in loader:
            self.position += self.global_batch
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {
            "position": self.position,
            "epoch": self.position // self.index.num_sequences,
            "seed": self.order.seed,
            "num_sequences": self.index.num_sequences,
            "seq_len": self.index.seq_len,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state["position"]``; refuses a state from different data, whose positions mean nothing here."""
        for key in ("num_sequences", "seq_len"):
            if key in state and state[key] != getattr(self.index, key):
                raise ValueError(f"data state is for {key}={state[key]}, this data has {getattr(self.index, key)}")
        if state.get("seed", self.order.seed) != self.order.seed:
            raise ValueError(f"data state was saved with seed {state['seed']}, this stream uses {self.order.seed}")
        self.position = int(state["position"])


class EvalDataError(ValueError):
    """An ``--eval-data`` directory that cannot be evaluated against the training data: no val split, or packed
    with another tokenizer or sequence length."""


PACKING_KEYS = ("bos_id", "eos_id", "pad_id", "vocab_size")
"""Manifest fields that must agree for a loss measured on one packed directory to mean the same on another."""


def check_same_packing(data: ShardIndex, other: ShardIndex) -> None:
    """Refuse to evaluate on ``other`` (``--eval-data``) when it was not packed like the training data.

    The saved tokenizers are compared by content (``tokenizer/tokenizer.json``), which catches what the manifest's
    ``tokenizer`` name cannot: the same name resolving to another tokenizer, or one tokenizer given by two names.
    """
    for key in PACKING_KEYS:
        if key in data.manifest and key in other.manifest and data.manifest[key] != other.manifest[key]:
            raise EvalDataError(
                f"{other.root} has {key}={other.manifest[key]}, the training data {data.root} has {data.manifest[key]}"
            )
    if data.seq_len != other.seq_len:
        raise EvalDataError(f"{other.root} has seq_len={other.seq_len}, the training data has {data.seq_len}")
    files = [root / "tokenizer" / "tokenizer.json" for root in (data.root, other.root)]
    if all(f.is_file() for f in files):
        if files[0].read_bytes() != files[1].read_bytes():
            raise EvalDataError(f"{other.root} was packed with another tokenizer than the training data {data.root}")
    elif data.manifest.get("tokenizer") != other.manifest.get("tokenizer"):
        raise EvalDataError(
            f"{other.root} was packed with tokenizer {other.manifest.get('tokenizer')!r}, "
            f"the training data with {data.manifest.get('tokenizer')!r}"
        )
