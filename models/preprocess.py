"""The input layer's preparation: uint8 pixels -> the normalised x the first Z = W x + b sees."""

from typing import Literal

import torch
from torch import Tensor

InputNorm = Literal["dataset", "per_image"]
INPUT_NORMS = ("dataset", "per_image")
MIN_PIXEL_STD = 1.0  # per_image: a flat photo (std ~0) is divided by at most one grey level


def normalize_images(
    images: Tensor, channel_mean: Tensor, channel_std: Tensor, input_norm: InputNorm = "dataset"
) -> Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, H, W).

    "dataset": (x/255 - mean) / std per channel, with the training split's statistics.
    "per_image": (x - m) / s with m, s the mean and std of each photo's own pixels (all
    channels together, so colour stays), which takes out brightness and contrast: for a
    network that reads raw pixels they are noise.

    In-place ops on the fresh float copy: on 2 CPU cores `torch.addcmul` with a broadcast
    (1, 3, 1, 1) scale and shift took 4.3 ms for a batch of 128 64x64 images, these 0.14 ms.
    """
    x = images.to(channel_mean.dtype, copy=True)  # a new tensor, so the in-place ops touch no caller data
    if input_norm == "per_image":
        std, mean = torch.std_mean(x, dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1) each
        return x.sub_(mean).div_(std.clamp_min_(MIN_PIXEL_STD))
    scale = (1.0 / (255.0 * channel_std)).view(1, -1, 1, 1)
    shift = (-channel_mean / channel_std).view(1, -1, 1, 1)
    return x.mul_(scale).add_(shift)
