"""How each layer's W moves during training: gradient norms, weight norms, update ratios.

Measured around the optimizer step (the gradient before it, W before and after it) and
written to TensorBoard after it, so a step's scalars share Lightning's step number.
"""

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter

from callbacks import scalar_layout


class LayerMotion:
    """||dL/dW|| on logging steps; ||W|| and ||W_after - W_before|| / ||W_before|| when asked."""

    def __init__(self) -> None:
        self._grad_norms: dict[str, float] = {}
        self._weights_before: dict[str, Tensor] = {}  # W before a snapshot epoch's last optimizer step
        self._update_ratio_pending = False

    @property
    def pending(self) -> bool:
        """Whether the last before_step measured anything for after_step to write."""
        return bool(self._grad_norms)

    def before_step(self, layers: dict[str, nn.Linear], grad_norms: bool, weights: bool) -> None:
        """Called before the optimizer step with the layers that have a gradient."""
        if grad_norms:
            # One fused norm over every layer and one sync, not a kernel and an .item() per layer.
            norms = torch._foreach_norm([linear.weight.grad for linear in layers.values()])
            self._grad_norms = dict(zip(layers, torch.stack(norms).tolist(), strict=True))
        if weights:
            # ||W_after - W_before|| needs W_before: copied into buffers kept from epoch to epoch,
            # because a fresh 25 MB allocation per layer costs more than the copy itself.
            for name, linear in layers.items():
                buffer = self._weights_before.get(name)
                weight = linear.weight.detach()
                if buffer is None or buffer.shape != weight.shape or buffer.device != weight.device:
                    buffer = self._weights_before[name] = weight.new_empty(weight.shape)
                buffer.copy_(weight)
            self._update_ratio_pending = True

    def after_step(self, writer: SummaryWriter, layers: dict[str, nn.Linear], step: int) -> None:
        """Called after the optimizer step: writes what before_step measured, if anything."""
        for name, linear in layers.items():
            if name not in self._grad_norms:
                continue
            writer.add_scalar(f"{name}/{scalar_layout.GRAD_NORM}", self._grad_norms[name], step)
            if self._update_ratio_pending and name in self._weights_before:
                # W moves slowly: once an epoch is enough to see the update/weight ratio.
                weight, before = linear.weight.detach(), self._weights_before[name]
                weight_norm, before_norm = weight.norm(), before.norm()
                update_norm = before.sub_(weight).norm()  # in place: the buffer is refilled next epoch
                ratio = update_norm / before_norm.clamp_min(1e-12)
                writer.add_scalar(f"{name}/{scalar_layout.WEIGHT_NORM}", weight_norm.item(), step)
                writer.add_scalar(f"{name}/{scalar_layout.UPDATE_RATIO}", ratio.item(), step)
        self._grad_norms, self._update_ratio_pending = {}, False
