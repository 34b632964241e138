"""A torch Dataset over the memory-mapped cache: photo i is row i, decoded once, long ago."""

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class CachedImages(Dataset):
    """Rows `indices` of the cache as (uint8 image (3, S, S), int64 label, 1 = cat).

    The DataLoader fetches a whole batch at once (`__getitems__`): one read of the cache,
    then `transform` (torchvision.transforms.v2) on each uint8 image and, with `hflip`,
    a left-right mirror of a random half of the batch, in the DataLoader's worker processes
    when there are any. `batch_collate` is the collate_fn that goes with it.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        transform: Callable[[Tensor], Tensor] | None = None,
        hflip: bool = False,
    ) -> None:
        self.images = images  # (N, 3, S, S) uint8, usually a read-only np.memmap
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform, self.hflip = transform, hflip

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        images, labels = self.__getitems__([i])
        return images[0], labels[0]

    def __getitems__(self, positions: list[int]) -> tuple[Tensor, Tensor]:
        rows = self.indices[positions]
        images = torch.from_numpy(self.images[rows])  # (B, 3, S, S), a copy of the read-only memmap
        if self.transform is not None:
            images = torch.stack([self.transform(image) for image in images])
        if self.hflip:
            # A mirrored cat is still a cat. On the batch at once: per photo, torchvision's
            # RandomHorizontalFlip costs 75 us, which was a fifth of the article MLP's epoch.
            mirrored = torch.rand(len(images)) < 0.5
            images[mirrored] = images[mirrored].flip(-1)
        return images, self.labels[rows]

    def __getstate__(self) -> dict:
        # Workers started by spawn or forkserver receive the dataset pickled, and a pickled
        # memmap is a full copy of every photo: send the file name and map it again there.
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap) and self.images.filename:
            state["images"] = os.fspath(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], str):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)


def batch_collate(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The DataLoader's collate_fn for CachedImages: its batches come out stacked already."""
    return batch
