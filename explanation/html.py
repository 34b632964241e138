"""An Explanation as one self-contained HTML page: inline CSS, images as base64 PNG data
URIs, bars as inline SVG. Nothing is fetched, so the page works offline and as an attachment."""

import base64
import html
import io
import math
import os

import torch
from PIL import Image
from torch import Tensor

from explanation.text import (
    KIND_WORDS,
    decision,
    flip_average_words,
    formula,
    normalisation_words,
    number,
    x_words,
)
from explanation.walk import Explanation, LayerReport
from models import PCatModel

PHOTO_SIDE = 256  # pixels on the page: a 64 px input scaled up 4x, nearest neighbour
TEMPLATE_SIDE = 112
BAR_UNITS_MAX = 1024  # wider layers are drawn as the mean of neighbouring units
CAT_COLOUR, DOG_COLOUR = "#e0662f", "#2f6fe0"

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430;
       background: #f4f5f7; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 26px; margin: 6px 0 2px; } h2 { font-size: 18px; margin: 0 0 8px; }
.sub { color: #5b6472; margin: 0 0 16px; }
.card { background: #fff; border-radius: 10px; padding: 14px 18px; margin: 0 0 14px;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.row { display: flex; gap: 20px; align-items: flex-start; }
.photo { image-rendering: pixelated; border-radius: 6px; display: block; }
.verdict { font-size: 40px; font-weight: 700; margin: 4px 0; }
.cat { color: #e0662f; } .dog { color: #2f6fe0; }
code, .formula { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 13px; }
.formula { background: #f1f3f6; border-radius: 6px; padding: 6px 10px; display: inline-block;
           margin: 2px 0 6px; }
.templates { display: flex; gap: 12px; flex-wrap: wrap; }
.templates figure { margin: 0; text-align: center; font-size: 13px; color: #5b6472; }
.templates img { image-rendering: pixelated; border-radius: 4px; display: block; }
.stats { color: #3b4350; font-size: 13.5px; }
.layers { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 14px;
          margin: 0 0 14px; }
.layers .card { margin: 0; }
.terms { display: grid; grid-template-columns: 90px 1fr 80px; gap: 3px 10px; font-size: 13px;
         align-items: center; }
.terms .bar { height: 12px; border-radius: 3px; }
"""


def render_html(explanation: Explanation, image: Tensor, model: PCatModel, templates: int = 8) -> str:
    """The page for one photo: uint8 `image` (3, S, S) is the photo as the network saw it."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Why {html.escape(explanation.label)}? Z = Wx + b, layer by layer</title>",
        f"<style>{STYLE}</style></head><body><main>",
        _header(explanation, image),
        _templates(explanation, model, templates),
        '<div class="layers">',
        *(_layer_card(i, layer, explanation) for i, layer in enumerate(explanation.layers[:-1], start=1)),
        "</div>",
        _output_card(explanation),
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)


def png_data_uri(image: Tensor, side: int) -> str:
    """uint8 (3, H, W) -> data:image/png;base64,..., scaled to `side` px with crisp pixels."""
    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    picture = picture.resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _header(explanation: Explanation, image: Tensor) -> str:
    info = explanation.input
    size = info.image_size
    original = f"{info.original_size[0]}×{info.original_size[1]} → " if info.original_size else ""
    label = explanation.label
    first = explanation.layers[0]
    shaped = f"flattened to 3·{size}·{size} = <b>{info.x_length}</b> numbers"
    if first.kind == "patch_embedding":
        shaped = f"cut into <b>{first.rows}</b> patches of {first.weight_shape[1]} numbers each"
    return f"""
<h1>Why the network says <span class="{label}">{label}</span></h1>
<p class="sub">{html.escape(os.path.basename(info.path))} ·
network <code>{html.escape(explanation.network)}</code> ·
every layer computes Z = W x + b, then A = g(Z)</p>
<div class="card row">
  <img class="photo" src="{png_data_uri(image, PHOTO_SIDE)}" width="{PHOTO_SIDE}" height="{PHOTO_SIDE}"
       alt="the photo as the network saw it">
  <div>
    <div class="verdict {label}">{label}: p_cat = {explanation.p_cat:.3f}</div>
    <p>{html.escape(decision(explanation))}: the network calls this photo a {label}.</p>
    <p>The photo ({original}{size}×{size} pixels, shorter side resized then centre-cropped, as shown)
    became the vector <b>x</b>. {html.escape(normalisation_words(explanation.input))} Then {shaped}.</p>
    <p>Every layer below is one <b>Z = W x + b</b> with the shapes shown, followed by a non-linearity
    A = g(Z). The last layer gives one number z, and p_cat = sigmoid(z).</p>
  </div>
</div>"""


def first_layer_templates(
    model: PCatModel, explanation: Explanation, count: int
) -> list[tuple[int, float, Tensor]]:
    """(unit, A, template) for the first layer's most active units, each template the unit's
    row of W reshaped to the image (3, S, S) and min-max scaled to uint8.

    Empty when the first layer does not see the whole flattened image (e.g. Mixer patches).
    """
    linear = next(iter(model.network.linear_layers().values()))
    size = explanation.input.image_size
    if linear.in_features != 3 * size * size:
        return []
    report = explanation.layers[0]
    if report.kind == "output":  # logistic regression: the only row of W is the whole model
        units = [(0, explanation.p_cat)]
    else:
        a = torch.tensor(report.a_per_unit)  # (out,)
        units = [(j, a[j].item()) for j in a.argsort(descending=True)[:count].tolist()]
    return [(unit, value, weight_row_image(linear.weight[unit], size)) for unit, value in units]


def weight_row_image(row: Tensor, side: int) -> Tensor:
    """One row of W (3*side*side,) as a uint8 picture (3, side, side), min-max scaled:
    bright = large positive weight, dark = large negative."""
    row = row.detach().float()
    low, high = row.aminmax()
    scaled = ((row - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return scaled.reshape(3, side, side)


def _templates(explanation: Explanation, model: PCatModel, count: int) -> str:
    found = first_layer_templates(model, explanation, count)
    if not found:
        return ""
    first = explanation.layers[0]
    what = "A" if first.kind != "output" else "p_cat"
    size = explanation.input.image_size
    figures = "".join(
        f'<figure><img src="{png_data_uri(template, TEMPLATE_SIDE)}" width="{TEMPLATE_SIDE}" '
        f'height="{TEMPLATE_SIDE}" alt="template of unit {unit}">'
        f"unit #{unit}<br>{what} = {number(a)}</figure>"
        for unit, a, template in found
    )
    return f"""
<div class="card">
  <h2>What the first layer matched</h2>
  <p class="stats">Each unit of {first.name} computes one row of W (a {first.weight_shape[1]}-number row,
  shown as a {size}×{size} picture; bright = large positive weight, dark = large negative)
  dotted with x, plus its b. These are the rows of the units this photo switched on most.</p>
  <div class="templates">{figures}</div>
</div>"""


def _layer_card(index: int, layer: LayerReport, explanation: Explanation) -> str:
    per_row = f"for each of {layer.rows} {'features' if layer.kind == 'token_mixing' else 'patches'}: "
    stats = layer.z_stats
    g = f"{layer.activation}(norm(Z))" if layer.normalised else f"{layer.activation}(Z)"
    if layer.activation == "identity":
        active = "A = Z: no non-linearity"
    elif layer.active is not None:
        active = f"A = {g}: <b>{layer.active}</b> of {layer.units} active ({layer.active_when})"
    else:
        active = f"A = {g}"
    top = ", ".join(f"#{'/'.join(map(str, u.index))} ({number(u.a)})" for u in layer.top_units)
    return f"""
<div class="card">
  <h2>Layer {index} · {html.escape(layer.name)}</h2>
  <div class="stats">{KIND_WORDS[layer.kind]}; x is {html.escape(x_words(index, layer))}</div>
  <div class="formula">{per_row if layer.rows is not None else ""}{html.escape(formula(index, layer))}</div>
  <div class="stats">Z: min {number(stats.min)} · max {number(stats.max)} · mean {number(stats.mean)}
  · std {number(stats.std)}<br>{active}</div>
  {_bars(layer)}
  <div class="stats">largest A: {top}</div>
</div>"""


def _bars(layer: LayerReport) -> str:
    """A per unit as an inline SVG bar chart (mean over rows for Mixer layers)."""
    if not layer.a_per_unit:
        return ""
    a = torch.tensor(layer.a_per_unit)
    if a.numel() > BAR_UNITS_MAX:
        a = a[: a.numel() // 2 * 2].reshape(-1, 2).mean(dim=1)
    scale = a.abs().max().clamp_min(1e-12).item()
    has_negative = bool((a < 0).any())
    height, base = (80, 40) if has_negative else (80, 80)
    span = base if has_negative else height
    step = 1000 / a.numel()
    rects = []
    for i, value in enumerate(a.tolist()):
        bar = abs(value) / scale * span
        y = base - bar if value >= 0 else base
        colour = CAT_COLOUR if value >= 0 else DOG_COLOUR
        rects.append(
            f'<rect x="{i * step:.2f}" y="{y:.2f}" width="{max(step * 0.8, 0.6):.2f}" '
            f'height="{bar:.2f}" fill="{colour}"/>'
        )
    return (
        f'<svg viewBox="0 0 1000 {height}" preserveAspectRatio="none" width="100%" height="{height}" '
        f'role="img" aria-label="A of each unit">{"".join(rects)}'
        f'<line x1="0" x2="1000" y1="{base}" y2="{base}" stroke="#9aa3b0" stroke-width="1"/></svg>'
    )


def _output_card(explanation: Explanation) -> str:
    index, head = len(explanation.layers), explanation.layers[-1]
    z, p_cat = explanation.z, explanation.p_cat
    largest = max((abs(c.contribution) for c in explanation.contributions), default=1.0) or 1.0
    rows = "".join(
        f'<span>w·x #{c.index}</span><span><span class="bar" style="display:block;'
        f"width:{abs(c.contribution) / largest * 100:.1f}%;background:"
        f'{CAT_COLOUR if c.contribution > 0 else DOG_COLOUR}"></span></span>'
        f"<span>{c.contribution:+.3f}</span>"
        for c in explanation.contributions
    )
    flip_note = ""
    if explanation.z_mirrored is not None:
        flip_note = f'<div class="formula">{html.escape(flip_average_words(explanation))}</div>'
    return f"""
<div class="card">
  <h2>Output · {html.escape(head.name)}: one unit, one number z</h2>
  <div class="row">
  <div style="flex: 1">
    <div class="formula">{html.escape(formula(index, head, output=True))} = {explanation.z_photo:.4f}</div>
    <p class="stats">x is {html.escape(x_words(index, head))}. z adds up
    {head.weight_shape[1]} terms w_j·x_j:
    <span class="cat">{explanation.terms_towards_cat:+.3f}</span> towards cat,
    <span class="dog">{explanation.terms_towards_dog:+.3f}</span> towards dog,
    and b = {number(explanation.bias)}.
    The largest terms:</p>
    <div class="terms">{rows}</div>
    {flip_note}
  </div>
  <div style="width: 380px">
    {_sigmoid_plot(z, p_cat, explanation.threshold)}
    <div class="formula">p_cat = sigmoid(z) = 1 / (1 + e<sup>−z</sup>) = {p_cat:.4f}</div>
    <p class="verdict {explanation.label}" style="font-size: 24px">{html.escape(decision(explanation))}</p>
  </div>
  </div>
</div>"""


def _sigmoid_plot(z: float, p_cat: float, threshold: float) -> str:
    """The curve p = sigmoid(z), the threshold, and this photo's point (z, p_cat) on it."""
    reach = max(6.0, math.ceil(abs(z)) + 1.0)  # always show the photo's z
    width, height, pad = 380, 190, 18

    def point(zz: float, p: float) -> tuple[float, float]:
        return pad + (zz + reach) / (2 * reach) * (width - 2 * pad), pad + (1 - p) * (height - 2 * pad)

    curve = " ".join(
        "{:.1f},{:.1f}".format(*point(zz, 1 / (1 + math.exp(-zz))))
        for zz in (reach * (2 * i / 120 - 1) for i in range(121))
    )
    x0, y_threshold = point(0, threshold)
    px, py = point(z, p_cat)
    colour = CAT_COLOUR if p_cat >= threshold else DOG_COLOUR
    return f"""<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"
  aria-label="p_cat = sigmoid(z)" style="font: 12px sans-serif">
  <line x1="{pad}" x2="{width - pad}" y1="{y_threshold:.1f}" y2="{y_threshold:.1f}" stroke="#9aa3b0"
    stroke-dasharray="4 3"/>
  <line x1="{x0:.1f}" x2="{x0:.1f}" y1="{pad}" y2="{height - pad}" stroke="#d5d9e0"/>
  <polyline points="{curve}" fill="none" stroke="#1d2430" stroke-width="2"/>
  <line x1="{px:.1f}" x2="{px:.1f}" y1="{py:.1f}" y2="{height - pad}" stroke="{colour}"
    stroke-dasharray="3 3"/>
  <circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{colour}"/>
  <text x="{width - pad}" y="{y_threshold - 5:.1f}" text-anchor="end" fill="#5b6472">
    threshold {threshold:g}</text>
  <text x="{px + 9:.1f}" y="{py + 16:.1f}" fill="{colour}">z = {z:.2f}, p_cat = {p_cat:.3f}</text>
  <text x="{pad}" y="{height - 3}" fill="#5b6472">z = {-reach:g}</text>
  <text x="{width - pad}" y="{height - 3}" text-anchor="end" fill="#5b6472">z = {reach:g}</text>
</svg>"""
