"""How much of a training epoch the NetworkInsight callback costs, with its default settings.

Trains the model of configs/mlp_article.yaml (64x64 input, hidden [512, 256, 128], batch 128)
on synthetic uint8 images of the real run's size (1,800 train, 200 validation), once with
only Lightning's TensorBoard logging and once with NetworkInsight added, in one process,
alternating the two so that drift in the machine's speed hits both alike.

    python scripts/tensorboard_overhead.py [--repeats 2] [--every-n-epochs N]

With defaults the callback snapshots (histograms, images, curves) every
`default_every_n_epochs(max_epochs)` epochs of the config's run (5 for 40 epochs); each run
here trains 2 such periods plus a first epoch that is left out (first-touch allocations), so
the mean epoch time holds snapshot and plain epochs in the real run's proportion. The
callback's one-time work before training (graph, first snapshot) is shown on its own.
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: the project is used from its root, not installed

from callbacks import NetworkInsight  # noqa: E402
from callbacks.network_insight import default_every_n_epochs  # noqa: E402
from models.classifier import CatsDogsClassifier  # noqa: E402


class EpochTimer(pl.Callback):
    """Wall time of each training epoch, validation and every callback's epoch-end work included.

    Listed last, so its on_train_epoch_end runs after every other callback's.
    """

    def __init__(self) -> None:
        self.fit_start = 0.0
        self.first_epoch_start = 0.0
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        if not self.first_epoch_start:
            self.first_epoch_start = self._start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)


def time_hooks(callback: pl.Callback) -> dict[int, float]:
    """Seconds spent inside the callback's hooks, per epoch: its cost without the machine's noise.

    The difference of two training runs is what a user sees, but on a shared machine other
    processes add seconds to random epochs; the time inside the hooks does not depend on them.
    """
    seconds: dict[int, float] = {}
    for name in dir(pl.Callback):
        if name.startswith("on_") or name in ("setup", "teardown"):
            hook = getattr(callback, name)

            def timed(trainer: pl.Trainer, *args, _hook=hook, **kwargs):
                start = time.perf_counter()
                result = _hook(trainer, *args, **kwargs)
                epoch = trainer.current_epoch if trainer.state.stage == "train" else -1  # -1: before training
                seconds[epoch] = seconds.get(epoch, 0.0) + time.perf_counter() - start
                return result

            setattr(callback, name, timed)
    return seconds


def steady(seconds: list[float]) -> list[float]:
    """Epochs without a stall: on a shared machine another process can double an epoch's time.

    A snapshot epoch costs well under 2x a plain one, so this keeps every snapshot epoch.
    """
    limit = 2 * statistics.median(seconds)
    return [value for value in seconds if value <= limit]


def synthetic_loaders(image_size: int, batch_size: int, train_images: int, val_images: int):
    generator = torch.Generator().manual_seed(0)

    def loader(count: int, shuffle: bool) -> DataLoader:
        images = torch.randint(
            0, 256, (count, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        labels = (torch.arange(count) % 2).float()  # half cats (1), half dogs (0)
        return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=shuffle)

    return loader(train_images, True), loader(val_images, False)


def train_once(config: dict, insight: NetworkInsight | None, epochs: int, loaders, logdir: str) -> EpochTimer:
    pl.seed_everything(config["seed_everything"], verbose=False)
    model = CatsDogsClassifier(**config["model"], image_size=config["data"]["image_size"])
    timer = EpochTimer()
    callbacks = [insight, timer] if insight is not None else [timer]
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=TensorBoardLogger(
            logdir, name="with" if insight is not None else "without", default_hp_metric=False
        ),
        callbacks=callbacks,
        log_every_n_steps=config["trainer"]["log_every_n_steps"],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, *loaders)
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "mlp_article.yaml")
    parser.add_argument(
        "--every-n-epochs",
        type=int,
        default=None,
        help="snapshot cadence; default: the callback's for the config",
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs with and without the callback, alternating"
    )
    parser.add_argument("--train-images", type=int, default=1800, help="the real run's 90%% of ~2,000 photos")
    parser.add_argument("--val-images", type=int, default=200)
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    data = config["data"]
    loaders = synthetic_loaders(data["image_size"], data["batch_size"], args.train_images, args.val_images)
    every_n_epochs = args.every_n_epochs or default_every_n_epochs(config["trainer"]["max_epochs"])
    epochs = {False: [], True: []}
    hook_seconds: list[float] = []
    one_time = {False: [], True: []}
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")  # data is in memory
    with tempfile.TemporaryDirectory() as logdir:
        for repeat in range(args.repeats):
            for with_callback in (False, True):
                insight = NetworkInsight(every_n_epochs=every_n_epochs) if with_callback else None
                in_hooks = time_hooks(insight) if insight is not None else {}
                timer = train_once(config, insight, 2 * every_n_epochs + 1, loaders, f"{logdir}/{repeat}")
                hook_seconds += [in_hooks.get(epoch, 0.0) for epoch in range(1, 2 * every_n_epochs + 1)]
                epochs[with_callback] += timer.epoch_seconds[1:]
                one_time[with_callback].append(timer.first_epoch_start - timer.fit_start)

    kept = {setting: steady(seconds) for setting, seconds in epochs.items()}
    without, with_ = statistics.mean(kept[False]), statistics.mean(kept[True])
    print(f"config: {args.config.name}, {args.train_images} train / {args.val_images} val synthetic images")
    print(f"snapshot every {every_n_epochs} epochs; torch threads: {torch.get_num_threads()}")
    for name, seconds in (("without", epochs[False]), ("with", epochs[True])):
        mean, dropped = statistics.mean(steady(seconds)), len(seconds) - len(steady(seconds))
        print(
            f"epoch {name:7s} NetworkInsight: mean {mean:.3f} s ({dropped}/{len(seconds)} dropped as stalls):"
        )
        print("    " + " ".join(f"{value:.2f}" for value in seconds))
    overhead = with_ - without
    print(f"overhead per epoch: {overhead:+.3f} s = {100 * overhead / without:+.1f}% (budget 10%)")
    inside = statistics.mean(hook_seconds)
    baseline = statistics.median(epochs[False])
    print(
        f"time inside NetworkInsight's hooks: {inside:.3f} s per epoch = {100 * inside / baseline:.1f}% "
        f"of the median epoch without it ({baseline:.3f} s)"
    )
    extra_start = statistics.median(one_time[True]) - statistics.median(one_time[False])
    print(f"one-time cost before the first epoch (graph, first snapshot): {extra_start:+.3f} s")


if __name__ == "__main__":
    main()
