"""Checkpoint or exported model -> p_cat for files and folders, batched, with parallel decoding.

A training checkpoint needs the LightningModule to rebuild; a file written by export.py
(ONNX, TorchScript, safetensors) runs with plain torch or onnxruntime, so the checkpoint
loader (and with it Lightning) is imported only when a checkpoint is opened.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from datasets import decode_many, find_image_files
from deploy import EXPORT_SUFFIXES, is_exported_model, load_checkpoint_pipeline, load_exported

CLASS_NAMES = {1: "cat", 0: "dog"}  # cat is the positive class: p_cat >= threshold means label 1


class PCatModel(Protocol):
    """What the predictor needs: an exported model (deploy.ExportedModel) or a checkpoint's classifier."""

    image_size: int
    threshold: float

    def p_cat(self, images: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Prediction:
    path: str
    p_cat: float
    label: str  # "cat" when p_cat >= threshold, else "dog"


class CatsDogsPredictor:
    """Decode, normalise and classify images exactly as training saw them.

    >>> predictor = CatsDogsPredictor.from_file("runs/mlp_article/version_0/checkpoints/best.ckpt")
    >>> predictor = CatsDogsPredictor.from_file("model.onnx")  # or .pt, .safetensors from export.py
    >>> predictor.predict_files(["photo.jpg"])

    `model` is a deploy.ExportedModel or a CatsDogsClassifier (models.checkpoint.load_classifier);
    `threshold` None uses the one the model was trained with (0.5 unless configured).
    """

    def __init__(
        self,
        model: PCatModel,
        threshold: float | None = None,
        batch_size: int = 256,
        workers: int = 0,
    ) -> None:
        self.model = model if hasattr(model, "image_size") else _ClassifierModel(model)
        self.image_size = int(self.model.image_size)
        self.threshold = float(self.model.threshold if threshold is None else threshold)
        self.batch_size = batch_size
        self.workers = workers

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: object) -> "CatsDogsPredictor":
        """A training checkpoint or a file written by export.py, told apart as in `is_export_file`."""
        if is_export_file(path):
            return cls(load_exported(path), **kwargs)
        return cls.from_checkpoint(path, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: object) -> "CatsDogsPredictor":
        # The network rebuilt with plain torch: predicting never needs Lightning.
        return cls(load_checkpoint_pipeline(path), **kwargs)

    @torch.inference_mode()
    def p_cat(self, images: Tensor) -> Tensor:
        """uint8 images (B, 3, S, S) -> p_cat (B,)."""
        return self.model.p_cat(images)

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


def is_export_file(path: str | Path) -> bool:
    """True for a file export.py wrote (by content), or a path named like one (.onnx, .safetensors).

    A .pt file that is a plain torch.save checkpoint, not TorchScript, counts as a checkpoint.
    """
    suffix = Path(path).suffix.lower()
    return is_exported_model(path) or (suffix in EXPORT_SUFFIXES and EXPORT_SUFFIXES[suffix] != "torchscript")


class _ClassifierModel:
    """A CatsDogsClassifier seen through the PCatModel interface."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        self.classifier = classifier.eval()
        self.image_size = int(classifier.hparams.image_size)
        self.threshold = float(classifier.hparams.get("threshold", 0.5))

    def p_cat(self, images: Tensor) -> Tensor:
        return self.classifier.p_cat(images)
