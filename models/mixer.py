"""MLP-Mixer: the image as a grid of patches, mixed by nn.Linear layers only.

Token mixing applies Z = W x + b across patches (the same W for every channel), channel
mixing applies it across features (the same W for every patch); both in pre-norm
residual blocks. Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", 2021.
"""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
from models.patches import image_patches
from models.registry import ModelConfigError, register_model


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, width: int, token_hidden: int, channel_hidden: int, dropout: float):
        super().__init__()
        self.token_norm = nn.LayerNorm(width)
        self.token_fc1 = DenseLayer(tokens, token_hidden, "gelu", dropout=dropout)
        self.token_fc2 = DenseLayer(token_hidden, tokens, "identity", dropout=dropout)
        self.channel_norm = nn.LayerNorm(width)
        self.channel_fc1 = DenseLayer(width, channel_hidden, "gelu", dropout=dropout)
        self.channel_fc2 = DenseLayer(channel_hidden, width, "identity", dropout=dropout)


class Mixer(ZooNetwork):
    """Patches -> per-patch embedding -> Mixer blocks -> LN -> mean over patches -> one logit."""

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        patch_size: int = 8,
        width: int = 128,
        depth: int = 4,
        token_hidden: int = 64,
        channel_hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if patch_size < 1:
            raise ModelConfigError(f"patch_size {patch_size} must be at least 1 pixel")
        if image_size % patch_size:
            raise ModelConfigError(
                f"image_size {image_size} is not a multiple of patch_size {patch_size}; "
                f"use an image size such as {image_size - image_size % patch_size or patch_size}"
            )
        self.patch_size = patch_size
        tokens = (image_size // patch_size) ** 2
        self.embed = DenseLayer(in_channels * patch_size * patch_size, width, "identity")
        self.blocks = nn.ModuleList(
            MixerBlock(tokens, width, token_hidden, channel_hidden, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def layers(self) -> dict[str, Layer]:
        """Token layers' W mixes the patches (one row per feature), channel layers' the features
        of one patch (one row per patch)."""
        previous_a = "the previous layer's A"
        layers = {"embed": Layer(self.embed, "patch_pixels", "the patches above")}
        for i, block in enumerate(self.blocks, start=1):
            layers[f"block{i}.token_fc1"] = Layer(block.token_fc1, "tokens", "LayerNorm(h) transposed")
            layers[f"block{i}.token_fc2"] = Layer(block.token_fc2, "tokens", previous_a)
            layers[f"block{i}.channel_fc1"] = Layer(block.channel_fc1, "channels", "LayerNorm(h)")
            layers[f"block{i}.channel_fc2"] = Layer(block.channel_fc2, "channels", previous_a)
        return {**layers, "head": Layer(self.head, "features", "LayerNorm(h) averaged over all patches")}

    def patches(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, N, C*p*p): each patch flattened like the MLP flattens an image."""
        return image_patches(x, self.patch_size).flatten(1, 2)

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        z, h = self.embed.forward_with_z(self.patches(x))  # (B, N, D)
        self.record(record, self.embed, z, h)
        for block in self.blocks:
            # Token mixing: x is one feature across all N patches, so transpose to (B, D, N).
            z1, a1 = block.token_fc1.forward_with_z(block.token_norm(h).transpose(1, 2))
            self.record(record, block.token_fc1, z1, a1)
            z2, a2 = block.token_fc2.forward_with_z(a1)  # (B, D, N)
            self.record(record, block.token_fc2, z2, a2)
            h = h + a2.transpose(1, 2)  # (B, N, D)
            # Channel mixing: x is one patch's D features.
            z3, a3 = block.channel_fc1.forward_with_z(block.channel_norm(h))  # (B, N, hidden)
            self.record(record, block.channel_fc1, z3, a3)
            z4, a4 = block.channel_fc2.forward_with_z(a3)  # (B, N, D)
            self.record(record, block.channel_fc2, z4, a4)
            h = h + a4
        z = self.head(self.norm(h).mean(dim=1)).squeeze(-1)  # (B,)
        self.record(record, self.head, z, torch.sigmoid(z))
        return z


register_model(Mixer, name="mixer")
