"""What one layer is doing, as numbers: histograms, dead and saturated units, activation names.

Everything here is plain torch on whatever device the tensors live on, so the callback
never copies a 12,288 x 512 weight matrix to the CPU just to summarise it.
"""

from typing import NamedTuple

import torch
from torch import Tensor, nn

# A ReLU-like unit outputs A <= 0 exactly when its input is <= 0; if that holds for every
# probe image the unit passes no gradient to W and has stopped learning: it is dead.
RELU_LIKE = ("relu", "leaky_relu", "gelu", "silu")
# Sigmoid and tanh have flat tails: within 0.01 of a limit their slope is below ~0.01
# (sigmoid) or ~0.02 (tanh), so a unit stuck there on every probe image barely learns.
SATURATION_LIMITS = {"sigmoid": (0.01, 0.99), "tanh": (-0.99, 0.99)}


class Histogram(NamedTuple):
    """TensorBoard's HistogramProto fields; `bucket_limits` are right edges (see `histogram`)."""

    min: float
    max: float
    num: int
    sum: float
    sum_squares: float
    bucket_limits: list[float]
    bucket_counts: list[int]


def histogram(values: Tensor, bins: int) -> Histogram | None:
    """Counts of `values` in `bins` equal-width buckets between their min and max.

    Bucket i holds edges[i] <= v < edges[i+1] (the last one also holds the max), exactly
    `numpy.histogram(values, edges)`. TensorBoard stores only right edges, so a leading
    empty bucket carries the left edge, as `torch.utils.tensorboard` does.
    Non-finite values are left out; None when nothing finite is left.
    """
    values = values.detach().reshape(-1).float()
    total = values.sum()
    if not torch.isfinite(total):  # one pass less than isfinite(values).all() in the usual case
        values = values[torch.isfinite(values)]
        total = values.sum()
    if values.numel() == 0:
        return None
    low, high = (bound.item() for bound in torch.aminmax(values))
    edge_range = (low, high) if low < high else (low - 0.5, high + 0.5)  # a constant tensor
    if values.device.type == "cpu":
        counts, edges = torch.histogram(values, bins=bins, range=edge_range)  # (bins,), (bins + 1,)
    else:  # torch.histogram is CPU-only; bucketize applies the same edges on the GPU
        edges = torch.linspace(*edge_range, bins + 1, device=values.device)  # (bins + 1,)
        index = torch.bucketize(values, edges[1:-1], right=True)  # (N,) in [0, bins)
        counts = torch.bincount(index, minlength=bins)  # (bins,)
    return Histogram(
        min=low,
        max=high,
        num=values.numel(),
        sum=total.item(),
        sum_squares=torch.linalg.vector_norm(values).item() ** 2,
        bucket_limits=edges.tolist(),
        bucket_counts=[0, *counts.long().tolist()],
    )


def dead_fraction(a: Tensor) -> float:
    """Share of units (the last dim of A) that are <= 0 on every image (and every token)."""
    dead = (a.reshape(-1, a.shape[-1]) <= 0).all(dim=0)  # (units,); tokens of a mixer count as images
    return dead.float().mean().item()


def saturated_fraction(a: Tensor, activation: str) -> float:
    """Share of sigmoid/tanh units (the last dim of A) within 0.01 of a limit on every image."""
    low, high = SATURATION_LIMITS[activation]
    a = a.reshape(-1, a.shape[-1])  # (B * tokens, units)
    saturated = ((a < low) | (a > high)).all(dim=0)  # (units,) stuck in either tail
    return saturated.float().mean().item()


def activation_names(model: nn.Module) -> dict[str, str | None]:
    """The activation g of each layer in `model.linear_layers()`, None where it is not known.

    Found generically: the module that owns a layer's nn.Linear as `.linear` and has an
    `activation_name` (models.DenseLayer does). A bare linear head has none.
    """
    owner_activation = {
        id(module.linear): module.activation_name
        for module in model.modules()
        if isinstance(getattr(module, "linear", None), nn.Linear) and hasattr(module, "activation_name")
    }
    return {name: owner_activation.get(id(linear)) for name, linear in model.linear_layers().items()}
