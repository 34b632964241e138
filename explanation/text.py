"""An Explanation in plain words and numbers, layer by layer, the way the article tells it."""

from explanation.walk import Explanation, InputReport, LayerReport

KIND_WORDS = {
    "dense": "a dense layer",
    "token_mixing": "token mixing (W mixes the patches)",
    "channel_mixing": "channel mixing (W mixes the features)",
    "patch_embedding": "patch embedding (the same W for every patch)",
    "patch_merging": "patch merging (2x2 neighbouring patches become one, the same W for every group)",
    "output": "the output layer, one unit",
}
ROWS = {  # for layers applied row by row (Mixer): what one row is, and what its x holds
    "token_mixing": ("feature", "one feature across all {width} patches"),
    "channel_mixing": ("patch", "one patch's {width} features"),
    "patch_embedding": ("patch", "one patch's {width} values (3 colours × p × p)"),
    "patch_merging": ("patch", "the {width} features of 2x2 neighbouring patches, concatenated"),
}


def render_text(explanation: Explanation) -> str:
    lines = [f"Why the network '{explanation.network}' says {explanation.label} for {explanation.input.path}"]
    lines += ["", *_input_lines(explanation)]
    for index, layer in enumerate(explanation.layers, start=1):
        lines += ["", *_layer_lines(index, layer, explanation)]
    return "\n".join(lines) + "\n"


def shape(dims: list[int]) -> str:
    return "×".join(str(d) for d in dims)


def number(value: float) -> str:
    return f"{value:.4g}"


def formula(index: int, layer: LayerReport, output: bool = False) -> str:
    """`Z2 = W2 (256×512) · A1 (512) + b2 (256)`, with the shapes of this layer."""
    width = layer.weight_shape[1]
    x = f"A{index - 1}" if layer.x_is_previous_a else "x"
    if output:
        return f"z = w ({shape(layer.weight_shape)}) · {x} ({width}) + b (1)"
    weight, bias = shape(layer.weight_shape), shape(layer.bias_shape)
    return f"Z{index} = W{index} ({weight}) · {x} ({width}) + b{index} ({bias})"


def x_words(index: int, layer: LayerReport) -> str:
    """What the x of a layer is, in words: the previous A, or what its family declares."""
    if layer.x_is_previous_a:
        return f"A{index - 1}, the output of layer {index - 1}"
    return layer.x_is


def decision(explanation: Explanation) -> str:
    p_cat, threshold = explanation.p_cat, explanation.threshold
    sign = ">=" if p_cat >= threshold else "<"
    return f"{p_cat:.4f} {sign} {threshold:g}, so: {explanation.label}"


def normalisation_words(info: InputReport) -> str:
    """How the pixels became x, with the numbers used."""
    if info.input_norm == "per_image":
        return (
            "Every value was standardised with this photo's own mean m and std s over all its"
            " pixels and colours, x = (pixel - m) / s, which takes out brightness and contrast."
        )
    mean = ", ".join(f"{m:.3f}" for m in info.channel_mean)
    std = ", ".join(f"{s:.3f}" for s in info.channel_std)
    return (
        "Every value was normalised with the training photos' mean and std: "
        f"x = (pixel/255 - mean) / std, mean (R, G, B) = ({mean}), std = ({std})."
    )


def _input_lines(explanation: Explanation) -> list[str]:
    info = explanation.input
    size = info.image_size
    original = (
        f"The photo is {info.original_size[0]}×{info.original_size[1]} pixels. " if info.original_size else ""
    )
    lines = [
        "The input x",
        f"  {original}It was resized so its shorter side is {size} pixels and the central"
        f" {size}×{size} square kept,",
        "  3 colours per pixel. " + normalisation_words(info),
        f"  Flattened, that is the vector x of length 3·{size}·{size} = {info.x_length}"
        f" (min {number(info.x_stats.min)}, mean {number(info.x_stats.mean)},"
        f" max {number(info.x_stats.max)}).",
    ]
    first = explanation.layers[0]
    if first.kind == "patch_embedding":
        lines.append(
            f"  The network cuts the image into {first.rows} patches instead, each flattened the same way"
            f" into {first.weight_shape[1]} values: x ({shape(first.x_shape)})."
        )
    return lines


def _layer_lines(index: int, layer: LayerReport, explanation: Explanation) -> list[str]:
    if layer.kind == "output":
        return _output_lines(index, layer, explanation)
    title = f"Layer {index} ({layer.name}): {KIND_WORDS[layer.kind]}"
    out, width = layer.weight_shape
    if layer.rows is None:
        lines = [title, f"  {formula(index, layer)}   -> Z{index} ({out})"]
        if not layer.x_is_previous_a:
            lines.append(f"  where x is {x_words(index, layer)}.")
    else:
        row, row_words = ROWS[layer.kind]
        rows = f"{layer.rows} features" if row == "feature" else f"{layer.rows} patches"
        lines = [title, f"  For each of the {rows}: {formula(index, layer)}   -> Z{index} ({out})"]
        what = "" if layer.x_is_previous_a else f"{row_words.format(width=width)}, "
        lines.append(
            f"  where x is {what}one row of {x_words(index, layer)} ({shape(layer.x_shape)});"
            f" all rows together give Z{index} ({layer.rows}×{out})."
        )
    stats = layer.z_stats
    lines.append(
        f"  Z{index}: min {number(stats.min)}, mean {number(stats.mean)}, max {number(stats.max)},"
        f" std {number(stats.std)}"
    )
    g = f"{layer.activation}(norm(Z{index}))" if layer.normalised else f"{layer.activation}(Z{index})"
    if layer.activation == "identity":
        lines.append(f"  A{index} = Z{index}: no non-linearity here; the next step adds or mixes Z as it is.")
    elif layer.active is not None:
        lines.append(
            f"  A{index} = {g}: {layer.active} of {layer.units} units are active ({layer.active_when})."
        )
    else:
        lines.append(f"  A{index} = {g}.")
    if layer.top_units and layer.activation != "identity":
        lines.append(
            "  Strongest units (largest A): " + ", ".join(_unit(u.index, u.a, layer) for u in layer.top_units)
        )
    elif layer.top_units:
        lines.append("  Largest values: " + ", ".join(_unit(u.index, u.a, layer) for u in layer.top_units))
    return lines


def flip_average_words(explanation: Explanation) -> str:
    """The test-time flip averaging step, as one sentence (only when tta_flip is on)."""
    return (
        f"Test-time flip averaging: z = (z of this photo {explanation.z_photo:.4f} + z of its mirror "
        f"image {explanation.z_mirrored:.4f}) / 2 = {explanation.z:.4f}"
    )


def _output_lines(index: int, layer: LayerReport, explanation: Explanation) -> list[str]:
    z, width = explanation.z, layer.weight_shape[1]
    lines = [
        f"Output ({layer.name}): {KIND_WORDS['output']}",
        f"  {formula(index, layer, output=True)} = {explanation.z_photo:.4f}",
    ]
    if not layer.x_is_previous_a:
        lines.append(f"  where x is {x_words(index, layer)}.")
    lines += [
        f"  z adds up {width} terms w_j·x_j and b: {explanation.terms_towards_cat:+.4f} from the terms",
        f"  pushing towards cat, {explanation.terms_towards_dog:+.4f} from those pushing towards dog,"
        f" and b = {number(explanation.bias)}.",
    ]
    for side, sign in (("cat", 1), ("dog", -1)):
        terms = [c for c in explanation.contributions if c.contribution * sign > 0]
        if terms:
            listed = ", ".join(f"#{_term(c.index, explanation)} {c.contribution:+.3f}" for c in terms)
            lines.append(f"  Largest terms towards {side}: {listed}")
    if explanation.z_mirrored is not None:
        lines.append(f"  {flip_average_words(explanation)}")
    lines += [
        f"  p_cat = sigmoid(z) = 1 / (1 + e^(-z)) = 1 / (1 + e^({-z:.4f})) = {explanation.p_cat:.4f}",
        f"  {decision(explanation)}",
    ]
    return lines


def _term(index: int, explanation: Explanation) -> str:
    """A term of z by its index; for logistic regression also the pixel it weighs."""
    size = explanation.input.image_size
    if len(explanation.layers) > 1:
        return str(index)
    colour, row, column = index // (size * size), index // size % size, index % size
    return f"{index} ({'RGB'[colour]} at row {row}, column {column})"


def _unit(index: list[int], a: float, layer: LayerReport) -> str:
    if len(index) == 1:
        return f"#{index[0]} A={number(a)}"
    return f"#{index[1]} of {ROWS[layer.kind][0]} {index[0]} A={number(a)}"
