"""Hierarchical spatial-shift MLP: patches mixed by nn.Linear layers and parameter-free shifts.

The Mixer's token-mixing layer sees every patch at once, so it must learn from 2,000
photos that neighbouring patches matter most. Here every parameterised layer is still a
per-token Z = W x + b over channels; tokens talk only through a fixed one-token shift of
a quarter of the channels in each of the four directions (Yu et al., "S2-MLP:
Spatial-Shift MLP Architecture for Vision", 2021), so locality is built in, and stages
merge 2x2 neighbouring tokens into one (a Linear over their concatenation, as in Swin)
so later layers see larger parts of the photo at a coarser grid.

Every layer's Z and A are recorded as (B, tokens, features), like the Mixer's.
"""

import torch
from torch import Tensor, nn

from models.layers import DenseLayer, Layer, LayerOutput, ZooNetwork
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


class ShiftMLP(ZooNetwork):
    """Patches -> stages of shift blocks, halving the grid between stages -> LN -> mean -> one logit.

    Args:
        patch_size: Side of the first patches in pixels (64 px / 4 = a 16x16 grid).
        widths: Features per token in each stage; one stage per entry.
        depths: Shift blocks per stage.
        expansion: Hidden width of each channel MLP, as a multiple of the stage width.
        dropout: Dropout on the A of the blocks' layers.
        drop_path: Stochastic depth of the last block; earlier blocks get linearly less.
    """

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

    def layers(self) -> dict[str, Layer]:
        """Every W is per token: it mixes one patch's features, or a 2x2 group's when merging."""
        previous_a, norm = "the previous layer's A", "LayerNorm(h)"
        shifted = (
            "the previous layer's A with a quarter of its features moved one patch down, up, right and"
            " left (the shift MLP's only mixing between patches)"
        )
        layers = {"embed": Layer(self.embed, "patch_pixels", "the patches above")}
        for s, blocks in enumerate(self.stages, start=1):
            if s > 1:
                merge = self.merges[s - 2].merge
                layers[f"stage{s}.merge"] = Layer(merge, "neighbours", "h regrouped 2x2, then LayerNorm")
            for b, block in enumerate(blocks, start=1):
                prefix = f"stage{s}.block{b}."
                layers[prefix + "pre_shift_channel_fc"] = Layer(block.pre_shift_channel_fc, "channels", norm)
                layers[prefix + "post_shift_channel_fc"] = Layer(
                    block.post_shift_channel_fc, "channels", shifted
                )
                layers[prefix + "channel_fc1"] = Layer(block.channel_fc1, "channels", norm)
                layers[prefix + "channel_fc2"] = Layer(block.channel_fc2, "channels", previous_a)
        return {**layers, "head": Layer(self.head, "features", "LayerNorm(h) averaged over all patches")}

    def forward(self, x: Tensor, record: dict[str, LayerOutput] | None = None) -> Tensor:
        z, h = self.embed.forward_with_z(image_patches(x, self.patch_size))  # (B, H, W, D)
        self.record(record, self.embed, z, h)
        for s, blocks in enumerate(self.stages, start=1):
            if s > 1:
                merge = self.merges[s - 2]
                z, h = merge.merge.forward_with_z(merge.norm(merge_neighbours(h)))  # (B, H/2, W/2, D')
                self.record(record, merge.merge, z, h)
            for block in blocks:
                z1, a1 = block.pre_shift_channel_fc.forward_with_z(block.shift_norm(h))
                self.record(record, block.pre_shift_channel_fc, z1, a1)
                z2, a2 = block.post_shift_channel_fc.forward_with_z(spatial_shift(a1))
                self.record(record, block.post_shift_channel_fc, z2, a2)
                h = h + block.drop_path(a2)
                z3, a3 = block.channel_fc1.forward_with_z(block.channel_norm(h))
                self.record(record, block.channel_fc1, z3, a3)
                z4, a4 = block.channel_fc2.forward_with_z(a3)
                self.record(record, block.channel_fc2, z4, a4)
                h = h + block.drop_path(a4)
        z = self.head(self.norm(h).mean(dim=(1, 2))).squeeze(-1)  # (B,)
        self.record(record, self.head, z, torch.sigmoid(z))
        return z


register_model(ShiftMLP, name="shift_mlp")
