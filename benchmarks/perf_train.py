"""Training figures: the machine's matmul peak, a bare PyTorch loop, and train.py's real path.

Every figure is a ratio against a baseline measured in the same process, because on a
shared 2-core machine absolute times drift by 2-10x from one minute to the next. The real
path runs a bare-loop epoch right before each of its own epochs (PairedEpochs), so every
real epoch has a baseline taken under the same load; medians of the paired ratios and
best-of times are both reported.
"""

import contextlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data.dataloader import _BaseDataLoaderIter

from models import create_model
from models.preprocess import normalize_images
from training.atomic_checkpoint_io import AtomicCheckpointIO

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"


def _article_settings() -> tuple[dict, float, float, str, int]:
    """configs/mlp_article.yaml's network, optimiser, input norm and image size, for the bare loop."""
    config = yaml.safe_load(CONFIG.read_text())
    model = config["model"]
    settings = model["network_kwargs"], model["lr"], model["weight_decay"], model["input_norm"]
    return *settings, config["data"]["image_size"]


NETWORK_KWARGS, LR, WEIGHT_DECAY, INPUT_NORM, IMAGE_SIZE = _article_settings()
HIDDEN_DIMS = tuple(NETWORK_KWARGS["hidden_dims"])


def matmul_peak_gflops(size: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """float32 GFLOP/s of a large torch.mm (2 n^3 FLOPs), best of `trials`."""
    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: MKL picks its kernel
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best / 1e9


class RawLoop:
    """The baseline: the same MLP and AdamW in a bare loop over normalised float32 already in memory.

    No shuffling, no logging, no metrics, no augmentation: contiguous slices of one tensor,
    the fastest a training epoch of this network can be in PyTorch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        hidden_dims: tuple[int, ...] = HIDDEN_DIMS,
        fused: bool = True,
    ) -> None:
        self.x, self.y, self.batch_size = x.contiguous(), y.float(), batch_size  # (N, 3, S, S), (N,)
        torch.manual_seed(0)
        kwargs = {**NETWORK_KWARGS, "hidden_dims": list(hidden_dims)}
        self.model = create_model("mlp", image_size=x.shape[-1], **kwargs)
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=LR, fused=fused)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    @classmethod
    def from_uint8(cls, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int, **kwargs):
        """Normalised once, up front, the way the config's model.input_norm says."""
        return cls(normalised(images, mean, std), torch.as_tensor(labels), batch_size, **kwargs)

    @classmethod
    def random(cls, num_images: int, batch_size: int, image_size: int = IMAGE_SIZE, **kwargs):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(num_images, 3, image_size, image_size, generator=generator)
        return cls(x, torch.rand(num_images, generator=generator) < 0.5, batch_size, **kwargs)

    def epoch(self) -> float:
        """Seconds for one pass over all images."""
        self.model.train()
        start = time.perf_counter()
        for i in range(0, len(self.x), self.batch_size):
            logits = self.model(self.x[i : i + self.batch_size])  # (B,)
            loss = F.binary_cross_entropy_with_logits(logits, self.y[i : i + self.batch_size])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - start

    @torch.no_grad()
    def validate(self, x: torch.Tensor) -> float:
        """Seconds for one forward pass over `x` (normalised float32) in eval mode, loss included."""
        self.model.eval()
        start = time.perf_counter()
        for i in range(0, len(x), self.batch_size):
            logits = self.model(x[i : i + self.batch_size])
            F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
        return time.perf_counter() - start

    def gflops(self, seconds: float) -> float:
        # forward 2PN + backward 4PN; the first layer's unneeded dL/dx makes this a slight overcount
        return 6 * self.parameters * len(self.x) / seconds / 1e9


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32 x, as the config's model.input_norm says."""
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
    return normalize_images(pixels, mean, std, INPUT_NORM)


def raw_loop_like(trainer, pl_module) -> RawLoop:
    """A bare loop over the images of train.py's training split, with its network, batch and optimizer."""
    dataset = trainer.train_dataloader.dataset  # CachedImageDataset over the memory-mapped cache
    order = np.sort(dataset.indices)
    datamodule = trainer.datamodule
    return RawLoop.from_uint8(
        dataset.images[order],
        dataset.labels[order],
        datamodule.channel_mean,
        datamodule.channel_std,
        datamodule.hparams.batch_size,
        hidden_dims=tuple(pl_module.hparams.network_kwargs["hidden_dims"]),
        fused=bool(trainer.optimizers[0].defaults.get("fused")),
    )


@contextlib.contextmanager
def fetch_timer():
    """Seconds spent inside DataLoader's __next__ (sampler, dataset read, collate), accumulated."""
    spent = [0.0]
    original = _BaseDataLoaderIter.__next__

    def timed_next(self):
        start = time.perf_counter()
        try:
            return original(self)
        finally:
            spent[0] += time.perf_counter() - start

    _BaseDataLoaderIter.__next__ = timed_next
    try:
        yield spent
    finally:
        _BaseDataLoaderIter.__next__ = original


@contextlib.contextmanager
def checkpoint_timer():
    """Seconds spent saving checkpoints (Trainer.save_checkpoint, and writing held saves), accumulated."""
    spent, depth = [0.0], [0]  # depth: a flush inside a save is counted once, in the save
    patched = [
        (pl.Trainer, "save_checkpoint"),
        (AtomicCheckpointIO, "flush"),
        (AtomicCheckpointIO, "flush_if_due"),
    ]
    originals = [getattr(owner, name) for owner, name in patched]

    def timed(original):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start

        return wrapper

    for (owner, name), original in zip(patched, originals, strict=True):
        setattr(owner, name, timed(original))
    try:
        yield spent
    finally:
        for (owner, name), original in zip(patched, originals, strict=True):
            setattr(owner, name, original)


class PairedEpochs(Callback):
    """Times train.py's epochs; before each one runs a bare-loop epoch on the same images.

    full epoch = this epoch's start to the next one's (training, validation, checkpoints,
    TensorBoard snapshots, progress bar); training = start to the last batch's end.
    The bare loop's epoch is timed twice over: training alone, and training plus a forward
    pass over the same validation images train.py validates on (the like-for-like baseline
    of a full epoch: a hand-written loop that never validates cannot pick a best epoch).
    Stops the run after `epochs` epochs, so the config's max_epochs (and with it the
    schedule and the snapshot cadence) stays as configured.
    """

    def __init__(
        self,
        epochs: int,
        fetch_spent: list[float],
        with_raw: bool = True,
        checkpoint_spent: list[float] | None = None,
    ) -> None:
        self.epochs, self.fetch_spent, self.with_raw = epochs, fetch_spent, with_raw
        self.checkpoint_spent = checkpoint_spent if checkpoint_spent is not None else [0.0]
        self.raw: RawLoop | None = None
        self.raw_val_x: torch.Tensor | None = None
        self.records: list[dict] = []
        self._start = self._fetch_start = self._last_batch_end = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        dataset = trainer.train_dataloader.dataset  # CachedImageDataset over the memory-mapped cache
        self.num_images = len(dataset)
        if self.with_raw:
            self.raw = raw_loop_like(trainer, pl_module)
            datamodule = trainer.datamodule
            val = datamodule.val_dataloader().dataset  # the same CachedImageDataset train.py validates on
            val_images = val.images[np.sort(val.indices)]
            self.raw_val_x = normalised(val_images, datamodule.channel_mean, datamodule.channel_std)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._close_epoch()
        raw = self.raw.epoch() if self.raw is not None else None
        raw_val = self.raw.validate(self.raw_val_x) if self.raw is not None else None
        self.records.append({"epoch": trainer.current_epoch, "raw": raw, "raw_val": raw_val})
        self._fetch_start = self.fetch_spent[0]
        self._checkpoint_start = self.checkpoint_spent[0]
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last_batch_end = time.perf_counter()
        self.records[-1]["fetch"] = self.fetch_spent[0] - self._fetch_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.records[-1]["train"] = self._last_batch_end - self._start
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._close_epoch()  # appended last, so this runs after every other callback's on_train_end

    def _close_epoch(self) -> None:
        if self.records and "full" not in self.records[-1]:
            self.records[-1]["full"] = time.perf_counter() - self._start
            self.records[-1]["checkpoint"] = self.checkpoint_spent[0] - self._checkpoint_start


def real_run(
    root: str,
    cache_dir: str,
    run_dir: str,
    epochs: int,
    extra_args: list[str] = (),
    with_raw: bool = True,
    drop_callbacks: tuple[type, ...] = (),
) -> dict:
    """train.py's CLI with configs/mlp_article.yaml (logging, checkpoints, callbacks as configured).

    `extra_args` are train.py options on top of the config; callbacks of the `drop_callbacks`
    types are taken out of the trainer before it fits (benchmarks/feature_cost.py).
    """
    from datasets import CatsDogsDataModule
    from models.classifier import CatsDogsClassifier
    from train import CatsDogsCLI

    args = [
        "--config",
        str(CONFIG),
        "--data.root",
        root,
        "--data.cache_dir",
        cache_dir,
        "--trainer.logger.init_args.save_dir",
        run_dir,
        "--trainer.default_root_dir",  # where checkpoints and config.yaml go when the logger is off
        run_dir,
        *extra_args,
    ]
    log = Path(run_dir) / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The progress bar still draws every batch (the default); it just draws into a file.
    quiet = logging.getLogger("lightning.pytorch")  # its model summary goes to the terminal's own stream
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    with open(log, "a") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        cli = CatsDogsCLI(
            CatsDogsClassifier,
            CatsDogsDataModule,
            args=args,
            run=False,
            save_config_kwargs={"overwrite": True},
        )
        callbacks = cli.trainer.callbacks
        callbacks[:] = [c for c in callbacks if not isinstance(c, drop_callbacks)]
        with fetch_timer() as spent, checkpoint_timer() as checkpoint_spent:
            timer = PairedEpochs(epochs, spent, with_raw, checkpoint_spent)
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    quiet.setLevel(level)
    checkpoint = cli.trainer.checkpoint_callback
    return {
        "records": timer.records[1:],  # epoch 0 warms up (first allocations, first snapshot)
        "num_images": timer.num_images,
        "parameters": sum(p.numel() for p in cli.model.parameters()),
        "best_checkpoint": checkpoint.best_model_path if checkpoint else None,
        "batch_size": cli.datamodule.hparams.batch_size,
    }


def summarise_paired(run: dict) -> dict:
    """Images/s and ratios to the bare loop of a real_run.

    The ratios are total time over total time (`*_ratio`): what a run's throughput is,
    with the costs that come only every few epochs (TensorBoard snapshots, a checkpoint
    when val/acc improves or last.ckpt falls a minute behind) counted where they fall.
    The medians of the per-epoch paired ratios (`*_ratio_median`) leave those epochs out.
    """
    records, n = run["records"], run["num_images"]
    full = [r["full"] for r in records]
    train = [r["train"] for r in records]
    raw = [r["raw"] for r in records if r["raw"] is not None]
    out = {
        "epochs": len(records),
        "images": n,
        "full_best": n / min(full),
        "train_best": n / min(train),
        "fetch_fraction": statistics.median(r["fetch"] / r["full"] for r in records),
        "fetch_fraction_of_training": statistics.median(r["fetch"] / r["train"] for r in records),
        # Total over total, like the ratios: saves come only in the epochs that improve val/acc.
        "checkpoint_seconds": sum(r["checkpoint"] for r in records),
        "checkpoint_fraction": sum(r["checkpoint"] for r in records) / sum(full),
    }
    if raw:
        raw_with_val = [r["raw"] + r["raw_val"] for r in records]
        out["raw_best"] = n / min(raw)
        out["raw_with_val_best"] = n / min(raw_with_val)
        out["full_ratio"] = sum(raw) / sum(full)
        out["train_ratio"] = sum(raw) / sum(train)
        out["full_vs_val_ratio"] = sum(raw_with_val) / sum(full)
        out["full_ratio_median"] = statistics.median(r["raw"] / r["full"] for r in records)
        out["train_ratio_median"] = statistics.median(r["raw"] / r["train"] for r in records)
        out["full_vs_val_ratio_median"] = statistics.median(
            (r["raw"] + r["raw_val"]) / r["full"] for r in records
        )
    return out


def batch_size_sweep(batch_sizes: list[int], num_images: int, rounds: int) -> dict:
    """Bare loop GFLOP/s per batch size (and two ablations at the first batch size), best of rounds.

    The peak is measured in every round too, interleaved, and its best is the reference.
    """
    first = batch_sizes[0]
    variants = {f"bs {bs}": (bs, True, None) for bs in batch_sizes}
    variants[f"bs {first}, for-loop AdamW"] = (first, False, None)
    variants[f"bs {first}, 1 thread"] = (first, True, 1)
    best = dict.fromkeys(variants, 0.0)
    peak = 0.0
    threads = torch.get_num_threads()
    loops = {name: RawLoop.random(num_images, bs, fused=fused) for name, (bs, fused, _) in variants.items()}
    for loop in loops.values():
        loop.epoch()  # warm-up
    for _ in range(rounds):
        # The peak is the best torch.mm at 1 or all threads: while other jobs hold a core, one
        # thread can beat two (every parallel region waits for the descheduled thread).
        for num_threads in sorted({1, threads}):
            torch.set_num_threads(num_threads)
            peak = max(peak, matmul_peak_gflops())
        torch.set_num_threads(threads)
        for name, (_, _, num_threads) in variants.items():
            torch.set_num_threads(num_threads or threads)
            try:
                best[name] = max(best[name], loops[name].gflops(loops[name].epoch()))
            finally:
                torch.set_num_threads(threads)
    return {"peak": peak, "gflops": best, "threads": threads, "parameters": loops[f"bs {first}"].parameters}


def scaling(
    roots: dict[str, str],
    cache_dir: str,
    work: Path,
    epochs: int,
    widths: dict[str, list[int]],
    width_root: str,
) -> list[dict]:
    """Epoch time of the real path vs number of images (width x1) and vs hidden width (one size)."""
    rows = []
    plan = [(name, root, "x1", list(HIDDEN_DIMS)) for name, root in roots.items()]
    plan += [
        (width_root, roots[width_root], factor, dims) for factor, dims in widths.items() if factor != "x1"
    ]
    for size_name, root, factor, dims in plan:
        run = real_run(
            root,
            cache_dir,
            str(work / f"scale-{size_name}-{factor}"),
            epochs,
            ["--model.network_kwargs", json.dumps({**NETWORK_KWARGS, "hidden_dims": dims})],
            with_raw=False,
        )
        train = min(r["train"] for r in run["records"])
        full = min(r["full"] for r in run["records"])
        rows.append(
            {
                "images": run["num_images"],
                "width": factor,
                "hidden_dims": dims,
                "parameters": run["parameters"],
                "train_s": train,
                "full_s": full,
                "us_per_image": 1e6 * train / run["num_images"],
            }
        )
        print(f"  scaling {size_name} {factor}: {rows[-1]}", file=sys.stderr)
    return rows
