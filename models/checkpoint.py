"""Load a training checkpoint for inference without running any pickled code.

Reading a checkpoint needs only torch; rebuilding the LightningModule (`load_classifier`)
imports Lightning on first use, so predicting with deploy's loader starts fast.
"""

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from models.version import CHECKPOINT_FORMAT, PROJECT_VERSION

if TYPE_CHECKING:
    from models.classifier import CatsDogsClassifier


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True: tensors and plain data only, never code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"refusing to load '{path}': it holds objects other than tensors and plain data "
            f"({first_line}); only load checkpoints from a source you trust"
        ) from None
    # A damaged or foreign file fails in many ways inside torch.load; each is one line here.
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, TypeError, KeyError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(
            f"'{path}' is not a readable checkpoint (truncated or not a PyTorch file: {first_line})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"'{path}' is a PyTorch file but not a checkpoint written by train.py")
    written_by = checkpoint.get("catsdogs", {})  # absent in checkpoints older than format 1
    written_by = written_by if isinstance(written_by, dict) else {}
    checkpoint_format = written_by.get("format", 0)
    if not isinstance(checkpoint_format, int) or checkpoint_format > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'{path}' was written by catsdogs-zoo {written_by.get('project_version', '?')} in checkpoint "
            f"format {checkpoint_format}; this is version {PROJECT_VERSION}, which reads format "
            f"{CHECKPOINT_FORMAT} and older: update the code to load it"
        )
    return checkpoint


def classifier_hyperparameters(checkpoint: dict) -> dict:
    """The classifier's own arguments, without LightningCLI's bookkeeping (class path, instantiator)."""
    return {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}


def load_classifier(path: str | Path) -> "CatsDogsClassifier":
    """Rebuild the trained classifier (network + input normalisation) in eval mode, on CPU."""
    from models.classifier import CatsDogsClassifier  # Lightning, only when a LightningModule is wanted

    checkpoint = read_checkpoint(path)
    try:
        classifier = CatsDogsClassifier(**classifier_hyperparameters(checkpoint))
        classifier.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"'{path}' does not match this version's models: {first_line}") from None
    return classifier.eval()
