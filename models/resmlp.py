"""Residual MLP: pre-norm residual blocks of DenseLayers on the flattened image.

h = embed(x); each block adds h <- h + W2 g(W1 LN(h) + b1) + b2; then LN and a linear head.
Skip connections let gradients reach the first layer, so depth stops hurting.
"""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, LayerTrace, TracedModel
from models.registry import register_model


class ResidualBlock(nn.Module):
    """h + fc2(fc1(LN(h))): two DenseLayers, each still Z = W x + b."""

    def __init__(self, width: int, hidden: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = DenseLayer(width, hidden, activation, dropout=dropout)
        self.fc2 = DenseLayer(hidden, width, "identity", dropout=dropout)


class ResMLP(TracedModel):
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
        self.input_shape = (in_channels, image_size, image_size)
        self.embed = DenseLayer(in_channels * image_size * image_size, width, "identity")
        self.blocks = nn.ModuleList(
            ResidualBlock(width, width * expansion, activation, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)

    def linear_layers(self) -> dict[str, nn.Linear]:
        layers = {"embed": self.embed.linear}
        for i, block in enumerate(self.blocks, start=1):
            layers[f"block{i}.fc1"] = block.fc1.linear
            layers[f"block{i}.fc2"] = block.fc2.linear
        layers["head"] = self.head
        return layers

    def _run(self, x: Tensor, record: dict[str, LayerTrace] | None) -> Tensor:
        z, h = self.embed.forward_with_z(x.flatten(1))  # (B, width)
        if record is not None:
            record["embed"] = LayerTrace(z, h)
        for i, block in enumerate(self.blocks, start=1):
            z1, a1 = block.fc1.forward_with_z(block.norm(h))  # (B, width * expansion)
            z2, a2 = block.fc2.forward_with_z(a1)  # (B, width)
            if record is not None:
                record[f"block{i}.fc1"] = LayerTrace(z1, a1)
                record[f"block{i}.fc2"] = LayerTrace(z2, a2)
            h = h + a2  # the residual: the block only learns a correction
        z = self.head(self.norm(h)).squeeze(-1)  # (B,)
        if record is not None:
            record["head"] = LayerTrace(z, torch.sigmoid(z))
        return z


register_model(ResMLP, name="resmlp")
