"""Checkpoints that a crash cannot corrupt, resume from the newest one, and the final exported model.

A checkpoint is written under ``checkpoints/.tmp-step-N`` and renamed to ``checkpoints/step-N`` (``os.replace``, atomic
on one filesystem) only after every rank has finished writing, with ``trainer_state.json`` (step and the data stream's
position) as its last file. So any ``step-N`` directory is complete, and a run killed mid-save leaves only a ``.tmp``
directory that resume ignores and the next save clears. The run directory must be on a filesystem all ranks share.
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
        if final.exists():  # the same step saved by a run that was later resumed from an earlier checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in _complete(run_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def restore(accelerator: Accelerator, run_dir: Path, data: DataStream, resume: bool) -> int:
    """The step to start from: the newest complete checkpoint's (loaded into the prepared objects and ``data``) with
    ``resume``, else 0. A fresh run refuses a directory that has checkpoints, whose pruning would mix two runs."""
    path = latest(run_dir)
    if not resume:
        if path is not None:
            raise SystemExit(f"{run_dir} already has {path}; pass --resume to continue it, or choose another --output")
        return 0
    if path is None:
        accelerator.print(f"--resume: no complete checkpoint under {run_dir / 'checkpoints'}; starting from step 0")
        return 0
    state: dict[str, Any] = json.loads((path / STATE_FILE).read_text())
    accelerator.load_state(str(path))
    # accelerate restores its micro-step counter, which decides when gradients sync; a checkpoint sits on a step
    # boundary, so zero is the same phase and stays right if --grad-accum changed.
    accelerator.step = 0
    data.load_state_dict(state["data"])
    accelerator.print(
        f"resumed from {path} (step {state['step']}, saved by {state.get('world_size', '?')} process(es), "
        f"data position {data.position}, now {accelerator.num_processes} process(es))"
    )
    return int(state["step"])


def export_final(accelerator: Accelerator, model: torch.nn.Module, run_dir: Path, data_dir: Path) -> Path:
    """``RUN/final``: ``save_pretrained`` weights and the data's tokenizer, loadable by ``pipeline(model=...)``.

    The tokenizer is copied from ``packed/tokenizer``; a manifest without one names the tokenizer to load instead.
    It is the data's even when the model directory held another: the model learnt the data's ids. A run only gets
    here with a different model tokenizer under ``--allow-tokenizer-mismatch``, which warned so at the start
    (:mod:`train.compat`).
    """
    out = run_dir / "final"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # Unwrapped from DDP *and* torch.compile, whose wrapper would prefix every weight name with "_orig_mod.".
        accelerator.unwrap_model(model, keep_torch_compile=False).save_pretrained(out)
        tokenizer_dir = data_dir / "tokenizer"
        if tokenizer_dir.is_dir():
            shutil.copytree(tokenizer_dir, out, dirs_exist_ok=True)
        else:
            manifest_path = data_dir / "manifest.json"
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
            load_tokenizer(manifest.get("tokenizer", "")).save_pretrained(out)
    accelerator.wait_for_everyone()
    return out
