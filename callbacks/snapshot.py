"""One snapshot of the network on the probe batch: every layer's W, b, Z, A, its units, pictures.

Z and A come from `forward_with_intermediates`, the same code path as the model's forward,
so the Z histogram is the real Z of that pass, not a re-computation.
"""

import warnings

import torch
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional.classification import binary_confusion_matrix

from callbacks import scalar_layout
from callbacks.figures import confusion_matrix_image, probe_grid, weight_templates
from callbacks.layer_stats import (
    RELU_LIKE,
    SATURATION_LIMITS,
    Histogram,
    activation_names,
    dead_fraction,
    histogram,
    saturated_fraction,
)
from callbacks.png_summary import add_png
from callbacks.probe import Probe
from models.layers import LayerTrace

GRID_IMAGES = 32  # probe images in the picture: enough to spot a pattern, cheap to encode as PNG


def probe_traces(network: nn.Module, x: Tensor) -> dict[str, LayerTrace]:
    """Every layer's Z and A on the probe input, in eval mode (no dropout), without gradients."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            _, traces = network.forward_with_intermediates(x)
    finally:
        network.train(was_training)
    return traces


def log_histograms(
    writer: SummaryWriter,
    network: nn.Module,
    traces: dict[str, LayerTrace],
    grad_histograms: dict[str, Histogram | None],
    bins: int,
    step: int,
) -> None:
    """`<layer>/W`, `/b`, `/Z`, `/A` and (when given) `/grad_W` for every layer."""
    layers = network.linear_layers()
    for name, trace in traces.items():
        tensors = {"Z": trace.z, "A": trace.a}
        if name in layers:
            tensors.update(W=layers[name].weight, b=layers[name].bias)
        summaries = {kind: histogram(values, bins) for kind, values in tensors.items() if values is not None}
        summaries["grad_W"] = grad_histograms.get(name)
        for kind, summary in summaries.items():
            if summary is not None:
                writer.add_histogram_raw(f"{name}/{kind}", *summary, global_step=step)


def log_unit_health(
    writer: SummaryWriter, network: nn.Module, traces: dict[str, LayerTrace], step: int
) -> None:
    """Share of dead (ReLU-like) or saturated (sigmoid/tanh) units of every layer on the probe."""
    for name, activation in activation_names(network).items():
        if name not in traces:
            continue
        if activation in RELU_LIKE:
            writer.add_scalar(f"{name}/{scalar_layout.DEAD_FRACTION}", dead_fraction(traces[name].a), step)
        if activation in SATURATION_LIMITS:
            fraction = saturated_fraction(traces[name].a, activation)
            writer.add_scalar(f"{name}/{scalar_layout.SATURATED_FRACTION}", fraction, step)


def log_pictures(
    writer: SummaryWriter,
    network: nn.Module,
    traces: dict[str, LayerTrace],
    probe: Probe,
    threshold: float,
    num_templates: int,
    step: int,
) -> None:
    """The first layer's weight templates and the probe images with their p_cat."""
    name, first = next(iter(network.linear_layers().items()))
    image_shape = tuple(probe.images.shape[1:])  # (C, H, W)
    # Only a layer that sees the flattened image has rows that are images (not, e.g., patches).
    if num_templates > 0 and first.in_features == image_shape[0] * image_shape[1] * image_shape[2]:
        add_png(writer, f"{name}/templates", weight_templates(first.weight, image_shape, num_templates), step)
    p_cat = traces[next(reversed(traces))].a  # (P,) the last layer is the head: its A is p_cat = sigmoid(z)
    shown = slice(0, GRID_IMAGES)
    grid = probe_grid(probe.images[shown], p_cat[shown], probe.labels[shown], threshold)
    add_png(writer, "probe/p_cat", grid, step)


def log_curves(
    writer: SummaryWriter, stage: str, p_cat: Tensor, labels: Tensor, threshold: float, step: int
) -> None:
    """The confusion matrix (as an image) and the precision-recall curve of one stage's predictions."""
    matrix = binary_confusion_matrix(p_cat, labels.long(), threshold=threshold)  # (2, 2)
    picture = confusion_matrix_image(matrix, f"{stage}, step {step}")
    add_png(writer, f"{stage}/confusion_matrix", picture, step)
    writer.add_pr_curve(f"{stage}/pr_curve", labels.cpu() == 1, p_cat.cpu(), step)  # cat is positive


def log_graph(writer: SummaryWriter, network: nn.Module, x: Tensor) -> Exception | None:
    """The model graph, traced in eval mode; returns the error when it cannot be traced.

    Tracing is best effort: a training run never stops for a picture.
    """
    was_training = network.training
    network.eval()
    try:
        with warnings.catch_warnings():
            # add_graph traces with torch.jit.trace, which torch deprecates; the graph is still right.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*", category=FutureWarning)
            writer.add_graph(network, x)
    except Exception as error:
        return error
    finally:
        network.train(was_training)
    return None
