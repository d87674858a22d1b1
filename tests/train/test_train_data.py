"""Unit tests of the streaming dataset, config and checkpoint bookkeeping of the train package (no training)."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import yaml

from tests.train_fixtures import write_packed
from train.checkpoint import STATE_FILE, latest, restore
from train.config import TrainConfig, load_config
from train.data import DataStream, GlobalOrder, ShardIndex
from train.model import lr_lambda

BATCH = 4


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 96 train sequences in 3 shards with uneven row groups (10,10,10,10 | 10,10,10,2 | 10,10,4).
    return write_packed(tmp_path_factory.mktemp("data"), seq_len=16, train_files=(40, 32, 24), val_files=(12,))


def rank_ids(packed: Path, world: int, workers: int, batches: int, seed: int = 0, start: int = 0) -> list[list[int]]:
    """Each rank's sequence ids, in the order it receives them."""
    streams = []
    for rank in range(world):
        stream = DataStream(packed, "train", BATCH, rank=rank, world_size=world, seed=seed, num_workers=workers)
        stream.position = start
        streams.append([i for b in itertools.islice(stream, batches) for i in b["seq_ids"].tolist()])
    return streams


def interleave(streams: list[list[int]]) -> list[int]:
    return [i for group in zip(*streams, strict=True) for i in group]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_sequence_once_per_epoch(packed: Path, world: int, workers: int) -> None:
    n = ShardIndex(packed, "train").num_sequences
    assert n % (world * BATCH) == 0  # so that one epoch is a whole number of global batches
    streams = rank_ids(packed, world, workers, batches=n // (world * BATCH))
    counts = Counter(i for s in streams for i in s)
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {1}
    for a, b in itertools.combinations(streams, 2):
        assert not set(a) & set(b)


def test_order_independent_of_world_size(packed: Path) -> None:
    single = rank_ids(packed, 1, 0, batches=18)[0]  # 72 positions
    assert interleave(rank_ids(packed, 2, 2, batches=9)) == single
    assert interleave(rank_ids(packed, 3, 0, batches=6)) == single
    # started mid-stream at a position that is not a multiple of the world size
    assert interleave(rank_ids(packed, 3, 2, batches=4, start=13)) == single[13 : 13 + 48]


def test_resume_equals_uninterrupted(packed: Path) -> None:
    stream = DataStream(packed, "train", BATCH, rank=1, world_size=2, seed=3, num_workers=2)
    it = iter(stream)
    before = [next(it) for _ in range(7)]
    state = json.loads(json.dumps(stream.state_dict()))  # as written to trainer_state.json
    after = [next(it)["input_ids"] for _ in range(10)]  # positions 56..135: across the end of epoch 0
    resumed = DataStream(packed, "train", BATCH, rank=1, world_size=2, seed=3, num_workers=0)
    resumed.load_state_dict(state)
    again = [b["input_ids"] for b in itertools.islice(resumed, 10)]
    assert state["position"] == 56 and len(before) == 7
    assert all((a == b).all() for a, b in zip(after, again, strict=True))
    with pytest.raises(ValueError, match="seed"):
        DataStream(packed, "train", BATCH, seed=4).load_state_dict(state)


def test_resume_reads_no_skipped_row_groups(packed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: object, **kwargs: object) -> object:
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    stream = DataStream(packed, "train", BATCH, seed=0, window=1)
    stream.load_state_dict({"position": 96 * 50 + 40})  # epoch 50
    next(iter(stream))
    # four consecutive positions inside one window of one row group each: at most two row groups decoded
    assert 1 <= len(reads) <= 2


def test_shuffle_per_epoch(packed: Path) -> None:
    index = ShardIndex(packed, "train")
    n = index.num_sequences

    def epoch(order: GlobalOrder, e: int) -> list[int]:
        return [order.seq_id(e * n + i) for i in range(n)]

    order = GlobalOrder(index, seed=0)
    e0, e1 = epoch(order, 0), epoch(order, 1)
    assert sorted(e0) == sorted(e1) == list(range(n))
    assert e0 != e1
    assert e0 == epoch(GlobalOrder(index, seed=0), 0)  # deterministic for a given seed
    assert e0 != epoch(GlobalOrder(index, seed=1), 0)
    assert epoch(GlobalOrder(index, shuffle=False), 0) == list(range(n))
    # windows mix row groups: a batch is not drawn from a single row group
    units = {order.locate(p)[0] for p in range(8)}
    assert len(units) > 1


def test_config_flags_win_over_yaml(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": "d", "model": "preset:opt-125m", "output": "o", "lr": 0.1, "max-steps": 7}))
    cfg = load_config(
        ["--config", str(path), "--lr", "0.5", "--model-overrides", "hidden_size=64,activation_function=gelu"]
    )
    assert (cfg.lr, cfg.max_steps, cfg.data) == (0.5, 7, "d")
    assert cfg.model_overrides == {"hidden_size": 64, "activation_function": "gelu"}
    assert load_config(["--data", "d", "--model", "m", "--output", "o", "--no-resume", "--compile"]).compile
    with pytest.raises(SystemExit):
        load_config(["--data", "d"])
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(data="d", model="m", output="o", schedule="step")


def test_lr_schedule() -> None:
    cfg = TrainConfig(data="d", model="m", output="o", lr=1.0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    factor = lr_lambda(cfg)
    assert factor(0) == pytest.approx(0.2) and factor(3) == pytest.approx(0.8) and factor(4) == pytest.approx(1.0)
    assert factor(9) == pytest.approx(0.55) and factor(14) == pytest.approx(0.1) and factor(100) == pytest.approx(0.1)
    cfg.schedule = "linear"
    assert lr_lambda(cfg)(9) == pytest.approx(0.55)
    cfg.schedule = "constant"
    assert lr_lambda(cfg)(13) == 1.0


def test_checkpoint_discovery(tmp_path: Path) -> None:
    """Only renamed directories with a state file count; --resume without one is a no-op, a fresh run refuses one."""
    messages: list[str] = []
    accelerator = SimpleNamespace(print=messages.append)  # restore only prints when it has nothing to load
    root = tmp_path / "checkpoints"
    assert latest(tmp_path) is None
    assert restore(accelerator, tmp_path, None, resume=True) == 0 and "no complete checkpoint" in messages[0]
    for name, complete in (("step-10", True), ("step-20", False), (".tmp-step-30", True), ("step-9", True)):
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / STATE_FILE).write_text("{}")
    assert latest(tmp_path) == root / "step-10"
    with pytest.raises(SystemExit, match="--resume"):
        restore(accelerator, tmp_path, None, resume=False)
