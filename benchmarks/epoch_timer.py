"""A callback that records how long each training epoch takes, start to start, everything in
between included (validation, checkpoints, TensorBoard snapshots). benchmarks/epoch_time.py
adds it to train.py runs with --trainer.callbacks+=epoch_timer.EpochTimer; the times go as
JSON to the file named by $EPOCH_TIMES_OUT."""

import json
import os
import time

import lightning.pytorch as pl


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        intervals = [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]
        photos = len(trainer.train_dataloader.dataset)
        with open(os.environ["EPOCH_TIMES_OUT"], "w") as out:
            json.dump({"epoch_seconds": intervals, "train_photos": photos}, out)
