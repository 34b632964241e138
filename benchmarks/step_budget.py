"""Where a train.py training step spends the time a bare PyTorch loop does not.

    python benchmarks/step_budget.py [--photos DIR] [--epochs 6] [-- extra train.py options]

Runs train.py's path (configs/mlp_article.yaml, logging on, as in perf.py section 1) and
times, inside every training step after the first epoch, the pieces a bare loop over
normalised float32 in memory never runs: the batch read from the memory-mapped cache, the
rest of the DataLoader's fetch, the augmentation, the uint8 -> float normalisation,
`self.log`, and each callback's per-step hooks. The bare loop's step is timed on the same
images right after, in the same process. Whatever is left of the difference is
Lightning's own loop: hook dispatch, the closure, optimizer and scheduler wrappers.
Wrapping every piece in a timer adds a few microseconds to each, so the shares are
slightly high; they are for finding the big items, not for the headline ratio.
"""

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perf_train import CONFIG, fetch_timer, raw_loop_like  # noqa: E402  (after the repo root is on the path)

PHOTOS = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"
STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
)


class StepClock(Callback):
    """Training time of epochs 1.. (epoch 0 warms up); `timing` is on only inside them.

    `fetch_spent` is fetch_timer's running total; its growth inside timed epochs is kept too.
    """

    def __init__(self, epochs: int, fetch_spent: list[float]) -> None:
        self.epochs, self.fetch_spent, self.timing = epochs, fetch_spent, False
        self.seconds = self.fetch_seconds = 0.0
        self.steps = 0
        self._start = self._fetch_start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.timing = trainer.current_epoch >= 1
        self._start, self._fetch_start = time.perf_counter(), self.fetch_spent[0]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += self.timing

    def on_validation_start(self, trainer, pl_module) -> None:
        # Lightning validates right after the epoch's last batch, before on_train_epoch_end.
        if self.timing:
            self.seconds += time.perf_counter() - self._start
            self.fetch_seconds += self.fetch_spent[0] - self._fetch_start
        self.timing = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True  # the config's max_epochs (and snapshot cadence) stays


@contextlib.contextmanager
def timed(owner: object, name: str, label: str, spent: dict[str, float], clock: StepClock) -> Iterator[None]:
    """Adds the seconds spent in owner.name to spent[label] while clock.timing is on."""
    original: Callable = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if clock.timing:
                spent[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        # A wrapper set on an instance is removed; one set on a class gets the original back.
        if isinstance(owner, type):
            setattr(owner, name, original)
        else:
            delattr(owner, name)


def measure(photos: str, work: Path, epochs: int, extra_args: list[str]) -> dict:
    from lightning.pytorch import LightningModule

    from datasets import CatsDogsDataModule
    from datasets.dataset import CachedImageDataset
    from models.classifier import CatsDogsClassifier
    from train import CatsDogsCLI

    args = ["--config", str(CONFIG), "--data.root", photos, "--data.cache_dir", str(work / "cache"),
            "--trainer.logger.init_args.save_dir", str(work / "runs"), *extra_args]  # fmt: skip
    spent: dict[str, float] = defaultdict(float)
    quiet = logging.getLogger("lightning.pytorch")
    quiet.setLevel(logging.WARNING)
    with (
        open(work / "train.log", "w") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
        fetch_timer() as fetch,
        contextlib.ExitStack() as stack,
    ):
        cli = CatsDogsCLI(CatsDogsClassifier, CatsDogsDataModule, args=args, run=False)
        clock = StepClock(epochs, fetch)
        pieces = [
            (CachedImageDataset, "__getitems__", "batch read from the memory-mapped cache"),
            (CatsDogsDataModule, "on_after_batch_transfer", "augmentation (random flips)"),
            (CatsDogsClassifier, "normalize", "uint8 -> normalised float32"),
            (LightningModule, "log", "self.log (train/loss_step, on the steps Lightning writes)"),
        ]
        pieces += [
            (callback, hook, f"{type(callback).__name__}.{hook}")
            for callback in cli.trainer.callbacks
            for hook in STEP_HOOKS
            if hasattr(callback, hook)
        ]
        for owner, name, label in pieces:
            stack.enter_context(timed(owner, name, label, spent, clock))
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    raw = raw_loop_like(cli.trainer, cli.model)
    raw.epoch()  # warm-up
    raw_steps = -(-len(raw.x) // raw.batch_size)
    raw_step = statistics.median(raw.epoch() for _ in range(5)) / raw_steps
    # The DataLoader's whole __next__, less the batch read timed on its own: the rest of it.
    spent["DataLoader fetch"] = clock.fetch_seconds - spent["batch read from the memory-mapped cache"]
    return {
        "step": clock.seconds / clock.steps,
        "raw_step": raw_step,
        "spent": dict(spent),
        "steps": clock.steps,
    }


def render(result: dict) -> str:
    step, raw_step, steps = result["step"], result["raw_step"], result["steps"]
    rows = sorted(
        ((label, seconds / steps) for label, seconds in result["spent"].items()), key=lambda r: -r[1]
    )
    rows = [(label, per_step) for label, per_step in rows if per_step >= 5e-6]
    named = sum(per_step for _, per_step in rows)
    lines = [
        f"train.py step {step * 1e3:.2f} ms, bare loop step {raw_step * 1e3:.2f} ms "
        f"(ratio {raw_step / step:.1%}), {steps} steps timed",
        "",
        "| piece of a train.py step | ms per step | share of the step |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {per_step * 1e3:.2f} | {per_step / step:.1%} |" for label, per_step in rows]
    rest = step - raw_step - named
    label = "rest: Lightning's loop, closure, wrappers (by difference)"
    lines.append(f"| {label} | {rest * 1e3:.2f} | {rest / step:.1%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(PHOTOS), help="split_folders photos (else generated ones)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs to run; the first is not timed")
    parser.add_argument("extra", nargs="*", help="train.py options after --, e.g. -- --data.batch_size 256")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="step-budget-") as temporary:
        work = Path(temporary)
        photos = args.photos
        if not Path(photos).is_dir():
            import perf_data

            photos = str(perf_data.generated_photo_set(work))
        print(render(measure(photos, work, args.epochs, args.extra)))


if __name__ == "__main__":
    main()
