"""Cats-vs-dogs photos: folder layouts, robust decoding, the decode-once cache, splits
and the LightningDataModule. Label 1 = cat, 0 = dog, everywhere.

`CatsDogsDataModule` and `download_petimages` are imported on first use: they bring
Lightning and torchvision (about 3 s of start-up on 2 cores), which predicting and
decoding never need.
"""

from typing import TYPE_CHECKING

from datasets.decode import decode_image, decode_many, find_image_files
from datasets.errors import DataError, UnreadableImage
from datasets.layouts import LAYOUTS

if TYPE_CHECKING:
    from datasets.datamodule import CatsDogsDataModule
    from datasets.download import download_petimages

__all__ = [
    "LAYOUTS",
    "CatsDogsDataModule",
    "DataError",
    "UnreadableImage",
    "decode_image",
    "decode_many",
    "download_petimages",
    "find_image_files",
]


def __getattr__(name: str) -> object:
    if name == "CatsDogsDataModule":
        from datasets.datamodule import CatsDogsDataModule

        return CatsDogsDataModule
    if name == "download_petimages":
        from datasets.download import download_petimages

        return download_petimages
    raise AttributeError(f"module 'datasets' has no attribute '{name}'")
