"""The article's building block: one layer computes Z = W x + b, then A = g(Z)."""

from typing import NamedTuple

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


class LayerTrace(NamedTuple):
    """What one layer computed in a forward pass: Z = W x + b and A = g(Z)."""

    z: Tensor
    a: Tensor


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class TracedModel(nn.Module):
    """A zoo model whose forward and forward_with_intermediates are one code path.

    Subclasses implement `_run(x, record)`, filling `record[name] = LayerTrace(z, a)` for
    every layer when `record` is a dict, and `linear_layers()` with the same names.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, None)

    def forward_with_intermediates(self, x: Tensor) -> tuple[Tensor, dict[str, "LayerTrace"]]:
        """Logit plus every layer's Z and A, from the same code path as forward."""
        record: dict[str, LayerTrace] = {}
        return self._run(x, record), record

    def linear_layers(self) -> dict[str, nn.Linear]:
        raise NotImplementedError

    def dense_layers(self) -> dict[str, "DenseLayer"]:
        """The DenseLayer (its g and norm) behind each name of linear_layers(); a bare
        nn.Linear, such as the head, has none."""
        owners = {id(module.linear): module for module in self.modules() if isinstance(module, DenseLayer)}
        return {
            name: owners[id(linear)] for name, linear in self.linear_layers().items() if id(linear) in owners
        }

    def _run(self, x: Tensor, record: dict[str, "LayerTrace"] | None) -> Tensor:
        raise NotImplementedError


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
