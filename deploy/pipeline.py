"""The deployable network: uint8 pixels in, p_cat out, in one plain nn.Module.

    p_cat = sigmoid(network((x / 255 - mean) / std))

It holds the zoo network and the training split's channel statistics, nothing from
Lightning, so the same module is traced to ONNX and TorchScript and rebuilt from a
safetensors file with `models.create_model` alone.
"""

import torch
from torch import Tensor, nn


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
        """Exactly CatsDogsClassifier.normalize: (x/255 - mean) / std as one multiply-add.

        Written out again rather than imported because the classifier lives with
        Lightning; tests/test_export.py checks both give the same p_cat.
        """
        scale = (1.0 / (255.0 * self.channel_std)).view(1, -1, 1, 1)
        shift = (-self.channel_mean / self.channel_std).view(1, -1, 1, 1)
        return torch.addcmul(shift, images.to(scale.dtype), scale)
