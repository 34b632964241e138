"""p_cat for photo files and folders: decoded exactly as training decoded them, in batches."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datasets import decode_many, find_image_files
from inference.loading import ExportedModel, load_model
from models import PCatModel, class_name


@dataclass(frozen=True)
class Prediction:
    """One file's answer; an unreadable file has p_cat and label None and says why in `error`."""

    path: str
    p_cat: float | None
    label: str | None  # "cat" when p_cat >= threshold, else "dog"
    error: str | None = None


class CatsDogsPredictor:
    """Decode, normalise and classify photos as training saw them.

    >>> predictor = CatsDogsPredictor.from_pretrained("runs/mlp_article/version_0/checkpoints/best.ckpt")
    >>> predictor = CatsDogsPredictor.from_pretrained("mlp_article")  # the weights in weights/
    >>> for prediction in predictor.predict_files(["photo.jpg", "folder/"]): ...

    `threshold` None uses the model's own (0.5 unless training changed it).
    """

    def __init__(
        self,
        model: PCatModel | ExportedModel,
        threshold: float | None = None,
        batch_size: int = 256,
        workers: int = 0,
    ) -> None:
        self.model = model.eval() if isinstance(model, PCatModel) else model
        self.image_size = model.image_size
        self.threshold = model.threshold if threshold is None else threshold
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold {threshold} is out of range; pass a p_cat in [0, 1]")
        self.batch_size, self.workers = batch_size, workers

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: object) -> "CatsDogsPredictor":
        """Whatever `inference.load_model` takes: a checkpoint, an export, a weights folder, a
        shipped name (`models.list_models(pretrained=True)`) or a Hub repo id."""
        return cls(load_model(source), **kwargs)

    @torch.inference_mode()
    def p_cat(self, images: Tensor) -> Tensor:
        """uint8 photos (B, 3, S, S) -> p_cat (B,)."""
        return self.model(images)

    def predict_files(self, paths: Sequence[str | Path], progress: bool = False) -> Iterator[Prediction]:
        """One Prediction per file, in order; folders are searched recursively."""
        files = find_image_files([str(p) for p in paths])
        batch: list[tuple[str, Tensor]] = []
        for path, image, reason in decode_many(
            files, self.image_size, workers=self.workers, progress=progress
        ):
            if image is None:
                yield from self._classify(batch)
                batch = []
                yield Prediction(path, None, None, error=reason)
                continue
            batch.append((path, image))
            if len(batch) == self.batch_size:
                yield from self._classify(batch)
                batch = []
        yield from self._classify(batch)

    def _classify(self, batch: list[tuple[str, Tensor]]) -> Iterator[Prediction]:
        if not batch:
            return
        p_cat = self.p_cat(torch.stack([image for _, image in batch])).tolist()  # (B,)
        for (path, _), p in zip(batch, p_cat, strict=True):
            yield Prediction(path, p, class_name(p, self.threshold))
