"""Test-time flip averaging: a mirrored cat is still a cat, so ask the network twice.

Shared by the classifier (val, test, predict_step) and the deployable pipeline (predict.py,
explain.py, exports), so every path reports the same p_cat for the same photo.
"""

from torch import Tensor, nn


def flip_averaged_logits(network: nn.Module, x: Tensor, enabled: bool) -> Tensor:
    """Normalised images x (B, 3, H, W) -> z (B,): network(x), or the mean of network(x) and
    network(x mirrored left-right) when `enabled`.

    Averaging logits (not probabilities) keeps z a sum of the two passes' W x + b terms.
    """
    z = network(x)
    if enabled:
        z = (z + network(x.flip(-1))) / 2
    return z
