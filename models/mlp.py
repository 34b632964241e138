"""The MLP family: a stack of DenseLayers (Z = W x + b, A = g(Z)) and a bare linear head.

With no hidden layer it is logistic regression: one Z = W x + b, p_cat = sigmoid(z).
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, LayerTrace, TracedModel
from models.registry import register_model


class MLP(TracedModel):
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
        self.input_shape = (in_channels, image_size, image_size)
        widths = [in_channels * image_size * image_size, *hidden_dims]
        self.hidden = nn.ModuleDict(
            {
                f"layer{i + 1}": DenseLayer(widths[i], widths[i + 1], activation, norm, dropout)
                for i in range(len(hidden_dims))
            }
        )
        self.head = nn.Linear(widths[-1], 1)  # the output layer: z = w a + b, one logit

    def linear_layers(self) -> dict[str, nn.Linear]:
        """Each layer's W and b, under the names forward_with_intermediates uses."""
        return {**{name: layer.linear for name, layer in self.hidden.items()}, "head": self.head}

    def _run(self, x: Tensor, record: dict[str, LayerTrace] | None) -> Tensor:
        a = x.flatten(1)  # (B, C*H*W): the article's input vector x
        for name, layer in self.hidden.items():
            z, a = layer.forward_with_z(a)
            if record is not None:
                record[name] = LayerTrace(z, a)
        z = self.head(a).squeeze(-1)  # (B,) one logit per image
        if record is not None:
            record["head"] = LayerTrace(z, torch.sigmoid(z))  # A of the output layer is p_cat
        return z


register_model(MLP, name="mlp")


@register_model
def logreg(image_size: int = 64, in_channels: int = 3) -> MLP:
    """Logistic regression: no hidden layer, a single Z = W x + b over the pixels."""
    return MLP(image_size, in_channels, hidden_dims=())
