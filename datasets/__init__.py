"""Cats-vs-dogs photos: folder layouts, robust decoding, the decode-once cache, splits
and the LightningDataModule. Label 1 = cat, 0 = dog, everywhere."""

from datasets.datamodule import CatsDogsDataModule
from datasets.decode import decode_image, decode_many, find_image_files
from datasets.download import download_petimages
from datasets.errors import DataError, UnreadableImage
from datasets.layouts import LAYOUTS

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
