"""Residual MLP: pre-norm residual blocks of DenseLayers on the flattened image.

h = embed(x); each block adds h <- h + W2 g(W1 LN(h) + b1) + b2; then LN and a linear head.
Skip connections let gradients reach the first layer, so depth stops hurting.
"""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
from models.registry import register_model


class ResidualBlock(nn.Module):
    """h + fc2(fc1(LN(h))): two DenseLayers, each still Z = W x + b."""

    def __init__(self, width: int, hidden: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = DenseLayer(width, hidden, activation, dropout=dropout)
        self.fc2 = DenseLayer(hidden, width, "identity", dropout=dropout)


class ResMLP(ZooNetwork):
    """Flattened image -> embedding -> residual blocks -> LN -> one logit z."""

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        width: int = 512,
        depth: int = 4,
        expansion: int = 2,
        activation: str = "gelu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = DenseLayer(in_channels * image_size * image_size, width, "identity")
        self.blocks = nn.ModuleList(
            ResidualBlock(width, width * expansion, activation, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def layers(self) -> dict[str, Layer]:
        """Every W mixes one whole vector: the photo's pixels, then features."""
        h = "LayerNorm(h), h being the running sum of the embedding and every block so far"
        layers = {"embed": Layer(self.embed, "pixels", "the input vector x above")}
        for i, block in enumerate(self.blocks, start=1):
            layers[f"block{i}.fc1"] = Layer(block.fc1, "features", h)
            layers[f"block{i}.fc2"] = Layer(block.fc2, "features", "the previous layer's A")
        h = "LayerNorm(h), h being the sum of the embedding and every block"
        return {**layers, "head": Layer(self.head, "features", h)}

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        z, h = self.embed.forward_with_z(x.flatten(1))  # (B, width)
        self.record(record, self.embed, z, h)
        for block in self.blocks:
            z1, a1 = block.fc1.forward_with_z(block.norm(h))  # (B, width * expansion)
            self.record(record, block.fc1, z1, a1)
            z2, a2 = block.fc2.forward_with_z(a1)  # (B, width)
            self.record(record, block.fc2, z2, a2)
            h = h + a2  # the residual: the block only learns a correction
        z = self.head(self.norm(h)).squeeze(-1)  # (B,)
        self.record(record, self.head, z, torch.sigmoid(z))
        return z


register_model(ResMLP, name="resmlp")
