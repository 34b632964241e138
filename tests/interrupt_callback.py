"""Test-only callbacks that stop a real train.py run from inside, at a chosen optimiser step.

Added on the command line like any callback (train.py's folder is on sys.path, so `tests`
imports from any working folder):

    --trainer.callbacks+=tests.interrupt_callback.SignalAtStep
    --trainer.callbacks.step=6 --trainer.callbacks.signal=SIGTERM

It is recorded in the run's config.yaml, so every resume of the run has it too: a resume that
starts past `step` never meets it again; one that starts before it (after a hard kill) would,
unless `once` names a file that marks it done.
"""

import errno
import os
import signal as signals
from pathlib import Path

import lightning.pytorch as pl


class SignalAtStep(pl.Callback):
    """Sends this process `signal` (SIGINT, SIGTERM, SIGKILL) when optimiser step `step` is done.

    At the end of the training batch that makes global_step == step, where a signal from
    outside lands between two batches. With `once` (a file path), only while that file does
    not exist; it is created just before the signal.
    """

    def __init__(self, step: int, signal: str = "SIGTERM", once: str | None = None) -> None:
        self.step = step
        self.signum = signals.Signals[signal]
        self.once = Path(once) if once else None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        if self.once is not None:
            if self.once.exists():
                return
            self.once.touch()
        os.kill(os.getpid(), self.signum)


class DiskFullAtStep(pl.Callback):
    """Fails as a write onto a full disk does (OSError ENOSPC) when optimiser step `step` is done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(trainer.log_dir) / "events"))
