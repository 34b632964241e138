"""Resuming a run: find its latest `last.ckpt`, and carry the global RNG across the restart.

Lightning restores weights, optimiser, scheduler, loops and callbacks from a
checkpoint; the global torch RNG (dropout) it does not. `RestoreRNG` stores it as
a uint8 tensor, which `torch.load(weights_only=True)` accepts, and puts it back
just before the first resumed training batch, after the sanity check and any
other start-up work that may have drawn from it.
"""

import re
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from models.checkpoint import CheckpointError
from training.atomic_checkpoint_io import AtomicCheckpointIO, flush_held_checkpoints

LAST = "last.ckpt"
_VERSION = re.compile(r"version_(\d+)$")


def find_last_checkpoint(save_dir: str | Path, name: str) -> tuple[Path, int]:
    """The `last.ckpt` of the highest `<save_dir>/<name>/version_<n>` that has one, and n."""
    runs = Path(save_dir) / name
    found = []
    for folder in runs.glob("version_*"):
        match = _VERSION.search(folder.name)
        if match and (folder / "checkpoints" / LAST).is_file():
            found.append((int(match.group(1)), folder / "checkpoints" / LAST))
    if not found:
        raise CheckpointError(
            f"--ckpt_path last: no {runs}/version_*/checkpoints/{LAST} to resume; "
            "train once without --ckpt_path, or pass a checkpoint file"
        )
    version, path = max(found)
    return path, version


def run_version(checkpoint: str | Path, save_dir: str | Path, name: str) -> int | None:
    """n when `checkpoint` lies in `<save_dir>/<name>/version_<n>/checkpoints/`, else None."""
    folder = Path(checkpoint).resolve().parent
    match = _VERSION.search(folder.parent.name)
    if folder.name == "checkpoints" and match and folder.parent.parent == (Path(save_dir) / name).resolve():
        return int(match.group(1))
    return None


class RestoreRNG(pl.Callback):
    """Saves the global CPU RNG state in every checkpoint and restores it on resume."""

    def __init__(self) -> None:
        self._pending: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"torch_cpu_rng": torch.get_rng_state()}  # (5056,) uint8
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda_rng"] = torch.cuda.get_rng_state()  # dropout on the GPU draws from this
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        if "torch_cpu_rng" in self._pending:
            torch.set_rng_state(self._pending["torch_cpu_rng"])
        if "torch_cuda_rng" in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state(self._pending["torch_cuda_rng"])
        self._pending = None


class MarkResumeInTensorBoard(pl.Callback):
    """On resume, writes TensorBoard's "session restarted here" event at the resumed step.

    Steps a killed run logged after its last checkpoint are logged again by the
    resumed run; TensorBoard drops the orphaned ones at this marker (as it did for
    TensorFlow restarts), so the run shows one continuous step sequence.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is None or not trainer.is_global_zero:
            return  # other DDP ranks write no events (their logger's experiment is a stand-in)
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        # The next step anything logs: TensorBoard's x-axis is the optimiser step count.
        step = trainer.global_step
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            file_writer = getattr(writer, "file_writer", None)
            if isinstance(logger, TensorBoardLogger) and file_writer is not None:
                file_writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))


class RestoreMonitoredMetrics(pl.Callback):
    """Carries the latest logged metrics (val/loss, val/acc...) across a restart.

    A checkpoint saved at the end of validation resumes just before that epoch's
    end hooks; EarlyStopping and friends then read `trainer.callback_metrics`,
    which a fresh process would not have. Scalars only: weights_only-safe.
    """

    def __init__(self) -> None:
        self._pending: dict[str, torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        metrics = {k: v.detach().cpu() for k, v in self._trainer_metrics().items() if v.numel() == 1}
        return {"callback_metrics": metrics}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict.get("callback_metrics", {}))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if _validates_every_epoch(trainer):
            # Save at validation end, before the epoch-end hooks, rather than inside them:
            # Lightning resumes a checkpoint saved inside on_train_epoch_end by running
            # those hooks a second time (EarlyStopping would count the epoch twice).
            for callback in trainer.checkpoint_callbacks:
                if isinstance(callback, ModelCheckpoint) and callback._save_on_train_epoch_end is None:
                    callback._save_on_train_epoch_end = False
        if self._pending:
            for key, value in self._pending.items():
                trainer.callback_metrics.setdefault(key, value.to(pl_module.device))
            self._pending = None

    def _trainer_metrics(self) -> dict[str, torch.Tensor]:
        trainer = getattr(self, "_trainer", None)
        return dict(trainer.callback_metrics) if trainer is not None else {}


def _validates_every_epoch(trainer: pl.Trainer) -> bool:
    sizes = getattr(trainer.datamodule, "split_sizes", {}) if trainer.datamodule is not None else {}
    has_val = sizes.get("val", 1) > 0 and trainer.limit_val_batches != 0
    return has_val and trainer.check_val_every_n_epoch == 1 and trainer.val_check_interval == 1.0


class KeepLastCheckpointCurrent(Checkpoint):
    """Keeps `last.ckpt` at most `every_seconds` behind, and current when training ends.

    ModelCheckpoint(save_last=True) skips last.ckpt in epochs that save no top-k
    checkpoint, so a crash could cost many epochs. A Checkpoint subclass runs after
    every ModelCheckpoint (Lightning orders them last, in order), so it sees their
    final state for the epoch and only fills the gap: at an epoch's end, once
    `every_seconds` have passed since last.ckpt was written; at the end of training,
    whatever the time. Why not every epoch: the article MLP's checkpoint (weights and
    AdamW's state) is 77 MB, and on 2,000 photos an epoch takes half a second, so
    writing it every epoch took ~8% of the run's time and up to 3 GB of disk writes a run, on
    saves that only a hard crash (SIGKILL, power cut) would ever read; Ctrl-C and
    SIGTERM save on the spot (SaveOnInterrupt). With every_seconds=0 it writes every
    epoch; an epoch longer than every_seconds does too.

    The same bound holds for best.ckpt: it sets train.py's AtomicCheckpointIO to hold
    a save made within every_seconds of the last write in memory (write-behind), writes
    what it holds at an epoch's end once every_seconds have passed, and at the end.
    """

    def __init__(self, every_seconds: float = 60.0) -> None:
        if every_seconds < 0:
            raise ValueError(f"KeepLastCheckpointCurrent: every_seconds must be >= 0, got {every_seconds}")
        self.every_seconds = every_seconds
        self._written_at = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        checkpoint_io = trainer.strategy.checkpoint_io
        if stage == "fit" and isinstance(checkpoint_io, AtomicCheckpointIO):
            checkpoint_io.write_behind_seconds = self.every_seconds

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._written_at = time.monotonic()  # the checkpoint resumed from, or nothing to lose yet

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_gap(trainer, at_train_epoch_end=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fill_gap(trainer, at_train_epoch_end=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Early stopping, max_time or max_steps ended the run between two timed saves:
        # `--ckpt_path last` with a larger max_epochs must continue from the end.
        for callback in self._keeping_last(trainer):
            if not callback._should_skip_saving_checkpoint(trainer):  # skips when already written this step
                callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        flush_held_checkpoints(trainer)  # the end of training is on disk when fit returns

    def _fill_gap(self, trainer: pl.Trainer, at_train_epoch_end: bool) -> None:
        callbacks = [
            c
            for c in self._keeping_last(trainer)
            if c._should_save_on_train_epoch_end(trainer) == at_train_epoch_end
        ]
        checkpoint_io = trainer.strategy.checkpoint_io
        if isinstance(checkpoint_io, AtomicCheckpointIO):
            checkpoint_io.flush_if_due()  # a held best.ckpt goes to disk within every_seconds too
        if any(c._last_global_step_saved == trainer.global_step for c in callbacks):
            self._written_at = time.monotonic()  # a new best: ModelCheckpoint saved last.ckpt with it
        stale = [c for c in callbacks if not c._should_skip_saving_checkpoint(trainer)]
        if not stale:
            return
        max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1  # -1: no limit
        final_epoch = max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs
        due = final_epoch or time.monotonic() - self._written_at >= self.every_seconds
        # Every DDP rank must take the same branch (a save waits at a barrier): rank 0's clock decides.
        if not trainer.strategy.broadcast(due):
            return
        for callback in stale:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        self._written_at = time.monotonic()

    @staticmethod
    def _keeping_last(trainer: pl.Trainer) -> list[ModelCheckpoint]:
        return [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last]
