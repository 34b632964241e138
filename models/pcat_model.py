"""The article's whole path for one network: uint8 photo -> x -> Z = W x + b, A = g(Z) ... -> z -> p_cat.

`PCatModel` is what training produces and what every user of a trained network loads:
the zoo network plus everything else that turns a photo into p_cat (how pixels become
x, test-time flip averaging, the threshold). Its arguments are plain values, so its
`config` and its `state_dict` are all a checkpoint, an export or a shipped weights
folder needs. Plain torch: it runs without Lightning.
"""

from typing import Any, Literal

import torch
from torch import Tensor, nn

from models.labels import class_name
from models.layers import LayerOutput
from models.registry import ModelConfigError, create_network

InputNorm = Literal["dataset", "per_image"]
MIN_PIXEL_STD = 1.0  # per_image: a flat photo (std ~0) is divided by at most one grey level


class PCatModel(nn.Module):
    """uint8 photos (B, 3, S, S) -> p_cat (B,), through a registered zoo network.

    Args:
        network: Registered model name (`models.list_models()`), e.g. `mlp`, `logreg`.
        network_kwargs: Arguments of that model's builder, e.g. `{hidden_dims: [512, 256, 128]}`.
        image_size: Side S of the square input photo.
        input_norm: How pixels become x: "dataset" uses the per-channel mean and std of the
            training photos, (pixel/255 - mean) / std; "per_image" standardises each photo
            by its own mean and std, which takes out brightness and contrast.
        tta_flip: Outside training, z is the mean of the logits of the photo and of its
            mirror image (a mirrored cat is still a cat): twice the cost, steadier p_cat.
        threshold: p_cat at or above which a photo is called a cat.
    """

    def __init__(
        self,
        network: str = "mlp",
        network_kwargs: dict[str, Any] | None = None,
        image_size: int = 64,
        input_norm: InputNorm = "dataset",
        tta_flip: bool = False,
        threshold: float = 0.5,
    ) -> None:
        super().__init__()
        if input_norm not in ("dataset", "per_image"):
            raise ModelConfigError(f"input_norm '{input_norm}' is unknown; choose dataset or per_image")
        if not 0 <= threshold <= 1:  # NaN fails too
            raise ModelConfigError(f"threshold {threshold} is out of range; pass a p_cat in [0, 1]")
        self.network_name, self.network_kwargs = network, dict(network_kwargs or {})
        self.image_size, self.input_norm = int(image_size), input_norm
        self.tta_flip, self.threshold = bool(tta_flip), float(threshold)
        self.network = create_network(network, image_size=image_size, **self.network_kwargs)
        # Measured on the training photos (set_channel_stats) and saved with the weights.
        self.register_buffer("channel_mean", torch.full((3,), 0.5))
        self.register_buffer("channel_std", torch.full((3,), 0.25))

    @property
    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this model: with its state_dict, all a file needs."""
        return {
            "network": self.network_name,
            "network_kwargs": dict(self.network_kwargs),
            "image_size": self.image_size,
            "input_norm": self.input_norm,
            "tta_flip": self.tta_flip,
            "threshold": self.threshold,
        }

    def set_channel_stats(self, mean: Tensor, std: Tensor) -> None:
        self.channel_mean.copy_(torch.as_tensor(mean))
        # A constant channel would divide by zero; 1e-3 of the pixel range is "no spread".
        self.channel_std.copy_(torch.as_tensor(std).clamp_min(1e-3))

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, S, S) -> float x (B, 3, S, S), the input vector of the first layer."""
        x = images.float()
        if self.input_norm == "per_image":
            std, mean = torch.std_mean(x, dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1) each
            return (x - mean) / std.clamp_min(MIN_PIXEL_STD)
        return (x / 255 - self.channel_mean.view(1, 3, 1, 1)) / self.channel_std.view(1, 3, 1, 1)

    def logits(self, images: Tensor) -> Tensor:
        """uint8 photos -> z (B,); flip-averaged outside training when tta_flip is on."""
        x = self.normalize(images)
        z = self.network(x)
        if self.tta_flip and not self.training:
            # Averaging logits (not probabilities) keeps z a sum of W x + b terms.
            z = (z + self.network(x.flip(-1))) / 2
        return z

    def forward(self, images: Tensor) -> Tensor:
        """The article's output: p_cat = sigmoid(z)."""
        return torch.sigmoid(self.logits(images))

    def forward_with_intermediates(self, images: Tensor) -> tuple[Tensor, dict[str, LayerOutput]]:
        """z of the photo itself (no flip) and every layer's Z and A, from the network's own forward."""
        return self.network.forward_with_intermediates(self.normalize(images))

    def label(self, p_cat: float) -> str:
        return class_name(p_cat, self.threshold)
