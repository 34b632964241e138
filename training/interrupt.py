"""Ctrl-C or SIGTERM: finish the current batch, save `last.ckpt`, stop.

Python's default SIGINT raises KeyboardInterrupt wherever the program happens to
be, possibly halfway through an optimiser step; a checkpoint saved from there
would hold half-updated weights. Instead the signal only raises a flag, and the
batch in flight completes before the state is saved. A second Ctrl-C while
stopping falls back to the immediate KeyboardInterrupt.
"""

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class TrainingInterrupted(Exception):
    """Training stopped on a signal; `last.ckpt` holds the state after the last finished batch."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class SaveOnInterrupt(pl.Callback):
    """Turns SIGINT/SIGTERM into: complete this batch, save last.ckpt, raise TrainingInterrupted."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.received = None
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        signum = self.received
        if trainer.world_size > 1:
            # One rank may be signalled (SLURM's scancel reaches every task, `kill PID` one):
            # all ranks must stop after the same batch, or the others would wait forever in
            # the next gradient all-reduce. One tiny all-reduce a step; on one device, none.
            signum = _largest_on_any_rank(trainer, self.received or 0)
        if not signum:
            return
        # Lightning logs this batch's step metrics only after this hook; log them now so the
        # last finished step is in TensorBoard too (the resumed run continues after it).
        trainer._logger_connector.update_train_step_metrics()
        for logger in trainer.loggers:
            logger.save()
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        if isinstance(trainer.checkpoint_callback, ModelCheckpoint):
            trainer.checkpoint_callback.last_model_path = str(path)
        name = signal.Signals(signum).name + ("" if self.received == signum else " on another rank")
        raise TrainingInterrupted(
            f"stopped by {name} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"saved {path}; resume with --ckpt_path last",
            signum,
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.received = signum
        rank_zero_info(f"\n{signal.Signals(signum).name}: saving last.ckpt after this batch, then stopping")


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def _largest_on_any_rank(trainer: pl.Trainer, value: int) -> int:
    """The largest `value` over all ranks (a signal number, 0 for none); every rank must call it."""
    mine = torch.tensor(value, device=trainer.strategy.root_device)
    return int(trainer.strategy.reduce(mine, reduce_op="max"))
