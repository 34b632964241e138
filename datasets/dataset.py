"""A torch Dataset over the memory-mapped cache: a batch is one sorted read."""

import itertools
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class CachedImageDataset(Dataset):
    """Images `indices` of the cache: items are (uint8 (3, S, S), float32 label, 1.0 = cat).

    DataLoader calls __getitems__ with a whole batch of indices, so a batch is
    one fancy-index read from the memmap instead of batch_size small ones. The batch
    comes back in file order, not in the order asked for: a batch is a set (the sampler's
    shuffle decides which images share one), and putting the pixels back in the asked
    order cost a second copy of them, ~0.2 ms of a ~32 ms training step. Splits are
    sorted, so validation, test and prediction batches are in the asked order anyway.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        self.images = images  # (N, 3, S, S) uint8, usually a read-only np.memmap
        self.labels = np.asarray(labels, dtype=np.float32)
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.indices[i]
        return torch.from_numpy(np.array(self.images[row])), torch.tensor(self.labels[row])

    def __getitems__(self, batch: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Read in file order: a shuffled batch becomes one forward sweep through the memmap.
        rows = np.sort(self.indices[np.asarray(batch, dtype=np.int64)])
        return torch.from_numpy(self.images[rows]), torch.from_numpy(self.labels[rows])  # (B,3,S,S), (B,)

    def __getstate__(self) -> dict:
        # Pickling a memmap copies the whole array into every spawned worker;
        # send the file name instead and map it again on the other side.
        state = self.__dict__.copy()
        if isinstance(self.images, np.memmap) and self.images.filename:
            state["images"] = os.fspath(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], str):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)


def identity_collate(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """__getitems__ already returns a collated batch; a module-level function pickles."""
    return batch


class EpochShuffleSampler(DistributedSampler):
    """A fresh permutation each epoch, drawn from `seed + epoch` alone; under DDP, this rank's share.

    Lightning calls `set_epoch` before every training epoch, so the order of
    epoch e does not depend on how many epochs this process has run: a run
    resumed from a checkpoint sees the same batches as one never interrupted.
    `skip_next` drops this rank's first samples of the next pass only, for a resume
    from a checkpoint saved in the middle of an epoch.

    The order and the DDP sharding are torch's DistributedSampler's own (a permutation
    seeded with `seed + epoch`, padded with its first samples to a multiple of the ranks,
    then every `num_replicas`-th from `rank`); this class only adds the skip. Being a
    DistributedSampler, Lightning leaves it unwrapped; wrapped, the skip of a resumed
    epoch would act on the order before sharding, and the wrapper's length, fixed when
    it is built, would not follow it.
    """

    def __init__(self, num_samples: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(num_samples), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0

    def skip_next(self, num_samples: int) -> None:
        self._skip = num_samples

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return itertools.islice(super().__iter__(), skip, None)
