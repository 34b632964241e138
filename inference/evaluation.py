"""A labelled folder scored by a trained network: each photo's p_cat next to its label from the
folder's layout (datasets/layouts.py, as train.py reads it), and the most confident mistakes.
Shared by evaluate.py and the live page's sample photos (explanation/live.py)."""

import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from datasets import DataError, decode_many
from datasets.layouts import LAYOUT_SHAPES, list_entries, resolve_layout
from inference.loading import ExportedModel
from models import CAT, PCatModel


@dataclass
class ScoredFolder:
    layout: str
    paths: list[str]  # the folder joined with each photo's path in it, as decoded
    images: Tensor  # uint8 (N, 3, S, S), decoded as training decodes them
    labels: Tensor  # int64 (N,), 1 = cat
    p_cat: Tensor  # float32 (N,)
    skipped: list[tuple[str, str]]  # (path, reason) of the files that did not decode


def labelled_photos(folder: str | os.PathLike, limit: int | None = None) -> tuple[str, list[str], list[int]]:
    """(layout, paths, labels) of the folder's photos. A layout with a held-out part (split_folders'
    validation/, Oxford's test.txt) gives that part only: the photos train.py tests on. `limit`
    spreads that many over the sorted list, cats and dogs alike."""
    if not os.path.isdir(folder):
        raise DataError(f"'{folder}' {'is not a folder' if os.path.exists(folder) else 'does not exist'}")
    try:
        layout = resolve_layout(folder)
    except DataError:
        shapes = "; ".join(LAYOUT_SHAPES.values())
        raise DataError(
            f"'{folder}' has no cat or dog labels: it needs a layout train.py reads ({shapes})"
        ) from None
    entries = list_entries(folder, layout)
    entries = [entry for entry in entries if entry.source_split == "test"] or entries
    if limit is not None:
        entries = entries[:: max(1, math.ceil(len(entries) / limit))]  # at most `limit`, first to last
    return layout, [os.path.join(folder, entry.path) for entry in entries], [e.label for e in entries]


@torch.inference_mode()
def score_folder(
    model: PCatModel | ExportedModel,
    folder: str | os.PathLike,
    limit: int | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> ScoredFolder:
    """Decode and score a labelled folder's photos (`labelled_photos`); DataError when it has none."""
    layout, paths, labels = labelled_photos(folder, limit)
    kept, images, skipped = [], [], []
    decoded = decode_many(paths, model.image_size, progress=progress)
    for (path, image, reason), label in zip(decoded, labels, strict=True):
        if image is None:
            skipped.append((path, reason))
        else:
            kept.append((path, label))
            images.append(image)
    if not images:
        raise DataError(f"'{folder}' has no readable photo to score")
    stacked = torch.stack(images)  # (N, 3, S, S)
    p_cat = torch.cat([model(stacked[i : i + batch_size]) for i in range(0, len(stacked), batch_size)])
    paths, labels = zip(*kept, strict=True)
    return ScoredFolder(layout, list(paths), stacked, torch.tensor(labels), p_cat.float(), skipped)


def confident_mistakes(p_cat: Tensor, labels: Tensor, threshold: float, count: int) -> list[int]:
    """Indices of the (at most) `count` wrong calls the network was surest of, surest first: fastai's
    top losses, as the binary cross-entropy grows with |p_cat - label|."""
    wrong = (p_cat >= threshold) != (labels == CAT)
    distance = torch.where(wrong, (p_cat - labels.float()).abs(), -1.0)
    return distance.argsort(descending=True, stable=True)[: min(count, int(wrong.sum()))].tolist()
