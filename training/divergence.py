"""Stop on a NaN or infinite training loss before it reaches the weights or a checkpoint."""

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor


class TrainingDiverged(Exception):
    """The training loss is NaN or infinite; the message names the step and the last good checkpoint."""


class StopOnNonFiniteLoss(pl.Callback):
    """Raises TrainingDiverged before the backward pass of a non-finite loss.

    Checked before backward, so the optimiser never applies the step: the weights
    in memory and every checkpoint on disk are from the last finite step. Nothing
    is saved on the way out (see SaveOnInterrupt, which only acts on signals).
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        callback = trainer.checkpoint_callback
        last_good = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {_batch_index(trainer)})"
        kept = f"last good checkpoint {last_good} is untouched" if last_good else "no checkpoint saved yet"
        raise TrainingDiverged(
            f"training loss is {loss.item()} at {where}; stopped before the update, {kept}; "
            "lower --model.lr or add --model.warmup_epochs and train again"
        )


def _batch_index(trainer: Any) -> int:
    return trainer.fit_loop.epoch_loop.batch_idx
