"""A patch MLP: every patch of the photo through the same Z = W x + b, then their mean."""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
from models.patches import image_patches
from models.registry import register_model


class PatchMLP(ZooNetwork):
    """Patches -> one DenseLayer, the same W for every patch -> mean over patches -> one logit."""

    def __init__(
        self, image_size: int = 64, in_channels: int = 3, patch_size: int = 8, width: int = 32
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.patch_fc = DenseLayer(in_channels * patch_size * patch_size, width, "relu")
        self.head = nn.Linear(width, 1)  # z = w a + b: one logit

    def layers(self) -> dict[str, Layer]:
        """What each W mixes and what its x is, under the names TensorBoard and explain.py show."""
        return {
            "patch_fc": Layer(self.patch_fc, "patch_pixels", "the patches above"),
            "head": Layer(self.head, "features", "A averaged over all patches"),
        }

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        patches = image_patches(x, self.patch_size).flatten(1, 2)  # (B, N, C*p*p)
        z, a = self.patch_fc.forward_with_z(patches)  # (B, N, width)
        self.record(record, self.patch_fc, z, a)
        z = self.head(a.mean(dim=1)).squeeze(-1)  # (B,)
        self.record(record, self.head, z, torch.sigmoid(z))  # A of the output layer is p_cat
        return z


register_model(PatchMLP, name="patch_mlp")
