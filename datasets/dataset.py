"""A torch Dataset over the memory-mapped cache: photo i is row i, decoded once, long ago."""

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class CachedImages(Dataset):
    """Rows `indices` of the cache as (uint8 image (3, S, S), int64 label, 1 = cat).

    `transform` (torchvision.transforms.v2) runs on each uint8 image, in the DataLoader's
    worker processes when there are any.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        indices: np.ndarray,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.images = images  # (N, 3, S, S) uint8, usually a read-only np.memmap
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        row = self.indices[i]
        image = torch.from_numpy(np.array(self.images[row]))  # a copy: the memmap is read-only
        return (self.transform(image) if self.transform else image), self.labels[row]

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
