"""The deployable network: uint8 pixels in, p_cat out, in one plain nn.Module.

    p_cat = sigmoid(network((x / 255 - mean) / std))

or, trained with `tta_flip`, sigmoid of the mean of that z and the mirrored photo's z, and
with `input_norm: per_image`, each photo standardised by its own mean and std instead.

It holds the zoo network and the training split's channel statistics, nothing from
Lightning, so the same module is traced to ONNX and TorchScript and rebuilt from a
safetensors file with `models.create_model` alone.
"""

import torch
from torch import Tensor, nn

from models.flip_average import flip_averaged_logits
from models.preprocess import normalize_images


class PCatPipeline(nn.Module):
    """uint8 images (B, 3, S, S) -> p_cat (B,): the classifier's normalisation, network and sigmoid."""

    def __init__(
        self,
        network: nn.Module,
        channel_mean: Tensor,
        channel_std: Tensor,
        tta_flip: bool = False,
        input_norm: str = "dataset",
    ) -> None:
        super().__init__()
        self.network = network
        self.tta_flip = tta_flip  # plain attributes: traced into ONNX/TorchScript as fixed graph
        self.input_norm = input_norm
        # Same buffer names as the classifier's, so its state dict loads here unchanged.
        self.register_buffer("channel_mean", channel_mean.detach().clone().float())
        self.register_buffer("channel_std", channel_std.detach().clone().float())

    def forward(self, images: Tensor) -> Tensor:
        return torch.sigmoid(
            flip_averaged_logits(self.network, self.normalize(images), self.tta_flip)
        )  # (B,)

    def normalize(self, images: Tensor) -> Tensor:
        """The classifier's own normalisation (models.preprocess), so both give the same x."""
        return normalize_images(images, self.channel_mean, self.channel_std, self.input_norm)
