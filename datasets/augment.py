"""Batched training augmentation on uint8 image tensors: no per-image PIL work after the cache.

One affine grid per image does the random resized crop and the horizontal flip together,
so a whole batch is augmented by a single `grid_sample` on whatever device holds it.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_SEED_PRIME = 1_000_003
_SEED_SPACE = 2**64  # torch.Generator.manual_seed takes seeds below this


def augmentation_seed(seed: int, epoch: int, batch_index: int, rank: int = 0) -> int:
    """The seed of one training batch's augmentation: a function of these numbers alone.

    So a resumed run augments exactly as an uninterrupted one would, and under DDP each
    rank draws its own flips and crops (rank 0's seeds are those of a single process).
    Taken modulo 2**64, so every data.seed (0 to 2**32 - 1) works, not only small ones.
    """
    step_seed = (seed * _SEED_PRIME + epoch) * _SEED_PRIME + batch_index
    if rank:
        step_seed = step_seed * _SEED_PRIME + rank
    return step_seed % _SEED_SPACE


def augment_batch(
    images: Tensor,
    generator: torch.Generator,
    hflip: bool = True,
    crop_scale: tuple[float, float] | None = None,
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    overwrite: bool = False,
) -> Tensor:
    """uint8 (B, 3, S, S) -> uint8 (B, 3, S, S), randomly cropped/resized and/or mirrored.

    `crop_scale` is the range of the crop's share of the image area (torchvision's
    RandomResizedCrop convention); None keeps the whole image. Random numbers come
    from `generator` (on the CPU), so the same seed gives the same batch anywhere.
    `overwrite=True` lets flips happen in `images` itself, for a caller that owns the
    batch (it saves a copy of it on every training step).
    """
    batch = images.shape[0]
    flip = torch.rand(batch, generator=generator) < 0.5 if hflip else torch.zeros(batch, dtype=torch.bool)
    if crop_scale is None:
        out = images if overwrite else images.clone()
        # Each run of consecutive chosen images is mirrored as one slice, in place: on 2 CPU
        # cores 0.26 ms for 128 64x64 images, against 1.2 ms for index_select + index_copy_
        # (and 0.8 ms for a torch.where over a mirrored copy of the whole batch).
        for start, stop in _runs(flip.tolist()):
            out[start:stop] = out[start:stop].flip(-1)
        return out

    area = _uniform(batch, *crop_scale, generator)  # (B,) share of the image kept
    log_ratio = _uniform(batch, math.log(crop_ratio[0]), math.log(crop_ratio[1]), generator)
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # (B,) crop side / image side
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    # Crop centres in the [-1, 1] coordinates of affine_grid, kept inside the image.
    centre_x = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - height)
    sign_x = torch.where(flip, -1.0, 1.0)  # a negative x scale reads the crop mirrored
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = width * sign_x
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)  # (B, S, S, 2)
    resampled = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return resampled.round_().clamp_(0, 255).to(torch.uint8)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _runs(mask: list[bool]) -> list[tuple[int, int]]:
    """[start, stop) of every run of consecutive True values in `mask`."""
    runs, start = [], None
    for index, chosen in enumerate([*mask, False]):  # the sentinel closes a run at the end
        if chosen and start is None:
            start = index
        elif not chosen and start is not None:
            runs.append((start, index))
            start = None
    return runs
