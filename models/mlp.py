"""The MLP family: a stack of DenseLayers (Z = W x + b, A = g(Z)) and a bare linear head.

With no hidden layer it is logistic regression: one Z = W x + b, p_cat = sigmoid(z).
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
from models.registry import register_model


class MLP(ZooNetwork):
    """Flattened image -> hidden DenseLayers -> one logit z (p_cat = sigmoid(z)).

    The defaults are the article's network: input, 3 hidden layers, one output.
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        hidden_dims: Sequence[int] = (512, 256, 128),
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [in_channels * image_size * image_size, *hidden_dims]
        self.hidden = nn.ModuleDict(
            {
                f"layer{i + 1}": DenseLayer(widths[i], widths[i + 1], activation, norm, dropout)
                for i in range(len(hidden_dims))
            }
        )
        self.head = nn.Linear(widths[-1], 1)  # the output layer: z = w a + b, one logit

    def layers(self) -> dict[str, Layer]:
        """W of the first layer mixes every pixel; each later W mixes the features of the A before it."""
        x = "the input vector x above"
        return {
            **{
                name: Layer(layer, "features", "the previous layer's A") if i else Layer(layer, "pixels", x)
                for i, (name, layer) in enumerate(self.hidden.items())
            },
            "head": Layer(self.head, "features", "the previous layer's A")
            if self.hidden
            else Layer(self.head, "pixels", x),
        }

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        a = x.flatten(1)  # (B, C*H*W): the article's input vector x
        for layer in self.hidden.values():
            z, a = layer.forward_with_z(a)
            self.record(record, layer, z, a)
        z = self.head(a).squeeze(-1)  # (B,) one logit per image
        self.record(record, self.head, z, torch.sigmoid(z))  # A of the output layer is p_cat
        return z


register_model(MLP, name="mlp")


@register_model
def logreg(image_size: int = 64, in_channels: int = 3) -> MLP:
    """Logistic regression: no hidden layer, a single Z = W x + b over the pixels."""
    return MLP(image_size, in_channels, hidden_dims=())
