"""The deployable network: uint8 pixels in, p_cat out, in one plain nn.Module.

    p_cat = sigmoid(network((x / 255 - mean) / std))

It holds the zoo network and the training split's channel statistics, nothing from
Lightning, so the same module is traced to ONNX and TorchScript and rebuilt from a
safetensors file with `models.create_model` alone.
"""

import torch
from torch import Tensor, nn

from models.preprocess import normalize_images


class PCatPipeline(nn.Module):
    """uint8 images (B, 3, S, S) -> p_cat (B,): the classifier's normalisation, network and sigmoid."""

    def __init__(self, network: nn.Module, channel_mean: Tensor, channel_std: Tensor) -> None:
        super().__init__()
        self.network = network
        # Same buffer names as the classifier's, so its state dict loads here unchanged.
        self.register_buffer("channel_mean", channel_mean.detach().clone().float())
        self.register_buffer("channel_std", channel_std.detach().clone().float())

    def forward(self, images: Tensor) -> Tensor:
        return torch.sigmoid(self.network(self.normalize(images)))  # (B,) p_cat

    def normalize(self, images: Tensor) -> Tensor:
        """The classifier's own normalisation (models.preprocess), so both give the same x."""
        return normalize_images(images, self.channel_mean, self.channel_std)
