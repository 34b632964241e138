"""The numbers behind one prediction: every layer's Z = W x + b and A = g(Z) for one photo.

Everything here comes from the model's own forward pass (`forward_with_intermediates`)
on the photo decoded exactly as predict.py decodes it, so the p_cat explained is the
p_cat predicted. Forward hooks on each layer's nn.Linear only *read* its input x, to
show x's shape and how the output layer's z splits into w_j * x_j contributions. What
each layer is (what its W mixes, what its x is) is the family's own `layers()` declaration.
"""

import os
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image
from torch import Tensor

from datasets import decode_image
from models import Layer, LayerOutput, PCatModel, class_name

# Activations where "active" has a plain meaning, and what it is.
ACTIVE_WHEN = dict.fromkeys(("relu", "leaky_relu", "gelu", "silu", "tanh"), ("A > 0", lambda a: a > 0))
ACTIVE_WHEN["sigmoid"] = ("A > 0.5", lambda a: a > 0.5)
KINDS = {  # what W mixes -> the kind of layer, as the JSON names it
    "pixels": "dense",
    "features": "dense",
    "patch_pixels": "patch_embedding",
    "tokens": "token_mixing",
    "channels": "channel_mixing",
    "neighbours": "patch_merging",
}
EXIF_ORIENTATION = 0x0112
ROTATED_90 = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass
class Stats:
    """Summary of every element of a tensor; std is the population std (a single z has std 0)."""

    min: float
    mean: float
    max: float
    std: float

    @classmethod
    def of(cls, values: Tensor) -> "Stats":
        values = values.detach().double()
        return cls(
            min=values.min().item(),
            mean=values.mean().item(),
            max=values.max().item(),
            std=values.std(correction=0).item(),
        )


@dataclass
class Unit:
    """One unit of a layer: its index (a patch or feature row first for Mixer layers), Z and A."""

    index: list[int]
    z: float
    a: float


@dataclass
class Contribution:
    """One term w_j * x_j of the output layer's z = sum_j w_j x_j + b."""

    index: int
    weight: float
    x: float
    contribution: float


@dataclass
class LayerReport:
    name: str
    kind: str  # "output" or a KINDS value: "dense", "token_mixing", "channel_mixing", ...
    weight_shape: list[int]  # W: (out, in)
    x_shape: list[int]  # the input one W multiplies: (in,), or (rows, in) when applied per row
    bias_shape: list[int]
    z_shape: list[int]
    rows: int | None  # how many times W is applied (patches or features); None for one vector
    activation: str | None  # g in A = g(Z); None for the output layer, whose A is sigmoid(z)
    normalised: bool  # A = g(norm(Z)) instead of g(Z)
    x_is_previous_a: bool  # the x this W multiplies is exactly the previous layer's A
    z_stats: Stats
    a_stats: Stats
    units: int  # elements of Z
    active: int | None  # elements with A "on" (see active_when); None where it has no meaning
    active_when: str | None
    top_units: list[Unit] = field(default_factory=list)
    # A and Z of each unit (the mean over rows for Mixer layers), for the pages' bars; not in JSON
    a_per_unit: list[float] = field(default_factory=list, repr=False)
    z_per_unit: list[float] = field(default_factory=list, repr=False)
    x_is: str = field(default="", repr=False)  # what x is, in the family's words; not in JSON


@dataclass
class InputReport:
    path: str
    original_size: list[int] | None  # (width, height) of the file, after EXIF rotation
    image_size: int
    channel_mean: list[float]
    channel_std: list[float]
    input_norm: str  # "dataset": the training split's channel statistics; "per_image": this photo's own
    x_length: int
    x_stats: Stats


@dataclass
class Explanation:
    network: str
    input: InputReport
    layers: list[LayerReport]
    z: float  # the logit behind p_cat: z_photo, or with tta_flip the mean of z_photo and z_mirrored
    z_photo: float  # the output layer's single Z for this photo; the terms below add up to it
    z_mirrored: float | None  # the same for the photo mirrored left-right, when tta_flip is on
    p_cat: float  # sigmoid(z)
    threshold: float
    label: str
    bias: float  # b of the output layer
    terms_towards_cat: float  # sum of the positive w_j x_j: z = towards_cat + towards_dog + b
    terms_towards_dog: float  # sum of the negative ones
    contributions: list[Contribution]  # the largest positive, then the most negative w_j x_j terms

    def to_dict(self) -> dict:
        """Plain data for JSON: everything except the per-unit A and Z lists (one number per unit)."""
        data = asdict(self)
        for layer in data["layers"]:
            del layer["a_per_unit"], layer["z_per_unit"], layer["x_is"]
        return data


def explain_file(
    model: PCatModel, path: str | os.PathLike, threshold: float, top: int = 5
) -> tuple[Explanation, Tensor]:
    """Decode `path` exactly as predict.py does and explain it; also returns the uint8
    image (3, S, S) the network saw, which the HTML page shows."""
    image = decode_image(path, model.image_size)  # raises UnreadableImage
    explanation = explain_image(model, image, threshold, top)
    explanation.input.path = os.fspath(path)
    explanation.input.original_size = original_size(path)
    return explanation, image


@torch.inference_mode()
def explain_image(model: PCatModel, image: Tensor, threshold: float, top: int = 5) -> Explanation:
    """uint8 image (3, S, S) -> the layer-by-layer explanation of its p_cat."""
    model = model.eval()
    images = image.unsqueeze(0)  # (1, 3, S, S)
    x = model.normalize(images)  # as input_norm says
    declared = model.network.layers()
    logits, outputs, inputs = forward_with_inputs(model, images)
    layers = []
    previous_a = None
    for name, output in outputs.items():
        x_is_previous_a = previous_a is not None and torch.equal(inputs[name], previous_a)
        layers.append(_layer_report(name, declared[name], inputs[name], output, x_is_previous_a, top))
        previous_a = output.a
    z_photo = logits[0]
    z = model.logits(images)[0]  # the z predict.py uses: flip-averaged when tta_flip is on
    p_cat = torch.sigmoid(z).item()
    z_mirrored = 2 * z - z_photo if model.tta_flip else None  # z = (z_photo + z_mirrored) / 2
    head_name, head = next(reversed(declared.items()))
    head, x_of_head = head.linear, inputs[head_name][0]
    terms = head.weight[0] * x_of_head  # (in,): z = sum_j w_j x_j + b
    order = terms.argsort(descending=True).tolist()  # (in,) the most cat-ward term first
    cat_side = [j for j in order[:top] if terms[j] > 0]
    dog_side = [j for j in order[::-1][:top] if terms[j] < 0]
    contributions = [
        Contribution(j, head.weight[0, j].item(), x_of_head[j].item(), terms[j].item())
        for j in cat_side + dog_side
    ]
    return Explanation(
        network=model.network_name,
        input=InputReport(
            path="",
            original_size=None,
            image_size=image.shape[-1],
            channel_mean=model.channel_mean.tolist(),
            channel_std=model.channel_std.tolist(),
            input_norm=model.input_norm,
            x_length=x[0].numel(),
            x_stats=Stats.of(x),
        ),
        layers=layers,
        z=z.item(),
        z_photo=z_photo.item(),
        z_mirrored=None if z_mirrored is None else z_mirrored.item(),
        p_cat=p_cat,
        threshold=threshold,
        label=class_name(p_cat, threshold),
        bias=head.bias[0].item(),
        terms_towards_cat=terms.clamp_min(0).double().sum().item(),
        terms_towards_dog=terms.clamp_max(0).double().sum().item(),
        contributions=contributions,
    )


def forward_with_inputs(
    model: PCatModel, images: Tensor
) -> tuple[Tensor, dict[str, LayerOutput], dict[str, Tensor]]:
    """forward_with_intermediates on uint8 `images`, plus the x each layer's W multiplied.

    Forward hooks on every nn.Linear only read its input; each x is returned with its
    token grid flattened the way the layer's Z was recorded: (B, in) or (B, rows, in).
    """
    inputs: dict[str, Tensor] = {}
    hooks = [
        linear.register_forward_hook(lambda _module, args, _out, name=name: inputs.__setitem__(name, args[0]))
        for name, linear in model.network.linear_layers().items()
    ]
    try:
        logits, outputs = model.forward_with_intermediates(images)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, outputs, {name: _rows_like(inputs[name], output.z) for name, output in outputs.items()}


def _layer_report(
    name: str, layer: Layer, x: Tensor, output: LayerOutput, x_is_previous_a: bool, top: int
) -> LayerReport:
    z, a = output.z[0], output.a[0]  # drop the batch of one: (out,) or (rows, out); the head's z: ()
    is_output, dense = z.ndim == 0, layer.dense
    activation = dense.activation_name if dense is not None else None
    active_when, is_active = ACTIVE_WHEN.get(activation, (None, None))
    flat_a = a.reshape(-1)
    order = flat_a.argsort(descending=True)[:top] if not is_output else torch.tensor([])
    top_units = [
        Unit(
            [int(i) for i in torch.unravel_index(torch.tensor(int(k)), a.shape)],
            z.reshape(-1)[k].item(),
            flat_a[k].item(),
        )
        for k in order.tolist()
    ]
    return LayerReport(
        name=name,
        kind="output" if is_output else KINDS[layer.mixes],
        weight_shape=list(layer.linear.weight.shape),
        x_shape=list(x.shape[1:]),
        bias_shape=list(layer.linear.bias.shape),
        z_shape=list(z.shape) if not is_output else [1],
        rows=z.shape[0] if z.ndim == 2 else None,
        activation=activation,
        x_is_previous_a=x_is_previous_a,
        normalised=dense is not None and not isinstance(dense.norm, torch.nn.Identity),
        z_stats=Stats.of(z),
        a_stats=Stats.of(a),
        units=z.numel(),
        active=int(is_active(a).sum()) if is_active is not None else None,
        active_when=active_when,
        top_units=top_units,
        a_per_unit=_per_unit(a) if not is_output else [],
        z_per_unit=_per_unit(z) if not is_output else [],
        x_is=layer.x,
    )


def _rows_like(x: Tensor, z: Tensor) -> Tensor:
    """A layer's input with its token grid flattened the way its Z was recorded.

    A token-grid network (shift_mlp) applies W to (B, H, W, features) and records Z as
    (B, H*W, out); its x then reads the same way, one row per patch.
    """
    extra = x.ndim - z.ndim
    return x.flatten(1, 1 + extra) if z.ndim >= 3 and extra > 0 else x


def _per_unit(values: Tensor) -> list[float]:
    """(out,) or (rows, out) -> one number per unit: the mean over rows."""
    return (values.mean(dim=0) if values.ndim == 2 else values).tolist()


def original_size(path: str | os.PathLike) -> list[int] | None:
    """The file's (width, height) as a viewer shows it; reads only the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION) in ROTATED_90:
                width, height = height, width
            return [width, height]
    except Exception:  # a size is a nicety: the decode that matters already succeeded
        return None
