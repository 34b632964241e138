"""The LightningDataModule: folder of photos -> decode-once cache -> uint8 batches.

Batches are (x uint8 (B, 3, S, S), y float32 (B,), 1.0 = cat). Pixels stay uint8
all the way to the device, a quarter of the bytes of float32; the model scales
them with `channel_mean` and `channel_std`, which are measured on the train split.
"""

import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Sampler

from datasets.augment import augment_batch, augmentation_seed
from datasets.cache import CacheInfo, ensure_cache
from datasets.dataset import CachedImageDataset, EpochShuffleSampler, identity_collate
from datasets.download import download_petimages
from datasets.errors import DataError
from datasets.layouts import CAT, LAYOUTS, list_entries, resolve_layout
from datasets.splits import split_indices

STATS_CHUNK_IMAGES = 512  # images per read when measuring channel statistics


class CatsDogsDataModule(L.LightningDataModule):
    """Cats-vs-dogs photos as uint8 batches, decoded once into a cache.

    Args:
        root: Folder with the photos (any supported layout). Leave empty to
            download Microsoft's Kaggle Cats and Dogs archive into download_dir.
        layout: "auto" to detect it, or one of class_folders, split_folders,
            kaggle_flat, oxford_pet.
        image_size: Side S of the square images, in pixels (8 to 512): shorter
            side resized to S, then centre-cropped.
        batch_size: Images per batch.
        val_fraction: Share of the training photos held out for validation, in [0, 0.5).
        test_fraction: Share of the photos held out for testing, in [0, 0.5); ignored
            when the source has its own test folder or list.
        hflip: Randomly flip half of each training batch left-right.
        crop_scale: Random resized crop of each training image: the range of the crop's
            share of the image area, e.g. [0.5, 1.0]; null keeps whole images.
        seed: Seed of the split, the training shuffle and the augmentation; 0 to 2**32 - 1.
        num_workers: DataLoader worker processes (0 loads in the main process);
            the cache build uses every CPU core regardless.
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
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str = "data/cache",
        download_dir: str = "data",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # Everything cheap is checked here, so a typo fails before any download
        # or decoding starts.
        if layout != "auto" and layout not in LAYOUTS:
            raise DataError(f"unknown data.layout '{layout}'; choose auto or one of {', '.join(LAYOUTS)}")
        if not 8 <= image_size <= 512:
            raise DataError(f"data.image_size {image_size} is out of range; pass 8 to 512")
        if batch_size < 1:
            raise DataError(f"data.batch_size {batch_size} must be at least 1")
        if num_workers < 0:
            raise DataError(f"data.num_workers {num_workers} must be 0 or more")
        if not 0 <= seed < 2**32:  # numpy's and seed_everything's range
            raise DataError(f"data.seed {seed} is out of range; pass 0 to {2**32 - 1}")
        if crop_scale is not None and not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise DataError(
                f"data.crop_scale {list(crop_scale)} must be [low, high] with 0 < low <= high <= 1"
            )
        for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= fraction < 0.5:
                raise DataError(f"data.{name} {fraction} is out of range; pass a value in [0, 0.5)")
        if root is not None:
            if not os.path.exists(root):
                raise DataError(f"data.root '{root}' does not exist; pass --data.root DIR with the photos")
            if not os.path.isdir(root):
                raise DataError(f"data.root '{root}' is not a folder; pass --data.root DIR with the photos")
            self.layout = resolve_layout(root, layout)
        elif layout not in ("auto", "class_folders"):
            raise DataError(f"data.layout {layout} needs --data.root; the download is class_folders")
        else:
            self.layout = "class_folders"
        self.cache_info: CacheInfo | None = None
        self._verified_key: str | None = None
        self.manifest_hash: str | None = None
        self.split_sizes: dict[str, int] = {}
        self.channel_mean: torch.Tensor | None = None  # (3,) in [0, 1] units, train split
        self.channel_std: torch.Tensor | None = None
        self._splits: dict[str, np.ndarray] = {}
        self._datasets: dict[str, CachedImageDataset] = {}
        self._train_sampler: EpochShuffleSampler | None = None
        self._resume_skip = 0  # samples of the resumed epoch a mid-epoch checkpoint already trained on
        self._resume_epoch: int | None = None  # the epoch a resumed run trains first

    def prepare_data(self) -> None:
        info = self._cache(progress=True)
        message = f"cache: {len(info.labels)} images at {info.directory}"
        if info.skipped:
            message += f"; {len(info.skipped)} unreadable files skipped, listed in {info.skipped_report}"
        rank_zero_info(message)

    def setup(self, stage: str | None = None) -> None:
        info = self._cache(progress=False)  # built by prepare_data: this only loads it
        splits = split_indices(
            info.content_hashes,
            info.source_splits,
            self.hparams.val_fraction,
            self.hparams.test_fraction,
            self.hparams.seed,
        )
        if len(splits["train"]) == 0:
            raise DataError(
                f"no training photos left in data.root '{self._root()}': every photo is also in "
                "the held-out test folder; add training photos"
            )
        self.cache_info, self.manifest_hash, self._splits = info, info.key, splits
        self.split_sizes = {name: len(indices) for name, indices in splits.items()}
        self._datasets = {
            name: CachedImageDataset(info.images, info.labels, indices) for name, indices in splits.items()
        }
        self.channel_mean, self.channel_std = _channel_stats(info.images, splits["train"])

    def train_dataloader(self) -> DataLoader:
        # The order of epoch e comes from seed + e alone (Lightning calls set_epoch), so a
        # resumed run sees the same batches as an uninterrupted one.
        self._train_sampler = EpochShuffleSampler(
            len(self._datasets["train"]), self.hparams.seed, **(self._shard() or {})
        )
        # On resume, the epoch comes from the checkpoint's datamodule state: Lightning builds and
        # starts this loader's first iterator before it restores its loops (current_epoch is
        # still 0) and calls set_epoch, and worker processes fetch ahead from that first iterator.
        epoch = self._resume_epoch
        if epoch is None:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self._train_sampler.set_epoch(epoch)
        self._train_sampler.skip_next(self._resume_skip)
        self._resume_skip, self._resume_epoch = 0, None
        return self._loader("train", sampler=self._train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", sampler=self._evaluation_shard("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", sampler=self._evaluation_shard("test"))

    def _evaluation_shard(self, split: str) -> Sampler | None:
        """Under DDP, this rank's share of a val or test split: every photo exactly once.

        Lightning's default DistributedSampler repeats photos until every rank has as
        many, so a split of 201 photos on 2 ranks would be scored as 202, one counted
        twice. Lightning's UnrepeatedDistributedSampler lets the ranks' shares differ
        by one photo instead; evaluation needs no equal step counts (its metrics are
        synchronised once, at the epoch's end) as long as every rank has a photo, so a
        split smaller than the number of ranks keeps the default. None outside DDP.
        """
        shard = self._shard()
        if not shard or len(self._datasets[split]) < shard["num_replicas"]:
            return None
        return UnrepeatedDistributedSampler(self._datasets[split], shuffle=False, **shard)

    def _shard(self) -> dict[str, int] | None:
        """This process's num_replicas and rank under DDP, else None."""
        return self.trainer.distributed_sampler_kwargs if self.trainer is not None else None

    def on_after_batch_transfer(
        self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        augmenting = self.hparams.hflip or self.hparams.crop_scale is not None
        if not (augmenting and self.trainer is not None and self.trainer.training):
            return batch
        x, y = batch  # (B, 3, S, S) uint8, (B,)
        # The augmentation depends only on (seed, epoch, batch index, rank), never on the
        # global RNG, so a resumed run augments exactly as an uninterrupted one would.
        batch_idx = self.trainer.fit_loop.epoch_loop.batch_progress.current.ready  # this batch's index
        step_seed = augmentation_seed(
            self.hparams.seed, self.trainer.current_epoch, batch_idx, self.trainer.global_rank
        )
        generator = torch.Generator().manual_seed(step_seed)
        crop_scale = tuple(self.hparams.crop_scale) if self.hparams.crop_scale is not None else None
        # x is this step's own batch, fresh from CachedImageDataset (or its copy on the device).
        augmented = augment_batch(x, generator, self.hparams.hflip, crop_scale, overwrite=True)
        return augmented, y

    def state_dict(self) -> dict[str, int]:
        # Where training goes on from: the epoch, and the samples of it this rank has already
        # trained on (under DDP every rank has trained on as many). Nonzero only for a
        # checkpoint saved mid-epoch (an interrupt), whose resume skips them on every rank
        # instead of repeating them; once an epoch's batches are all done, the next epoch.
        if self.trainer is None:
            return {"train_samples_seen": 0}
        batches = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= self.trainer.num_training_batches:
            return {"epoch": self.trainer.current_epoch + 1, "train_samples_seen": 0}
        return {"epoch": self.trainer.current_epoch, "train_samples_seen": batches * self.hparams.batch_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_skip = int(state_dict.get("train_samples_seen", 0))
        self._resume_epoch = state_dict.get("epoch")  # absent in checkpoints of earlier versions

    def summary(self) -> str:
        """A few lines for the log: source, split and class counts, skipped files, cache."""
        if self.cache_info is None:
            return f"data: {self.hparams.root or 'download'} ({self.layout}); not set up yet"
        info = self.cache_info
        lines = [f"data: {self._root()} ({self.layout}), {len(info.labels)} images"]
        for name, indices in self._splits.items():
            cats = int((info.labels[indices] == CAT).sum())
            lines.append(f"  {name:5s} {len(indices):6d} images: {cats} cats, {len(indices) - cats} dogs")
        dropped = len(info.labels) - sum(self.split_sizes.values())
        if dropped:
            lines.append(f"  {dropped} training copies of test photos dropped")
        lines.append(f"skipped: {len(info.skipped)} unreadable files, listed in {info.skipped_report}")
        lines.append(f"cache: {info.directory}")
        return "\n".join(lines)

    def _root(self) -> Path:
        if self.hparams.root is not None:
            return Path(self.hparams.root)
        return download_petimages(self.hparams.download_dir)  # no network once extracted

    def _cache(self, progress: bool) -> CacheInfo:
        root = self._root()
        info = ensure_cache(
            root,
            list_entries(root, self.layout),
            self.hparams.image_size,
            self.hparams.cache_dir,
            progress=progress,
            name=self.layout,
            verified_key=self._verified_key,
        )
        self._verified_key = info.key  # checked (or just built) by this process: no need again
        return info

    def _loader(self, split: str, sampler: Sampler | None = None) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self._datasets[split],
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            # A loader's own generator (only used for worker seeds) keeps it from drawing
            # from the global RNG, whose state a checkpoint restores for dropout.
            generator=torch.Generator().manual_seed(self.hparams.seed),
            num_workers=workers,
            persistent_workers=workers > 0,
            collate_fn=identity_collate,
            drop_last=False,
        )


def _channel_stats(images: np.ndarray, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over `indices`, in [0, 1] units, read in chunks."""
    total = np.zeros(3, dtype=np.float64)
    total_squares = np.zeros(3, dtype=np.float64)
    for start in range(0, len(indices), STATS_CHUNK_IMAGES):
        chunk = images[indices[start : start + STATS_CHUNK_IMAGES]].astype(np.float64) / 255.0
        total += chunk.sum(axis=(0, 2, 3))  # (3,)
        total_squares += np.square(chunk).sum(axis=(0, 2, 3))
    count = max(1, len(indices) * images.shape[2] * images.shape[3])
    mean = total / count
    # Var = E[x^2] - E[x]^2 in float64: exact enough for pixels in [0, 1].
    std = np.sqrt(np.maximum(total_squares / count - mean**2, 0.0))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
