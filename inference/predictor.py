"""Checkpoint -> p_cat for files and folders, batched, with parallel decoding."""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datasets import decode_many, find_image_files
from models.checkpoint import load_classifier
from models.classifier import CLASS_NAMES, CatsDogsClassifier


@dataclass(frozen=True)
class Prediction:
    path: str
    p_cat: float
    label: str  # "cat" when p_cat >= threshold, else "dog"


class CatsDogsPredictor:
    """Decode, normalise and classify images exactly as training saw them.

    >>> predictor = CatsDogsPredictor.from_checkpoint("runs/mlp_article/version_0/checkpoints/best.ckpt")
    >>> predictor.predict_files(["photo.jpg"])
    """

    def __init__(
        self,
        classifier: CatsDogsClassifier,
        threshold: float = 0.5,
        batch_size: int = 256,
        workers: int = 0,
    ) -> None:
        self.classifier = classifier.eval()
        self.image_size = int(classifier.hparams.image_size)
        self.threshold = threshold
        self.batch_size = batch_size
        self.workers = workers

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: object) -> "CatsDogsPredictor":
        return cls(load_classifier(path), **kwargs)

    @torch.inference_mode()
    def p_cat(self, images: Tensor) -> Tensor:
        """uint8 images (B, 3, S, S) -> p_cat (B,)."""
        return self.classifier.p_cat(images)

    def label(self, p_cat: float) -> str:
        return CLASS_NAMES[int(p_cat >= self.threshold)]

    def predict_files(
        self,
        paths: Sequence[str | Path],
        on_error: Callable[[str, str], None] | None = None,
        progress: bool = False,
    ) -> Iterator[Prediction]:
        """Yield one Prediction per readable image; folders are searched recursively.

        An unreadable file gets no prediction; `on_error(path, reason)` hears about it.
        """
        files = find_image_files([str(p) for p in paths])
        batch_paths: list[str] = []
        batch_images: list[Tensor] = []
        decoded = decode_many(files, self.image_size, workers=self.workers, progress=progress)
        for path, image, reason in decoded:
            if image is None:
                if on_error is not None:
                    on_error(path, reason or "unreadable")
                continue
            batch_paths.append(path)
            batch_images.append(image)
            if len(batch_images) == self.batch_size:
                yield from self._classify(batch_paths, batch_images)
                batch_paths, batch_images = [], []
        if batch_images:
            yield from self._classify(batch_paths, batch_images)

    def _classify(self, paths: list[str], images: list[Tensor]) -> Iterator[Prediction]:
        p_cat = self.p_cat(torch.stack(images)).tolist()  # (B,)
        for path, p in zip(paths, p_cat, strict=True):
            yield Prediction(path, p, self.label(p))
