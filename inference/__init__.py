"""Use a trained network: load any checkpoint, export, weights folder, shipped name or Hub
repo id (`load_model`), predict files and folders (`CatsDogsPredictor`), export
(`inference.export`), write a Hub weights folder (`inference.hub`). Plain torch: no Lightning.

Run from the repository's folder (or put it on PYTHONPATH): the project's packages are
used in place, not installed (`datasets` would clash with Hugging Face's package).
"""

from inference.loading import ExportedModel, ModelFileError, load_model, read_checkpoint
from inference.predictor import CatsDogsPredictor, Prediction
from models import PCatModel

__all__ = [
    "CatsDogsPredictor",
    "ExportedModel",
    "ModelFileError",
    "PCatModel",
    "Prediction",
    "load_model",
    "read_checkpoint",
]
