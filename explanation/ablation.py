"""Changes a user makes to a trained network on the live page, applied to a copy of it.

An `Ablation` names units to switch off (their A set to 0), layers whose bias b is
zeroed, layers whose W is scaled, and whether the photo is mirrored. `apply` returns a
deep copy of the model with those changes, so the loaded checkpoint (the model in memory,
and the file on disk) never changes, and every number the page shows still comes from
the copy's own forward_with_intermediates.
"""

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from models import PCatModel

MAX_WEIGHT_SCALE = 10.0  # W scaled far beyond this only shows float overflow, not the network


class AblationError(ValueError):
    """A change the network cannot take (an unknown layer or unit); str() is one line."""


@dataclass
class Ablation:
    units_off: dict[str, list[int]] = field(default_factory=dict)  # layer name -> units whose A = 0
    zero_bias: list[str] = field(default_factory=list)  # layers whose b is set to 0
    weight_scale: dict[str, float] = field(default_factory=dict)  # layer name -> s in W <- s * W
    flip: bool = False  # mirror the photo left-right before it becomes x

    @classmethod
    def from_dict(cls, data: object, model: PCatModel) -> "Ablation":
        """The JSON the page sends, checked against this model; AblationError says what is wrong."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise AblationError("the ablation must be a JSON object")
        unknown = set(data) - {"units_off", "zero_bias", "weight_scale", "flip"}
        if unknown:
            raise AblationError(f"unknown ablation field {sorted(unknown)[0]!r}")
        linears = model.network.linear_layers()
        owners = model.network.dense_layers()
        ablation = cls(flip=data.get("flip", False) is True)
        for name, units in _mapping(data, "units_off").items():
            if name not in owners:
                raise AblationError(f"layer {name!r} has no units to switch off; choose from {list(owners)}")
            width = owners[name].linear.out_features
            if not isinstance(units, list) or not all(_is_index(u, width) for u in units):
                raise AblationError(f"units_off[{name!r}] must list unit numbers from 0 to {width - 1}")
            ablation.units_off[name] = sorted(set(units))
        zero_bias = data.get("zero_bias", [])
        if not isinstance(zero_bias, list) or not all(name in linears for name in zero_bias):
            raise AblationError(f"zero_bias must list layers of this network: {list(linears)}")
        ablation.zero_bias = list(dict.fromkeys(zero_bias))
        for name, scale in _mapping(data, "weight_scale").items():
            if name not in linears:
                raise AblationError(f"layer {name!r} is not in this network: {list(linears)}")
            valid = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
            if not valid or abs(scale) > MAX_WEIGHT_SCALE:
                raise AblationError(f"weight_scale[{name!r}] must be a number from -10 to 10")
            ablation.weight_scale[name] = float(scale)
        return ablation

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


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise AblationError(f"{key} must be a JSON object of layer name -> value")
    return value


def _is_index(value: object, width: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < width
