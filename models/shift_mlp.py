"""Hierarchical spatial-shift MLP: patches mixed by nn.Linear layers and parameter-free shifts.

The Mixer's token-mixing layer sees every patch at once, so it must learn from 2,000
photos that neighbouring patches matter most. Here every parameterised layer is still a
per-token Z = W x + b over channels; tokens talk only through a fixed one-token shift of
a quarter of the channels in each of the four directions (Yu et al., "S2-MLP:
Spatial-Shift MLP Architecture for Vision", 2021), so locality is built in, and stages
merge 2x2 neighbouring tokens into one (a Linear over their concatenation, as in Swin)
so later layers see larger parts of the photo at a coarser grid.

Layer names say what W mixes: `channel` layers mix one token's features, `merge` layers
one 2x2 group's concatenated features; Z and A are recorded as (B, tokens, features).
"""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, LayerTrace, TracedModel
from models.patches import image_patches, merge_neighbours
from models.registry import ModelConfigError, register_model


def spatial_shift(h: Tensor) -> Tensor:
    """(B, H, W, C): each quarter of the channels moves one token down, up, right or left.

    Border tokens keep their own values where nothing shifts in. No parameters: after the
    shift, the next Linear at one token mixes features of its four neighbours.
    """
    q = h.shape[-1] // 4
    out = h.clone()
    out[:, 1:, :, :q] = h[:, :-1, :, :q]
    out[:, :-1, :, q : 2 * q] = h[:, 1:, :, q : 2 * q]
    out[:, :, 1:, 2 * q : 3 * q] = h[:, :, :-1, 2 * q : 3 * q]
    out[:, :, :-1, 3 * q :] = h[:, :, 1:, 3 * q :]
    return out


class ShiftBlock(nn.Module):
    """h + post_shift(shift(pre_shift(LN(h)))), then h + fc2(fc1(LN(h))); every layer per token."""

    def __init__(self, width: int, expansion: int, dropout: float, drop_path: float) -> None:
        super().__init__()
        self.shift_norm = nn.LayerNorm(width)
        self.pre_shift_channel_fc = DenseLayer(width, width, "gelu")
        self.post_shift_channel_fc = DenseLayer(width, width, "identity", dropout=dropout)
        self.channel_norm = nn.LayerNorm(width)
        self.channel_fc1 = DenseLayer(width, width * expansion, "gelu", dropout=dropout)
        self.channel_fc2 = DenseLayer(width * expansion, width, "identity", dropout=dropout)
        self.drop_path = DropPath(drop_path)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): in training, drop a residual branch for a random
    share `rate` of the images and scale the kept ones by 1 / (1 - rate).

    torchvision.ops.StochasticDepth(rate, "row") computes the same; importing torchvision
    would add ~3 s to predict.py's start-up, which needs nothing else from it.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, branch: Tensor) -> Tensor:
        if not self.training or self.rate == 0:
            return branch
        keep = torch.rand(branch.shape[0], *[1] * (branch.ndim - 1), device=branch.device) >= self.rate
        return branch * keep / (1 - self.rate)  # (B, ...): whole images kept or dropped


class Merge(nn.Module):
    """2x2 neighbouring tokens -> one token: LN over their concatenation, then Z = W x + b."""

    def __init__(self, width: int, out_width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * width)
        self.merge = DenseLayer(4 * width, out_width, "identity")


class ShiftMLP(TracedModel):
    """Patches -> stages of shift blocks, halving the grid between stages -> LN -> mean -> one logit.

    Args:
        patch_size: Side of the first patches in pixels (64 px / 4 = a 16x16 grid).
        widths: Features per token in each stage; one stage per entry.
        depths: Shift blocks per stage.
        expansion: Hidden width of each channel MLP, as a multiple of the stage width.
        dropout: Dropout on the A of the blocks' layers.
        drop_path: Stochastic depth of the last block; earlier blocks get linearly less.
    """

    LAYER_NAMES = ("pre_shift_channel_fc", "post_shift_channel_fc", "channel_fc1", "channel_fc2")

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        patch_size: int = 4,
        widths: tuple[int, ...] = (64, 128, 256),
        depths: tuple[int, ...] = (2, 2, 2),
        expansion: int = 3,
        dropout: float = 0.0,
        drop_path: float = 0.1,
    ) -> None:
        super().__init__()
        widths, depths = tuple(widths), tuple(depths)
        if len(widths) != len(depths) or not widths:
            raise ModelConfigError(
                f"widths {widths} and depths {depths} must name the same stages, at least one"
            )
        if patch_size < 1:
            raise ModelConfigError(f"patch_size {patch_size} must be at least 1 pixel")
        grid = image_size // patch_size
        if image_size % patch_size or grid % 2 ** (len(widths) - 1):
            raise ModelConfigError(
                f"image_size {image_size} must split into {patch_size}-pixel patches and be halved "
                f"{len(widths) - 1} times; use an image size that is a multiple of "
                f"{patch_size * 2 ** (len(widths) - 1)}"
            )
        if any(w % 4 for w in widths):
            raise ModelConfigError(f"widths {widths} must be multiples of 4 (a quarter shifts each way)")
        self.input_shape = (in_channels, image_size, image_size)
        self.patch_size = patch_size
        self.embed = DenseLayer(in_channels * patch_size * patch_size, widths[0], "identity")
        rates = torch.linspace(0, drop_path, sum(depths), device="cpu").tolist()  # numbers, even on "meta"
        self.merges = nn.ModuleList(Merge(widths[i - 1], widths[i]) for i in range(1, len(widths)))
        self.stages = nn.ModuleList()
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            first = sum(depths[:stage])
            self.stages.append(
                nn.ModuleList(ShiftBlock(width, expansion, dropout, rates[first + i]) for i in range(depth))
            )
        self.norm = nn.LayerNorm(widths[-1])
        self.head = nn.Linear(widths[-1], 1)

    def linear_layers(self) -> dict[str, nn.Linear]:
        layers = {"embed": self.embed.linear}
        for s, blocks in enumerate(self.stages, start=1):
            if s > 1:
                layers[f"stage{s}.merge"] = self.merges[s - 2].merge.linear
            for b, block in enumerate(blocks, start=1):
                for name in self.LAYER_NAMES:
                    layers[f"stage{s}.block{b}.{name}"] = getattr(block, name).linear
        layers["head"] = self.head
        return layers

    def _run(self, x: Tensor, record: dict[str, LayerTrace] | None) -> Tensor:
        def keep(name: str, z: Tensor, a: Tensor) -> None:
            if record is not None:  # tokens flattened: (B, H*W, features), like the Mixer's
                record[name] = LayerTrace(z.flatten(1, 2), a.flatten(1, 2))

        z, h = self.embed.forward_with_z(image_patches(x, self.patch_size))  # (B, H, W, D)
        keep("embed", z, h)
        for s, blocks in enumerate(self.stages, start=1):
            if s > 1:
                merge = self.merges[s - 2]
                z, h = merge.merge.forward_with_z(merge.norm(merge_neighbours(h)))
                keep(f"stage{s}.merge", z, h)
            for b, block in enumerate(blocks, start=1):
                prefix = f"stage{s}.block{b}."
                z1, a1 = block.pre_shift_channel_fc.forward_with_z(block.shift_norm(h))
                z2, a2 = block.post_shift_channel_fc.forward_with_z(spatial_shift(a1))
                keep(prefix + "pre_shift_channel_fc", z1, a1)
                keep(prefix + "post_shift_channel_fc", z2, a2)
                h = h + block.drop_path(a2)
                z3, a3 = block.channel_fc1.forward_with_z(block.channel_norm(h))
                z4, a4 = block.channel_fc2.forward_with_z(a3)
                keep(prefix + "channel_fc1", z3, a3)
                keep(prefix + "channel_fc2", z4, a4)
                h = h + block.drop_path(a4)
        z = self.head(self.norm(h).mean(dim=(1, 2))).squeeze(-1)  # (B,)
        if record is not None:
            record["head"] = LayerTrace(z, torch.sigmoid(z))
        return z


register_model(ShiftMLP, name="shift_mlp")
