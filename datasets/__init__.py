"""Cats-vs-dogs photos: folder layouts, robust decoding, the decode-once cache, splits
and the LightningDataModule (`datasets.datamodule.CatsDogsDataModule`, imported from
its module: it brings Lightning, which predicting and decoding never need).
"""

from datasets.decode import decode_image, decode_many, find_image_files
from datasets.errors import DataError, UnreadableImage
from datasets.layouts import LAYOUTS

__all__ = ["LAYOUTS", "DataError", "UnreadableImage", "decode_image", "decode_many", "find_image_files"]
