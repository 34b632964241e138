"""Changes a user makes to a trained network on the live page, applied to a copy of it.

An `Ablation` names units to switch off (their A set to 0), layers whose bias b is
zeroed, layers whose W is scaled, and whether the photo is mirrored. `apply` returns a
deep copy of the model with those changes, so the loaded checkpoint (the model in memory,
and the file on disk) never changes, and every number the page shows still comes from
the copy's own forward_with_intermediates.
"""

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from models import PCatModel


class AblationError(ValueError):
    """A change the network cannot take (an unknown layer or unit); str() is one line."""


@dataclass
class Ablation:
    units_off: dict[str, list[int]] = field(default_factory=dict)  # layer name -> units whose A = 0
    zero_bias: list[str] = field(default_factory=list)  # layers whose b is set to 0
    weight_scale: dict[str, float] = field(default_factory=dict)  # layer name -> s in W <- s * W
    flip: bool = False  # mirror the photo left-right before it becomes x

    @classmethod
    def from_dict(cls, data: dict | None, model: PCatModel) -> "Ablation":
        """The page's JSON, of the shape the server has checked (request_checks.ABLATION), checked
        against this model: AblationError names a layer or unit it does not have."""
        data = data or {}
        linears, owners = model.network.linear_layers(), model.network.dense_layers()
        for name, units in data.get("units_off", {}).items():
            if name not in owners:
                raise AblationError(f"layer {name!r} has no units to switch off; choose from {list(owners)}")
            width = owners[name].linear.out_features
            if not all(0 <= unit < width for unit in units):
                raise AblationError(f"units_off[{name!r}] must list unit numbers from 0 to {width - 1}")
        for name in [*data.get("zero_bias", []), *data.get("weight_scale", {})]:
            if name not in linears:
                raise AblationError(f"layer {name!r} is not in this network: {list(linears)}")
        return cls(
            units_off={name: sorted(set(units)) for name, units in data.get("units_off", {}).items()},
            zero_bias=list(dict.fromkeys(data.get("zero_bias", []))),
            weight_scale={name: float(scale) for name, scale in data.get("weight_scale", {}).items()},
            flip=data.get("flip", False),
        )

    def apply(self, model: PCatModel) -> PCatModel:
        """A changed copy of `model` (the model itself when nothing changes)."""
        if not (self.units_off or self.zero_bias or self.weight_scale):
            return model
        changed = copy.deepcopy(model).eval()
        linears = changed.network.linear_layers()
        with torch.no_grad():
            for name in self.zero_bias:
                linears[name].bias.zero_()
            for name, scale in self.weight_scale.items():
                linears[name].weight.mul_(scale)
        owners = changed.network.dense_layers()
        for name, units in self.units_off.items():
            # A = g(Z), then the unit's A is cut to 0: Z stays W x + b, as the layer computed it,
            # and the next layer sees the 0. The hook lives on the copy, which is thrown away.
            owners[name].activation.register_forward_hook(_switch_off(units))
        return changed

    def image(self, image: Tensor) -> Tensor:
        """uint8 (3, S, S), mirrored when flip is on."""
        return image.flip(-1) if self.flip else image


def _switch_off(units: list[int]):
    def hook(_module: nn.Module, _args: tuple, a: Tensor) -> Tensor:
        a = a.clone()
        a[..., units] = 0  # (..., out): the unit is the last dimension for every family
        return a

    return hook
