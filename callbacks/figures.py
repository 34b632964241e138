"""Pictures for TensorBoard's Images tab, drawn with Pillow (already a dependency).

Each function returns a (3, H, W) uint8 tensor, as `png_summary.add_png` takes it.
"""

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

CAT = 1  # the positive class: label 1, p_cat = sigmoid(z)
CLASS_NAMES = ("dog", "cat")  # index = label
RIGHT, WRONG = (40, 170, 70), (220, 30, 30)
MIN_TEMPLATE = 48  # templates of small inputs (16x16) are upscaled to this width to be seen
MIN_TILE = 64  # probe images are drawn at least this wide so their caption fits under them
CAPTION = 16  # pixels of caption band under each probe image
BORDER = 4  # pixels of green (right) or red (wrong) frame around each probe image


def weight_templates(weight: Tensor, image_shape: tuple[int, int, int], count: int) -> Tensor:
    """The first `count` rows of W (out, C*H*W), each reshaped to an image: what a unit looks for.

    Each template is min-max scaled on its own, so its strongest positive weight is
    brightest and its strongest negative weight darkest, whatever the layer's scale.
    """
    rows = weight[:count].detach().float()  # (count, C*H*W)
    low, high = rows.aminmax(dim=1, keepdim=True)  # (count, 1) each
    scaled = ((rows - low) / (high - low).clamp_min(1e-12) * 255).to(torch.uint8)
    tiles = scaled.cpu().numpy().reshape(-1, *image_shape)  # (count, C, H, W)
    scale = max(1, math.ceil(MIN_TEMPLATE / image_shape[-1]))
    tiles = tiles.repeat(scale, axis=2).repeat(scale, axis=3)  # nearest-neighbour upscaling
    return torch.from_numpy(_tile(tiles, padding=1, fill=255))  # (C, H', W') uint8


def probe_grid(images: Tensor, p_cat: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """Probe images with their p_cat under each; a red frame marks a wrong call, green a right one."""
    side = images.shape[-1]
    scale = max(1, math.ceil(MIN_TILE / side))  # nearest-neighbour upscaling keeps pixels crisp
    font = ImageFont.load_default()
    tiles = []
    for image, p, label in zip(images.cpu().numpy(), p_cat.tolist(), labels.tolist(), strict=True):
        wrong = (p >= threshold) != (label == CAT)
        picture = Image.fromarray(image.transpose(1, 2, 0))  # (H, W, C) uint8
        picture = picture.resize((side * scale, side * scale), Image.NEAREST)
        size = (picture.width + 2 * BORDER, picture.height + 2 * BORDER + CAPTION)
        tile = Image.new("RGB", size, WRONG if wrong else RIGHT)
        tile.paste(picture, (BORDER, BORDER))
        caption = f"p_cat={p:.2f}"
        ImageDraw.Draw(tile).text((BORDER, picture.height + 2 * BORDER), caption, fill="white", font=font)
        tiles.append(np.asarray(tile).transpose(2, 0, 1))  # (3, h, w)
    return torch.from_numpy(_tile(np.stack(tiles), padding=2, fill=255))  # (3, H', W') uint8


def confusion_matrix_image(matrix: Tensor, title: str) -> Tensor:
    """A 2x2 confusion matrix (rows: true dog/cat, columns: predicted dog/cat) as a picture.

    Cells are shaded by the share of their row, so the diagonal reads as each class's recall.
    """
    cell, left, top = 110, 80, 56
    font = ImageFont.load_default()
    picture = Image.new("RGB", (left + 2 * cell + 10, top + 2 * cell + 10), "white")
    draw = ImageDraw.Draw(picture)
    draw.text((10, 6), title, fill="black", font=font)
    draw.text((left, 24), "predicted", fill="black", font=font)
    counts = matrix.detach().cpu().long()
    for column, name in enumerate(CLASS_NAMES):
        draw.text((left + column * cell + cell // 2 - 8, top - 16), name, fill="black", font=font)
    for row, name in enumerate(CLASS_NAMES):
        draw.text((10, top + row * cell + cell // 2 - 6), f"true {name}", fill="black", font=font)
        row_total = max(1, int(counts[row].sum()))
        for column in range(2):
            share = int(counts[row, column]) / row_total
            shade = int(255 * (1 - 0.8 * share))  # white (0%) to dark blue (100%)
            box = (left + column * cell, top + row * cell, left + (column + 1) * cell, top + (row + 1) * cell)
            draw.rectangle(box, fill=(shade, shade, 255), outline="black")
            text = f"{int(counts[row, column])}\n{share:.0%}"
            ink = "white" if share > 0.5 else "black"
            draw.multiline_text((box[0] + cell // 2 - 14, box[1] + cell // 2 - 12), text, fill=ink, font=font)
    return torch.from_numpy(_rgb_array(picture))  # (3, H, W) uint8


def _tile(tiles: np.ndarray, padding: int, fill: int) -> np.ndarray:
    """(N, C, h, w) -> one (C, H, W) picture, tiles in a near-square grid with `padding` between.

    numpy instead of torchvision's make_grid: one copy instead of one parallel copy per tile.
    """
    count, channels, height, width = tiles.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.full((channels, rows, height + padding, columns, width + padding), fill, dtype=np.uint8)
    padded = np.full((rows * columns, channels, height, width), fill, dtype=np.uint8)
    padded[:count] = tiles
    grid[:, :, :height, :, :width] = padded.reshape(rows, columns, channels, height, width).transpose(
        2, 0, 3, 1, 4
    )
    return np.ascontiguousarray(
        grid.reshape(channels, rows * (height + padding), columns * (width + padding))
    )


def _rgb_array(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1).copy()  # (3, H, W)
