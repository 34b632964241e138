"""Test accuracy after every epoch, against training seconds: the benchmark's curve, never a choice.

Only benchmarks/time_to_accuracy.py adds this callback. Nothing in training reads what it
measures: the best epoch is still chosen on val/acc, so a run with it trains exactly as
one without it. Its own test passes are left out of the seconds it reports.
"""

import time

import lightning.pytorch as pl
import torch
from torchmetrics.classification import BinaryAccuracy

# About this many test passes a run (50 at 100 epochs, where k rounds to 2): enough to see when
# a curve crosses 65 / 70 / 75 / 80%.
POINTS = 40


class TestCurve(pl.Callback):
    """Appends {epoch, seconds, val_acc, test_acc} to `points` after every k-th epoch's validation,
    k = max_epochs / POINTS rounded (every epoch for runs under 60 epochs), and after the last."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []
        self.fit_start = 0.0
        self.own_seconds = 0.0  # time spent in the test passes below, left out of `seconds`

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs before any weight-averaging callback swaps the raw weights back (time_to_accuracy
        # puts it first), so it tests the very weights validation just scored.
        every = max(1, round((trainer.max_epochs or 1) / POINTS))
        last = trainer.current_epoch + 1 == trainer.max_epochs
        if trainer.sanity_checking or not (last or (trainer.current_epoch + 1) % every == 0):
            return
        started = time.perf_counter()
        seconds = started - self.fit_start - self.own_seconds
        accuracy = BinaryAccuracy(threshold=pl_module.model.threshold).to(pl_module.device)
        with torch.no_grad():  # pl_module is in eval mode here: TTA and dropout as in testing
            for images, labels in trainer.datamodule.test_dataloader():
                accuracy.update(pl_module.model(images.to(pl_module.device)), labels.to(pl_module.device))
        self.points.append(
            {
                "epoch": trainer.current_epoch + 1,
                "seconds": seconds,
                "val_acc": float(trainer.callback_metrics["val/acc"]),
                "test_acc": float(accuracy.compute()),
            }
        )
        self.own_seconds += time.perf_counter() - started
