"""The fixed probe batch: the first validation images, the same ones every epoch.

Histograms of Z and A only compare across epochs when they are computed on the same
images, so the probe is taken once, from the start of the (unshuffled) validation set.
"""

from collections.abc import Iterable
from typing import NamedTuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor


class Probe(NamedTuple):
    images: Tensor  # (P, C, H, W) uint8, what the LightningModule's forward takes
    labels: Tensor  # (P,) 1.0 = cat


def take_probe(batches: Iterable, size: int) -> Probe | None:
    """The first `size` (images, labels) pairs of an iterable of batches; None if it is empty."""
    images, labels, taken = [], [], 0
    for batch in batches:
        batch_images, batch_labels = batch[0], batch[1]
        images.append(batch_images[: size - taken])
        labels.append(batch_labels[: size - taken])
        taken += len(images[-1])
        if taken >= size:
            break
    if taken == 0:
        return None
    return Probe(torch.cat(images), torch.cat(labels).float())


def validation_batches(trainer: pl.Trainer) -> Iterable | None:
    """The validation batches, identical on every rank; None when there are none yet.

    The datamodule's own loader comes first: under DDP the trainer's copy gets a
    DistributedSampler that would hand each rank different images.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        try:
            return datamodule.val_dataloader()
        except MisconfigurationException:
            pass  # the datamodule has no val_dataloader: fall back to what the trainer holds
    loaders = trainer.val_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    elif isinstance(loaders, dict):
        loaders = next(iter(loaders.values()), None)
    return loaders
