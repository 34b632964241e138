"""The zoo's two entry points, timm style, above the registry and the trained weights.

`create_model("mlp")` builds an untrained network (x -> z); `create_model("best",
pretrained=True)` loads a trained PCatModel (uint8 photos -> p_cat). The registry and
models.pretrained know nothing of each other; this file imports both.
"""

from torch import nn

from models.pretrained import list_pretrained, load_pretrained
from models.registry import ModelConfigError, create_network, list_networks


def create_model(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
    """Build a registered network; unknown names or arguments fail with the known ones listed.

    With `pretrained`, `name` is a zoo entry of `list_models(pretrained=True)` (or a weights
    folder, or a Hub repo id) and the result is its trained `PCatModel` in eval mode: uint8
    photos (B, 3, S, S) -> p_cat (B,), every argument fixed by the weights.
    """
    if not pretrained:
        return create_network(name, **kwargs)
    if kwargs:
        raise ModelConfigError(
            f"pretrained model '{name}' takes no arguments (got {', '.join(map(repr, kwargs))}): "
            "its weights fix them"
        )
    return load_pretrained(name)


def list_models(pretrained: bool = False) -> list[str]:
    """Registered network names; with `pretrained`, the zoo entries whose trained weights ship (weights/)."""
    return list_pretrained() if pretrained else list_networks()
