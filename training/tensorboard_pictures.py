"""Pictures for TensorBoard: what first-layer units look for, the probe photos with p_cat,
and the confusion matrix. Each returns what SummaryWriter.add_image / add_figure takes."""

import torch
from torch import Tensor
from torch.nn.functional import interpolate
from torchvision.utils import draw_bounding_boxes, make_grid

from models.labels import CAT, CLASS_NAMES

MIN_TILE = 96  # photos are drawn at least this wide so their p_cat caption fits
RIGHT, WRONG = (40, 170, 70), (220, 30, 30)


def weight_templates(weight: Tensor, image_shape: torch.Size, count: int) -> Tensor:
    """The first `count` rows of W (out, C*H*W), each reshaped to a photo and scaled on its own
    (brightest: its largest positive weight, darkest: its most negative): what a unit looks for."""
    rows = weight[:count].detach().float().cpu().reshape(-1, *image_shape)  # (count, C, H, W)
    rows = interpolate(rows, scale_factor=max(1, 48 // image_shape[-1]), mode="nearest")
    return make_grid(rows, nrow=int(len(rows) ** 0.5 + 0.999), normalize=True, scale_each=True, padding=1)


def probe_grid(images: Tensor, p_cat: Tensor, labels: Tensor, threshold: float, shown: int = 16) -> Tensor:
    """Probe photos with p_cat written on each, framed green where the call is right, red where wrong."""
    images = images[:shown].cpu()
    scale = max(1, -(-MIN_TILE // images.shape[-1]))
    tiles = interpolate(images.float(), scale_factor=scale, mode="nearest").to(torch.uint8)  # (N, 3, s, s)
    side, columns, pad = tiles.shape[-1], 8, 2
    grid = make_grid(tiles, nrow=columns, padding=pad, pad_value=255)  # (3, H, W) uint8
    boxes, captions, colours = [], [], []
    for i, (p, label) in enumerate(zip(p_cat[:shown].tolist(), labels[:shown].tolist(), strict=True)):
        left, top = pad + (i % columns) * (side + pad), pad + (i // columns) * (side + pad)
        boxes.append([left, top, left + side - 1, top + side - 1])
        captions.append(f"p_cat {p:.2f}")
        colours.append(RIGHT if (p >= threshold) == (label == CAT) else WRONG)
    return draw_bounding_boxes(grid, torch.tensor(boxes), captions, colours, width=3, fill=False)


def confusion_matrix_figure(p_cat: Tensor, labels: Tensor, threshold: float, title: str):
    """torchmetrics' plot of the 2x2 confusion matrix (rows: true dog, cat; columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")  # draws to memory: training machines have no screen
    from torchmetrics.classification import BinaryConfusionMatrix

    # The photos of every rank are already here (rank 0 draws): no gathering again under DDP.
    matrix = BinaryConfusionMatrix(threshold=threshold, sync_on_compute=False)
    matrix.update(p_cat, labels.long())
    figure, axes = matrix.plot(labels=list(CLASS_NAMES))
    axes.set_title(title)
    return figure
