"""Network name -> builder. Families register their variants with @register_model.

It builds networks (x -> z) and imports nothing of the zoo: each family file imports it.
Trained weights by name are `models.pretrained`'s; `models.create_model` sits above both.
"""

import inspect
from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


class ModelConfigError(ValueError):
    """A model name or argument that does not exist; the message says which ones do."""


def register_model(builder: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
    """Register a variant function under its own name (timm style), or a model class under `name`.

    The builder's signature is the model's argument list: `create_network` checks it and
    LightningCLI users see it in errors, so a class is registered directly rather than
    wrapped in a function that repeats its arguments.
    """
    name = name or builder.__name__
    if name in _BUILDERS:
        raise ValueError(f"model '{name}' is registered twice")
    _BUILDERS[name] = builder
    return builder


def list_networks() -> list[str]:
    """Registered network names."""
    return sorted(_BUILDERS)


def create_network(name: str, **kwargs: object) -> nn.Module:
    """Build a registered network; unknown names or arguments fail with the known ones listed."""
    builder = _builder(name)
    accepted = dict(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelConfigError(
            f"model '{name}' has no argument {', '.join(repr(k) for k in unknown)}; "
            f"it takes: {', '.join(accepted)}"
        )
    try:
        return builder(**kwargs)
    except ModelConfigError:
        raise
    except ValueError as error:  # a value the model cannot take (an unknown activation, dropout 1.5)
        raise ModelConfigError(f"model '{name}': {error}") from error


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _BUILDERS:
        raise ModelConfigError(f"unknown model '{name}'; known models: {', '.join(list_networks())}")
    return _BUILDERS[name]
