"""The article's building block: one layer computes Z = W x + b, then A = g(Z)."""

from dataclasses import dataclass
from typing import Literal, NamedTuple

from torch import Tensor, nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

NORMS = ("none", "batch", "layer")


class LayerOutput(NamedTuple):
    """What one layer computed in a forward pass: Z = W x + b and A = g(Z)."""

    z: Tensor
    a: Tensor


# What a layer's W mixes: what the numbers of its x are. A layer over a token grid applies
# the same W to every row of x; ROWS says what one row is there (None: x is one vector).
Mixes = Literal["pixels", "features", "patch_pixels", "tokens", "channels", "neighbours"]
ROWS: dict[str, str | None] = {
    "pixels": None,  # the whole photo, flattened: 3·S·S numbers
    "features": None,  # a vector of features, such as the previous layer's A
    "patch_pixels": "patch",  # one patch's 3·p·p pixel values (a patch embedding)
    "tokens": "feature",  # one feature across every patch (token mixing)
    "channels": "patch",  # one patch's features (channel mixing)
    "neighbours": "patch",  # the features of 2x2 neighbouring patches, concatenated (merging)
}


@dataclass(frozen=True)
class Layer:
    """One Z = W x + b of a network, as its family declares it: the module, what W mixes, what x is."""

    module: nn.Module  # a DenseLayer, or the bare nn.Linear head
    mixes: Mixes
    x: str  # what x is, in words, for explain.py (where it is not simply the previous layer's A)

    @property
    def linear(self) -> nn.Linear:
        return self.module.linear if isinstance(self.module, DenseLayer) else self.module

    @property
    def dense(self) -> "DenseLayer | None":
        """The DenseLayer (its g and norm) behind W and b; None for the bare head."""
        return self.module if isinstance(self.module, DenseLayer) else None

    @property
    def rows(self) -> str | None:
        return ROWS[self.mixes]


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ZooNetwork(nn.Module):
    """A zoo network: `forward(x, record=None)` is its one code path, `layers()` its declaration.

    Each family declares its layers once, in `layers()`: name -> Layer, in forward order, the
    head last. Its forward calls `self.record(record, module, z, a)` after each of them, so a
    dict passed as `record` fills with every layer's Z and A under the declared names.
    """

    def layers(self) -> dict[str, Layer]:
        raise NotImplementedError

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        raise NotImplementedError

    def forward_with_intermediates(self, x: Tensor) -> tuple[Tensor, dict[str, LayerOutput]]:
        """Logit plus every layer's Z and A, from forward itself."""
        record: dict[str, LayerOutput] = {}
        return self(x, record), record

    def record(self, record: dict[str, LayerOutput] | None, module: nn.Module, z: Tensor, a: Tensor) -> None:
        """Keep one layer's Z and A under its declared name; a token grid (B, H, W, out) as (B, H*W, out)."""
        if record is None:
            return
        name = next((name for name, layer in self.layers().items() if layer.module is module), None)
        if name is None:  # a family's forward and its declaration disagree: say where
            raise ValueError(
                f"{type(self).__name__}.layers() does not declare the {type(module).__name__} it records"
            )
        record[name] = LayerOutput(z.flatten(1, 2), a.flatten(1, 2)) if z.ndim > 3 else LayerOutput(z, a)

    def linear_layers(self) -> dict[str, nn.Linear]:
        """Each layer's W and b, under its declared name."""
        return {name: layer.linear for name, layer in self.layers().items()}

    def dense_layers(self) -> dict[str, "DenseLayer"]:
        """The layers with a g (and units to switch off): every one but the head."""
        return {name: layer.dense for name, layer in self.layers().items() if layer.dense is not None}


class DenseLayer(nn.Module):
    """One layer of the article: Z = W x + b, then A = g(Z).

    With normalisation the activation sees the normalised Z (A = g(norm(Z))), the
    usual Linear -> Norm -> activation order; Z itself is always exactly W x + b,
    so what TensorBoard and explain.py show as Z is the article's Z.
    Dropout, when on, acts on A during training only.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "relu",
        norm: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm '{norm}'; choose one of: {', '.join(NORMS)}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"a layer of {in_features} -> {out_features} units; widths must be at least 1")
        if not 0 <= dropout < 1:  # 1 would zero every A: nothing reaches the next layer
            raise ValueError(f"dropout {dropout} is out of range; pass a value in [0, 1)")
        self.linear = nn.Linear(in_features, out_features)
        self.norm = {
            "none": nn.Identity,
            "batch": lambda: nn.BatchNorm1d(out_features),
            "layer": lambda: nn.LayerNorm(out_features),
        }[norm]()
        self.activation = make_activation(activation)
        self.activation_name = activation
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self) -> Tensor:
        return self.linear.weight  # W: (out, in)

    @property
    def bias(self) -> Tensor:
        return self.linear.bias  # b: (out,)

    def forward_with_z(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.linear(x)  # Z = x @ W.T + b   (B, out)
        a = self.dropout(self.activation(self.norm(z)))  # A = g(Z)   (B, out)
        return z, a

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_z(x)[1]
