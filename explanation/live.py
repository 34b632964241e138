"""The numbers of the live page (explain.py --serve), as plain data for its JSON API.

`explanation_data` is walk.py's Explanation of one photo through the (changed) network,
plus what the page draws: every unit's Z and A, each layer's formula and words.
`unit_data` is how one unit's Z is made: its largest terms w_j * x_j and its b, its weight
row as a picture, and the sample photos that switch it on most. All of it comes from the
model's own forward_with_intermediates; nothing here computes a layer by hand.
"""

import base64
import io
import math
import os
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from datasets import decode_image, find_image_files
from datasets.errors import DataError, UnreadableImage
from explanation.ablation import Ablation
from explanation.text import KIND_WORDS, decision, flip_average_words, formula, normalisation_words, x_words
from explanation.walk import explain_image, forward_with_inputs
from inference.evaluation import confident_mistakes, score_folder
from models import CLASS_NAMES, PCatModel

PHOTO_SIDE = 256  # the input x on the page, scaled up with crisp pixels
TEMPLATE_SIDE = 128
THUMB_SIDE = 64
TOP_TERMS = 8  # terms w_j * x_j listed per side (towards a larger and a smaller Z)
TOP_SAMPLES = 4
SAMPLE_COUNT = 48  # sample photos decoded at start-up, spread over the folder's sorted files
# Labelled photos scored at start-up for the network's most confident mistakes, spread over the
# folder like the samples. Decoding runs at ~300 photos/s on 2 cores: 256 take about a second,
# where PetImages' 25,000 (a folder without a held-out part counts whole) would hold the page
# back a minute and a half.
MISTAKE_POOL = 256
MISTAKE_COUNT = 8


class UnitError(ValueError):
    """A layer or unit this network does not have; str() is one line."""


def model_data(model: PCatModel, threshold: float, samples: "Samples | None", max_upload_bytes: int) -> dict:
    """What the page shows before any photo: the network, its layers, the sample photos."""
    switchable = model.network.dense_layers()
    return {
        "network": model.network_name,
        "image_size": model.image_size,
        "threshold": threshold,
        "tta_flip": model.tta_flip,
        "max_upload_bytes": max_upload_bytes,
        "layers": [
            {"name": name, "weight_shape": list(linear.weight.shape), "switchable": name in switchable}
            for name, linear in model.network.linear_layers().items()
        ],
        "samples": samples.listing() if samples is not None else [],
    }


def explanation_data(
    model: PCatModel, image: Tensor, ablation: Ablation, threshold: float, original_size: list[int] | None
) -> dict:
    """uint8 image (3, S, S) through the network with `ablation` applied -> the page's JSON."""
    changed, seen = ablation.apply(model), ablation.image(image)
    explanation = explain_image(changed, seen, threshold, top=5)
    explanation.input.original_size = original_size
    switchable, declared = model.network.dense_layers(), model.network.layers()
    data = explanation.to_dict()
    for index, (layer, report) in enumerate(zip(data["layers"], explanation.layers, strict=True), start=1):
        output = report.kind == "output"
        plural = "features" if declared[report.name].rows == "feature" else "patches"
        rows = "" if report.rows is None else f"for each of {report.rows} {plural}: "
        layer.update(
            index=index,
            a_per_unit=report.a_per_unit,
            z_per_unit=report.z_per_unit,
            formula=rows + formula(index, report, output=output),
            kind_words=KIND_WORDS[report.kind],
            x_words=x_words(index, report),
            switchable=report.name in switchable,
        )
    data["x_image"] = png_data_uri(seen, PHOTO_SIDE)
    data["decision"] = decision(explanation)
    data["normalisation"] = normalisation_words(explanation.input)
    data["flip_average"] = flip_average_words(explanation) if explanation.z_mirrored is not None else None
    return data


@torch.inference_mode()
def unit_data(
    model: PCatModel, image: Tensor, ablation: Ablation, layer: str, unit: int, samples: "Samples | None"
) -> dict:
    """How unit `unit` of `layer` computes its Z = sum_j w_j x_j + b for this photo."""
    declared = model.network.layers()
    if layer not in declared:
        raise UnitError(f"layer {layer!r} is not in this network: {list(declared)}")
    width = declared[layer].linear.out_features
    if not 0 <= unit < width:  # its type is the server's check (request_checks.UNIT_BODY)
        raise UnitError(f"layer {layer!r} has units 0 to {width - 1}")
    changed, seen = ablation.apply(model), ablation.image(image)
    _, outputs, inputs = forward_with_inputs(changed, seen.unsqueeze(0))
    linear = changed.network.linear_layers()[layer]
    z, a, x = outputs[layer].z[0], outputs[layer].a[0], inputs[layer][0]
    if z.ndim == 0:  # the head: one z, one x; its A is p_cat of the photo itself
        z, a = z.reshape(1, 1), a.reshape(1, 1)
    if x.ndim == 1:
        x, z, a = x.unsqueeze(0), z.reshape(1, -1), a.reshape(1, -1)  # one row
    row = int(a[:, unit].argmax())  # for a layer applied per row: the row where this unit is most on
    weight, bias = linear.weight[unit], linear.bias[unit]
    terms = weight * x[row]  # (in,): Z = sum_j w_j x_j + b
    order = terms.argsort(descending=True)
    up = [j for j in order[:TOP_TERMS].tolist() if terms[j] > 0]
    down = [j for j in order.flip(0)[:TOP_TERMS].tolist() if terms[j] < 0]
    first, rows = next(iter(declared.values())), declared[layer].rows
    first_z = outputs[next(iter(outputs))].z  # (B, patches, out) when the photo is cut into patches
    mixes_patches = (
        declared[layer].mixes == "tokens" and first_z.ndim == 3 and weight.numel() == first_z.shape[1]
    )
    return {
        "layer": layer,
        "unit": unit,
        "output": outputs[layer].z.ndim == 1,  # the head: z (B,), its A is p_cat
        "rows": z.shape[0] if outputs[layer].z.ndim == 3 else None,
        "row": row,
        "row_name": rows or "patch",
        "in_features": linear.in_features,
        "z": z[row, unit].item(),
        "a": a[row, unit].item(),
        "bias": bias.item(),
        "terms_up": terms.clamp_min(0).double().sum().item(),
        "terms_down": terms.clamp_max(0).double().sum().item(),
        "terms": [
            {"j": j, "weight": weight[j].item(), "x": x[row, j].item(), "term": terms[j].item()}
            for j in up + down
        ],
        "switched_off": unit in ablation.units_off.get(layer, []),
        "a_grid": _grid(a[:, unit]) if rows == "patch" else None,  # the unit's A on the patch grid
        "weight_grid": _grid(weight) if mixes_patches else None,  # a token W's row weighs every patch
        "template": _template(weight) if declared[layer].module is first.module else None,
        "samples": samples.top(layer, unit) if samples is not None else [],
    }


@dataclass
class Sample:
    name: str
    image: Tensor  # uint8 (3, S, S)
    thumb: str  # PNG data URI
    mistake: str | None = None  # "mistake: dog, p_cat 0.93": its label, and the network's call against it


class Samples:
    """A few photos of a folder, decoded once, and every unit's A for each of them; for a labelled
    folder (datasets/layouts.py), also the network's most confident mistakes among MISTAKE_POOL
    of its photos, found as evaluate.py finds them.

    The A are the unchanged network's: "the photos that switch this unit on most" is a
    fact about the trained unit, not about today's ablation.
    """

    def __init__(
        self,
        model: PCatModel,
        folder: str | os.PathLike,
        count: int = SAMPLE_COUNT,
        threshold: float | None = None,
    ) -> None:
        files = find_image_files([os.fspath(folder)])  # raises DataError when it does not exist
        step = max(1, len(files) // count)  # spread over the sorted files: cats and dogs alike
        self.photos: list[Sample] = []
        for path in files[::step]:
            if len(self.photos) == count:
                break
            try:
                image = decode_image(path, model.image_size)
            except UnreadableImage:
                continue  # a sample is a nicety: skip what does not decode
            name = os.path.relpath(path, folder)
            self.photos.append(Sample(name, image, png_data_uri(image, THUMB_SIDE)))
        self._add_mistakes(model.eval(), folder, model.threshold if threshold is None else threshold)
        self.a_per_unit: dict[str, Tensor] = {}  # layer -> (N, out)
        if self.photos:
            images = torch.stack([sample.image for sample in self.photos])  # (N, 3, S, S)
            with torch.inference_mode():
                _, outputs = model.eval().forward_with_intermediates(images)
            for name, output in outputs.items():
                a = output.a.unsqueeze(-1) if output.a.ndim == 1 else output.a  # the head's p_cat: (N, 1)
                self.a_per_unit[name] = a.reshape(len(self.photos), -1, a.shape[-1]).mean(dim=1)  # (N, out)

    def _add_mistakes(self, model: PCatModel, folder: str | os.PathLike, threshold: float) -> None:
        try:
            scored = score_folder(model, folder, limit=MISTAKE_POOL)
        except DataError:  # plain photos, no labels: nothing to call a mistake
            return
        for k in confident_mistakes(scored.p_cat, scored.labels, threshold, MISTAKE_COUNT):
            image, label = scored.images[k], CLASS_NAMES[int(scored.labels[k])]
            mistake = f"mistake: {label}, p_cat {float(scored.p_cat[k]):.2f}"
            name = os.path.relpath(scored.paths[k], folder)
            self.photos.append(Sample(name, image, png_data_uri(image, THUMB_SIDE), mistake))

    def listing(self) -> list[dict]:
        return [
            {"id": f"s{k}", "name": s.name, "thumb": s.thumb, "mistake": s.mistake}
            for k, s in enumerate(self.photos)
        ]

    def top(self, layer: str, unit: int, count: int = TOP_SAMPLES) -> list[dict]:
        if layer not in self.a_per_unit:
            return []
        a = self.a_per_unit[layer][:, unit]  # (N,)
        order = a.argsort(descending=True)[:count].tolist()
        return [
            {"id": f"s{k}", "name": self.photos[k].name, "thumb": self.photos[k].thumb, "a": a[k].item()}
            for k in order
        ]


def _template(weight: Tensor) -> str | None:
    """The first layer's weight row as a picture: the whole photo (MLP) or one patch (Mixer)."""
    side = _square(weight.numel() // 3) if weight.numel() % 3 == 0 else None
    if side is None:
        return None
    weight = weight.detach().float()
    low, high = weight.aminmax()  # bright = large positive weight, dark = large negative
    scaled = ((weight - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return png_data_uri(scaled.reshape(3, side, side), TEMPLATE_SIDE)


def png_data_uri(image: Tensor, side: int) -> str:
    """uint8 (3, H, W) -> data:image/png;base64,..., scaled to `side` px with crisp pixels."""
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    picture = picture.resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(values: Tensor) -> list[list[float]] | None:
    side = _square(values.numel())
    return None if side is None else values.reshape(side, side).tolist()


def _square(count: int) -> int | None:
    side = math.isqrt(count)
    return side if side * side == count and side > 1 else None
