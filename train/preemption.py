"""Stopping cleanly on SIGTERM, the signal that Slurm, Kubernetes and spot-instance reclaimers send before they kill.

The handler only sets a flag. The loop asks :meth:`Preemption.requested` once per optimizer step, after the step, then
saves a checkpoint at that step and exits with :data:`EXIT_CODE`; ``--resume`` continues from it exactly. Ranks may
receive the signal at different moments (a launcher signals each process in turn; a node may be reclaimed alone), so
the question is collective: the ranks' flags are summed (one scalar all-reduce per step) and every rank stops at the
same step. A SIGTERM after the last step lets the final export complete (exit 0). A second SIGTERM takes the default
action and ends the process at once.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
from types import FrameType

import torch
from accelerate import Accelerator

EXIT_CODE = 143
"""128 + SIGTERM: what a shell reports for a process ended by SIGTERM, so schedulers read it as "terminated"."""


class Preempted(Exception):
    """Raised by the loop after the preemption checkpoint is saved; the entry point turns it into :data:`EXIT_CODE`."""


class Preemption:
    """Installs the SIGTERM handler; :meth:`close` restores the previous one."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.received = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        self.received = True

    def requested(self) -> bool:
        """Whether any rank has received SIGTERM. Collective: every rank calls it once per step."""
        if self.accelerator.num_processes == 1:
            return self.received
        flag = torch.tensor(float(self.received), device=self.accelerator.device)
        return self.accelerator.reduce(flag, reduction="sum").item() > 0

    def close(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def ignore_sigterm(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: launchers (torchrun, Slurm) signal a rank's whole process group, and a worker
    that died of it would fail the step the rank is finishing. Workers still exit when their rank does (see
    :func:`kill_workers_at_exit`)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@functools.cache
def kill_workers_at_exit() -> None:
    """Make this process SIGKILL its live daemonic children (DataLoader workers) when it exits. multiprocessing's
    own exit handler SIGTERMs them and then joins them, which waits forever for a worker that ignores SIGTERM and has
    not yet seen the loader's stop message. Handlers run last-registered first, so this one runs before that one."""
    atexit.register(_kill_daemonic_children)


def _kill_daemonic_children() -> None:
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
