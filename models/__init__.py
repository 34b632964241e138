"""The model zoo: nn.Linear networks where every layer is Z = W x + b.

Each family file is imported here explicitly so its variants register.
"""

from models import mixer, mlp, resmlp, shift_mlp  # noqa: F401  (each family registers its variants)
from models.layers import DenseLayer, LayerTrace
from models.registry import ModelConfigError, create_model, list_models, register_model

__all__ = [
    "DenseLayer",
    "LayerTrace",
    "ModelConfigError",
    "create_model",
    "list_models",
    "register_model",
]
