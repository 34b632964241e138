"""Cutting images and token grids into patches: reshapes only, no parameters."""

from torch import Tensor


def image_patches(x: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, H/p, W/p, C*p*p): each patch flattened the way the MLP flattens an image."""
    p = patch_size
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(b, h // p, w // p, c * p * p)


def merge_neighbours(h: Tensor) -> Tensor:
    """(B, H, W, C) -> (B, H/2, W/2, 4C): each 2x2 group of tokens concatenated into one."""
    b, height, width, c = h.shape
    h = h.reshape(b, height // 2, 2, width // 2, 2, c).permute(0, 1, 3, 2, 4, 5)  # (B, H/2, W/2, 2, 2, C)
    return h.reshape(b, height // 2, width // 2, 4 * c)
