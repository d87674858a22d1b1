"""Checkpoints that a crash cannot corrupt, resume from the newest one, and the final exported model.

A checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``checkpoints/step-N`` (``os.replace``, atomic
on one filesystem) only after every rank has finished writing, with ``trainer_state.json`` (step and the data stream's
position) as its last file, and every file and the directory are fsynced before the rename (and the parent after it),
so a power cut cannot leave a ``step-N`` whose files are still in the page cache. So any ``step-N`` directory is
complete, and a run killed mid-save leaves only a ``.tmp`` directory that resume ignores and the next save clears. A
``step-N`` that still fails to load (a disk error, a file damaged later) is reported and renamed ``.failed-step-N``,
and resume falls back to the previous one. The run directory must be on a filesystem all ranks share.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from slm_common.tokenizer import load_tokenizer
from train.data import DataStream

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _complete(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(run_dir: Path) -> Path | None:
    found = _complete(run_dir)
    return found[-1][1] if found else None


def save(accelerator: Accelerator, run_dir: Path, step: int, data: DataStream, keep: int) -> Path:
    """Save model, optimizer, scheduler and RNG states (``accelerator.save_state``) plus the step and data position.

    Collective: every rank calls it (each writes its own RNG state).
    """
    root = run_dir / "checkpoints"
    tmp, final = root / f".tmp-step-{step}", root / f"step-{step}"
    if accelerator.is_main_process:
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": step, "data": data.state_dict(), "world_size": accelerator.num_processes}
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        fsync_tree(tmp)
        if final.exists():  # the same step saved by a run that was later resumed from an earlier checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        for _, old in _complete(run_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def fsync_tree(directory: Path) -> None:
    """Flush every file under ``directory`` and the directories themselves to disk."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        else:
            fsync_dir(path)
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (the names created, renamed or removed in it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore(accelerator: Accelerator, run_dir: Path, data: DataStream, resume: bool) -> int:
    """The step to start from: the newest checkpoint's that loads (into the prepared objects and ``data``) with
    ``resume``, else 0. A fresh run refuses a directory that has checkpoints, whose pruning would mix two runs."""
    found = _complete(run_dir)
    if not resume:
        if found:
            raise SystemExit(
                f"{run_dir} already has {found[-1][1]}; pass --resume to continue it, or choose another --output"
            )
        return 0
    if not found:
        accelerator.print(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting from step 0")
        return 0
    failed = []
    for _, path in reversed(found):
        try:
            state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
            accelerator.load_state(str(path))
            break
        except Exception as err:  # noqa: BLE001 - any damage to any file: report it and try the previous checkpoint
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            accelerator.print(
                f"--resume: {path} does not load ({type(err).__name__}: {reason}); trying the previous one"
            )
            failed.append(path)
    else:
        raise SystemExit(f"--resume: none of the {len(found)} checkpoints under {run_dir / 'checkpoints'} loads")
    set_aside(accelerator, failed)
    # accelerate restores its micro-step counter, which decides when gradients sync; a checkpoint sits on a step
    # boundary, so zero is the same phase and stays right if --grad-accum changed.
    accelerator.step = 0
    data.load_state_dict(state["data"])
    accelerator.print(
        f"resumed from {path} (step {state['step']}, saved by {state.get('world_size', '?')} process(es), "
        f"data position {data.position}, now {accelerator.num_processes} process(es))"
    )
    return int(state["step"])


def set_aside(accelerator: Accelerator, failed: list[Path]) -> None:
    """Rename checkpoints that failed to load to ``.failed-step-N``: kept for inspection, never resumed from or counted
    by ``--keep-checkpoints`` again. Collective: every rank has finished reading before the main process renames."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in failed:
            os.replace(path, path.with_name(f".failed-{path.name}"))
    accelerator.wait_for_everyone()


def export_final(accelerator: Accelerator, model: torch.nn.Module, run_dir: Path, data_dir: Path) -> Path:
    """``RUN/final``: one full ``save_pretrained`` model (whatever the sharding) and the data's tokenizer, loadable by
    ``pipeline(model=...)``. Collective: every rank calls it.

    The tokenizer is copied from ``packed/tokenizer``; a manifest without one names the tokenizer to load instead.
    It is the data's even when the model directory held another: the model learnt the data's ids. A run only gets
    here with a different model tokenizer under ``--allow-tokenizer-mismatch``, which warned so at the start
    (:mod:`train.compat`).
    """
    out = run_dir / "final"
    # Collective: under FSDP every rank holds a shard, and this gathers the whole weights (on the main process only);
    # under DDP or one process it is the plain state dict. torch.compile's wrapper prefixes names with "_orig_mod.".
    state_dict = {name.removeprefix("_orig_mod."): t for name, t in accelerator.get_state_dict(model).items()}
    if accelerator.is_main_process:
        accelerator.unwrap_model(model, keep_torch_compile=False).save_pretrained(out, state_dict=state_dict)
        tokenizer_dir = data_dir / "tokenizer"
        if tokenizer_dir.is_dir():
            shutil.copytree(tokenizer_dir, out, dirs_exist_ok=True)
        else:
            manifest_path = data_dir / "manifest.json"
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
            load_tokenizer(manifest.get("tokenizer", "")).save_pretrained(out)
    accelerator.wait_for_everyone()
    return out
