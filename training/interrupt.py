"""Ctrl-C or SIGTERM: finish the current batch, save `last.ckpt`, stop.

Python's default SIGINT raises KeyboardInterrupt wherever the program happens to
be, possibly halfway through an optimiser step; a checkpoint saved from there
would hold half-updated weights. Instead the signal only raises a flag, and the
batch in flight completes before the state is saved. A second Ctrl-C while
stopping falls back to the immediate KeyboardInterrupt.

A signal in an epoch's last batch waits for the epoch's end (validation, the
best checkpoint, the epoch's metrics): Lightning resumes a checkpoint saved after
the last batch in the next epoch, so that epoch's end would never happen.
"""

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from training.atomic_checkpoint_io import flush_held_checkpoints


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
        self._at_epoch_end: int | None = None  # a signal put off until the epoch has ended
        self._previous: dict[int, Any] = {}
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self.received = self._at_epoch_end = None
        self._trainer = trainer
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        self._trainer = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        signum = self.received
        if trainer.world_size > 1:
            # One rank may be signalled (SLURM's scancel reaches every task, `kill PID` one):
            # all ranks must stop after the same batch, or the others would wait forever in
            # the next gradient all-reduce. One tiny all-reduce a step; on one device, none.
            signum = _largest_on_any_rank(trainer, self.received or 0)
        if not signum or self._at_epoch_end:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            self._at_epoch_end = signum  # every rank decides alike: they share batch_idx
            return
        # Lightning logs this batch's step metrics only after this hook; log them now so the
        # last finished step is in TensorBoard too (the resumed run continues after it).
        trainer._logger_connector.update_train_step_metrics()
        self._save(trainer)
        self._stop(trainer, signum)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After validation and the best checkpoint, in the state Lightning resumes from as an
        # epoch's end; the stop itself waits until the epoch's metrics have been logged.
        if self._at_epoch_end:
            self._save(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._at_epoch_end:  # the first hook after the last epoch's end was logged
            self._stop(trainer, self._at_epoch_end)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._at_epoch_end:  # that epoch was the last (max_epochs or early stopping)
            self._stop(trainer, self._at_epoch_end)

    def _save(self, trainer: pl.Trainer) -> None:
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        flush_held_checkpoints(trainer)  # on disk before the process says it saved
        if isinstance(trainer.checkpoint_callback, ModelCheckpoint):
            trainer.checkpoint_callback.last_model_path = str(path)

    def _stop(self, trainer: pl.Trainer, signum: int) -> None:
        for logger in trainer.loggers:
            logger.save()
        name = signal.Signals(signum).name + ("" if self.received == signum else " on another rank")
        raise TrainingInterrupted(
            f"stopped by {name} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"saved {last_checkpoint_path(trainer)}; resume with --ckpt_path last",
            signum,
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.received = signum
        if signum == signal.SIGTERM and self._trainer is not None:
            # Lightning chains its own SIGTERM handler before this one; its flag would end the
            # process with exit status 0 and nothing saved at the next point it checks (mid-
            # validation, or the end of an epoch this callback lets finish). The signal is ours.
            self._trainer._signal_connector.received_sigterm = False
        rank_zero_info(
            f"\n{signal.Signals(signum).name}: saving last.ckpt after this batch "
            "(after the epoch's end if it is the epoch's last), then stopping"
        )


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def _largest_on_any_rank(trainer: pl.Trainer, value: int) -> int:
    """The largest `value` over all ranks (a signal number, 0 for none); every rank must call it."""
    mine = torch.tensor(value, device=trainer.strategy.root_device)
    return int(trainer.strategy.reduce(mine, reduce_op="max"))
