"""The model zoo: nn.Linear networks where every layer is Z = W x + b.

Each family file is imported here explicitly so its variants register. Everything in
this package is plain torch except `models.classifier`, the LightningModule that trains
a network.
"""

from models import mixer, mlp, resmlp, shift_mlp  # noqa: F401  (each family registers its variants)
from models.create import create_model, list_models
from models.labels import CAT, CLASS_NAMES, DOG, class_name
from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
from models.pcat_model import PCatModel
from models.pretrained import ModelFileError, list_pretrained, load_pretrained
from models.registry import ModelConfigError, register_model

PROJECT_VERSION = "0.2.0"  # keep equal to pyproject.toml's version (a test checks)
CHECKPOINT_FORMAT = 2  # bump when older code would misread a checkpoint written by this one

__all__ = [
    "CAT",
    "CHECKPOINT_FORMAT",
    "CLASS_NAMES",
    "DOG",
    "PROJECT_VERSION",
    "DenseLayer",
    "Layer",
    "LayerOutput",
    "ModelConfigError",
    "ModelFileError",
    "PCatModel",
    "class_name",
    "create_model",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "register_model",
    "ZooNetwork",
]
