"""Name -> model builder. Families register their variants with @register_model."""

import inspect
from collections.abc import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


class ModelConfigError(ValueError):
    """A model name or argument that does not exist; the message says which ones do."""


def register_model(builder: Callable[..., nn.Module], name: str | None = None) -> Callable[..., nn.Module]:
    """Register a variant function under its own name (timm style), or a model class under `name`.

    The builder's signature is the model's argument list: `create_model` checks it and
    LightningCLI users see it in errors, so a class is registered directly rather than
    wrapped in a function that repeats its arguments.
    """
    name = name or builder.__name__
    if name in _BUILDERS:
        raise ValueError(f"model '{name}' is registered twice")
    _BUILDERS[name] = builder
    return builder


def list_models(pretrained: bool = False) -> list[str]:
    """Registered model names; with `pretrained`, the zoo entries whose trained weights ship (weights/)."""
    if pretrained:
        from models.pretrained import list_pretrained  # here: pretrained.py imports this module

        return list_pretrained()
    return sorted(_BUILDERS)


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(_builder(name)).parameters)


def create_model(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
    """Build a registered model; unknown names or arguments fail with the known ones listed.

    With `pretrained`, `name` is a zoo entry of `list_models(pretrained=True)` (or a weights
    folder, or a Hub repo id) and the result is its trained `PCatModel` in eval mode: uint8
    photos (B, 3, S, S) -> p_cat (B,), every argument fixed by the weights.
    """
    if pretrained:
        if kwargs:
            raise ModelConfigError(
                f"pretrained model '{name}' takes no arguments (got {', '.join(map(repr, kwargs))}): "
                "its weights fix them"
            )
        from models.pretrained import load_pretrained  # here: pretrained.py imports this module

        return load_pretrained(name)
    builder = _builder(name)
    accepted = model_arguments(name)
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
        raise ModelConfigError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _BUILDERS[name]
