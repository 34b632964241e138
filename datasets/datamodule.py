"""The LightningDataModule: folder of photos -> decode-once cache -> uint8 batches.

Batches are (images uint8 (B, 3, S, S), labels int64 (B,), 1 = cat). Pixels stay uint8
all the way to the device, a quarter of the bytes of float32; the model turns them into
x with the channel mean and std measured here on the training split.
"""

import os
import warnings
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from datasets.cache import Cache, ensure_cache
from datasets.dataset import CachedImages, batch_collate
from datasets.download import download_petimages
from datasets.errors import DataError
from datasets.layouts import LAYOUTS, list_entries, resolve_layout
from datasets.splits import split_indices
from models.labels import CAT

# torchdata's StatefulDataLoader lets Lightning resume an epoch where a Ctrl-C stopped it
# (same order, no photo trained twice); torchdata 0.11 calls a torch function that torch
# 2.9+ marks deprecated, once per loader, which says nothing about this project.
warnings.filterwarnings("ignore", message=r"'set_vital' is deprecated", category=UserWarning)
from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402

STATS_CHUNK_IMAGES = 512  # photos per read when measuring channel statistics


class CatsDogsDataModule(L.LightningDataModule):
    """Cats-vs-dogs photos as uint8 batches, decoded once into a cache.

    Args:
        root: Folder with the photos (any supported layout). Leave empty to download
            Microsoft's Kaggle Cats and Dogs archive (787 MiB) into download_dir.
        layout: "auto" to detect it, or one of class_folders, split_folders, kaggle_flat, oxford_pet.
        image_size: Side S of the square photos, in pixels (8 to 512): shorter side resized
            to S, then centre-cropped.
        batch_size: Photos per batch.
        val_fraction: Share of the training photos held out for validation, in [0, 0.5).
        test_fraction: Share of the photos held out for testing, in [0, 0.5); ignored when
            the source has its own test folder or list.
        hflip: Mirror each training photo left-right with probability 0.5.
        crop_scale: Random resized crop of each training photo: the range of the crop's share
            of the photo's area, e.g. [0.35, 1.0]; null keeps whole photos.
        auto_augment: A random colour/geometry operation per training photo: "trivial"
            (TrivialAugmentWide), "randaugment" (RandAugment) or "none".
        seed: Seed of the split and the training order; 0 to 2**32 - 1.
        num_workers: DataLoader worker processes (0 loads in the main process). null: 0 on a
            CPU, where workers take cores from the training itself (docs/scaling.md measures
            it), and the CPU cores shared out among the devices on a GPU, where augmenting
            in the main process would leave the GPU waiting. The cache build uses every CPU
            core regardless.
        cache_dir: Folder for decoded-image caches.
        download_dir: Where the archive is downloaded and extracted when root is empty.
    """

    def __init__(
        self,
        root: str | None = None,
        layout: str = "auto",
        image_size: int = 64,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        hflip: bool = True,
        crop_scale: tuple[float, float] | None = None,
        auto_augment: Literal["none", "trivial", "randaugment"] = "none",
        seed: int = 0,
        num_workers: int | None = None,
        cache_dir: str = "data/cache",
        download_dir: str = "data",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Everything cheap is checked here, so a typo fails before any download or decoding.
        if layout != "auto" and layout not in LAYOUTS:
            raise DataError(f"unknown data.layout '{layout}'; choose auto or one of {', '.join(LAYOUTS)}")
        for name, value, allowed, in_range in (
            ("image_size", image_size, "8 to 512", 8 <= image_size <= 512),
            ("batch_size", batch_size, "1 or more", batch_size >= 1),
            ("num_workers", num_workers, "0 or more, or null", num_workers is None or num_workers >= 0),
            ("seed", seed, f"0 to {2**32 - 1}", 0 <= seed < 2**32),
            ("val_fraction", val_fraction, "in [0, 0.5)", 0 <= val_fraction < 0.5),
            ("test_fraction", test_fraction, "in [0, 0.5)", 0 <= test_fraction < 0.5),
        ):
            if not in_range:
                raise DataError(f"data.{name} {value} is out of range; pass a value {allowed}")
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise DataError(
                f"data.crop_scale {list(crop_scale)} must be [low, high] with 0 < low <= high <= 1"
            )
        if root is not None:
            if not os.path.isdir(root):
                problem = "is not a folder" if os.path.exists(root) else "does not exist"
                raise DataError(f"data.root '{root}' {problem}; pass --data.root DIR with the photos")
            self.layout = resolve_layout(root, layout)
        elif layout not in ("auto", "class_folders"):
            raise DataError(f"data.layout {layout} needs --data.root; the download is class_folders")
        else:
            self.layout = "class_folders"
        self.train_transform = train_transform(image_size, crop_scale, auto_augment)
        self.cache: Cache | None = None
        self.manifest_hash: str | None = None  # the cache key: which files, sizes and labels
        self.channel_mean: torch.Tensor | None = None  # (3,) in [0, 1] units, training split
        self.channel_std: torch.Tensor | None = None
        self.splits: dict[str, np.ndarray] = {}

    @property
    def batch_size(self) -> int:
        """Photos per batch, on each process."""
        return self.hparams.batch_size

    @property
    def train_photos(self) -> int:
        """Photos in the training split; 0 before setup."""
        return len(self.splits.get("train", ()))

    @property
    def val_labels(self) -> torch.Tensor:
        """The validation photos' labels (1 = cat), in val_dataloader's order; after setup."""
        return torch.as_tensor(self.cache.labels[self.splits["val"]], dtype=torch.int64)

    def prepare_data(self) -> None:
        cache = self._cache()  # downloads and decodes, once per machine
        message = f"cache: {len(cache.labels)} photos at {cache.directory}"
        if cache.skipped:
            message += f"; {len(cache.skipped)} unreadable files skipped, listed in {cache.skipped_report}"
        rank_zero_info(message)

    def setup(self, stage: str | None = None) -> None:
        cache = self._cache()  # built by prepare_data: this only loads it
        hp = self.hparams
        self.splits = split_indices(
            cache.content_hashes, cache.source_splits, hp.val_fraction, hp.test_fraction, hp.seed
        )
        if len(self.splits["train"]) == 0:
            raise DataError(
                f"no training photos left in data.root '{self._root()}': every photo is also in "
                "the held-out test folder; add training photos"
            )
        self.cache, self.manifest_hash = cache, cache.key
        self.channel_mean, self.channel_std = channel_stats(cache.images, self.splits["train"])

    def train_dataloader(self) -> DataLoader:
        loader = StatefulDataLoader(
            self._split("train", self.train_transform, hflip=self.hparams.hflip),
            batch_size=self.hparams.batch_size,
            collate_fn=batch_collate,
            shuffle=True,  # Lightning sees it, and under DDP shuffles each rank's share
            **self.loader_settings(),
        )
        # The order depends on data.seed alone. Seeded on the sampler, not as the loader's
        # generator: torchdata draws the loader's per-epoch seed from that one too, and a
        # mid-epoch resume would then go on in another order from the next epoch.
        loader.sampler.generator.manual_seed(self.hparams.seed)
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def loader_settings(self) -> dict[str, int | bool]:
        """The DataLoader options that depend on where the batches go (see num_workers)."""
        trainer = self.trainer  # None outside Lightning: loaders as on a CPU
        on_cpu = trainer is None or isinstance(trainer.accelerator, CPUAccelerator)
        workers = self.hparams.num_workers
        if workers is None:
            workers = 0 if on_cpu else max(1, available_cpus() // trainer.num_devices)
        return {
            "num_workers": workers,
            # Workers kept between epochs, the evaluation loaders' too, rather than started
            # again for every validation pass.
            "persistent_workers": workers > 0,
            # Page-locked batches copy to the GPU asynchronously, while the step runs.
            "pin_memory": trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator),
        }

    def summary(self) -> str:
        """A few lines for the log: source, split and class counts, skipped files, cache."""
        if self.cache is None:
            return f"data: {self.hparams.root or 'download'} ({self.layout}); not set up yet"
        labels = self.cache.labels
        lines = [f"data: {self._root()} ({self.layout}), {len(labels)} photos"]
        for name, indices in self.splits.items():
            cats = int((labels[indices] == CAT).sum())
            lines.append(f"  {name:5s} {len(indices):6d} photos: {cats} cats, {len(indices) - cats} dogs")
        dropped = len(labels) - sum(len(indices) for indices in self.splits.values())
        if dropped:
            lines.append(f"  {dropped} training copies of test photos dropped")
        lines.append(
            f"skipped: {len(self.cache.skipped)} unreadable files, listed in {self.cache.skipped_report}"
        )
        return "\n".join(lines)

    def _evaluation_loader(self, split: str) -> DataLoader:
        photos = self._split(split)
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each photo on exactly one rank. Lightning's default DistributedSampler repeats
            # photos to even out the ranks, which would count them twice in val/acc.
            sampler = UnrepeatedDistributedSampler(photos, shuffle=False)
        return DataLoader(
            photos,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            collate_fn=batch_collate,
            **self.loader_settings(),
        )

    def _split(self, split: str, transform: v2.Transform | None = None, hflip: bool = False) -> CachedImages:
        return CachedImages(self.cache.images, self.cache.labels, self.splits[split], transform, hflip)

    def _root(self) -> Path:
        if self.hparams.root is not None:
            return Path(self.hparams.root)
        return download_petimages(self.hparams.download_dir)  # no network once extracted

    def _cache(self) -> Cache:
        root = self._root()
        entries = list_entries(root, self.layout)
        return ensure_cache(root, entries, self.hparams.image_size, self.hparams.cache_dir, name=self.layout)


def available_cpus() -> int:
    """The CPU cores this process may run on (a container or taskset may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def train_transform(
    image_size: int, crop_scale: tuple[float, float] | None, auto_augment: str
) -> v2.Transform | None:
    """The per-photo training augmentation, on uint8 tensors (3, S, S); None when there is none.
    (The mirror, data.hflip, is CachedImages', on a whole batch at once.)"""
    steps: list[v2.Transform] = []
    if crop_scale is not None:
        steps.append(v2.RandomResizedCrop(image_size, scale=tuple(crop_scale), antialias=True))
    if auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif auto_augment == "randaugment":
        steps.append(v2.RandAugment())
    return v2.Compose(steps) if steps else None


def channel_stats(images: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over the photos `indices`, in [0, 1] units, read in chunks."""
    total = np.zeros(3, dtype=np.float64)
    total_squares = np.zeros(3, dtype=np.float64)
    for start in range(0, len(indices), STATS_CHUNK_IMAGES):
        chunk = images[indices[start : start + STATS_CHUNK_IMAGES]].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))  # (3,)
        total_squares += np.square(chunk).sum(axis=(0, 2, 3))
    count = max(1, len(indices) * images.shape[2] * images.shape[3])
    mean = total / count
    std = np.sqrt(np.maximum(total_squares / count - mean**2, 0.0))  # Var = E[x^2] - E[x]^2
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
