"""The pipeline on the real photos in ../shared/data, read in place (see each folder's
SOURCE.md): a few hundred photos, so it stays fast; skipped where the photos are absent.

cats_and_dogs_filtered (Google's Kaggle subset, train/ + validation/) is listed whole and a
subset of it goes through the whole DataModule; the Oxford-IIIT Pet subset holds the odd
files: a PNG and a GIF named .jpg, progressive JPEGs, and a MATLAB .mat file that must be
skipped and reported.
"""

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from torchvision.io import ImageReadMode, read_file
from torchvision.io import decode_image as torchvision_decode

from datasets.cache import ensure_cache
from datasets.datamodule import CatsDogsDataModule
from datasets.layouts import detect_layout, list_entries
from models.labels import CAT, DOG
from tests.conftest import real_photos

pytestmark = [
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning"),
]
SIZE = 32


def manifest(folder: Path) -> dict[str, str]:
    """sha256 by path relative to `folder`, from ../shared/data/MANIFEST.sha256."""
    hashes = {}
    for line in (folder.parent / "MANIFEST.sha256").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        if path.startswith(f"{folder.name}/"):
            hashes[path.removeprefix(f"{folder.name}/")] = digest
    return hashes


def torchvision_reference(path: Path, image_size: int) -> torch.Tensor:
    pixels = torchvision_decode(read_file(str(path)), mode=ImageReadMode.RGB)
    return F.center_crop(F.resize(pixels, image_size, antialias=True), [image_size, image_size])


def assert_same_photo(row: np.ndarray, path: Path) -> None:
    """`row` of the cache shows the photo at `path` as torchvision decodes and resizes it: JPEG
    draft decoding at a reduced scale keeps every pixel close, not equal (different photos
    correlate below 0.4)."""
    ours = torch.from_numpy(np.array(row)).float().flatten()
    reference = torchvision_reference(path, SIZE).float().flatten()
    assert float(torch.corrcoef(torch.stack([ours, reference]))[0, 1]) > 0.9, path
    assert (ours - reference).abs().mean() < 10, path


def test_cats_and_dogs_filtered_is_split_folders_with_cat_one():
    root = real_photos("cats_and_dogs_filtered")
    assert detect_layout(root) == "split_folders"
    entries = list_entries(root, "auto")
    # SOURCE.md: 1000 + 1000 in train/, 500 + 500 in validation/.
    counts = Counter((e.source_split, e.label) for e in entries)
    assert counts == {("train", CAT): 1000, ("train", DOG): 1000, ("test", CAT): 500, ("test", DOG): 500}
    for e in entries:
        folder, name = e.path.split("/")[1:]
        assert e.label == (CAT if folder == "cats" else DOG) == (CAT if name.startswith("cat.") else DOG)
        assert e.source_split == ("test" if e.path.startswith("validation/") else "train")
    assert sorted(e.path for e in entries) == sorted(manifest(root))  # every file, nothing else


def test_a_subset_of_the_kaggle_photos_through_the_datamodule(tmp_path):
    """160 photos, linked (not copied) into a split_folders tree: the train/ + validation/
    source split, real pixels and the exact source bytes (hashes of SOURCE's manifest)."""
    source = real_photos("cats_and_dogs_filtered")
    chosen = []
    for part, count in (
        ("train/cats", 60),
        ("train/dogs", 60),
        ("validation/cats", 20),
        ("validation/dogs", 20),
    ):
        chosen += [f"{part}/{name}" for name in sorted(os.listdir(source / part))[:count]]
    chosen.append("validation/cats/cat.2433.jpg")  # the smallest photo, 59x41
    subset = tmp_path / "subset"
    for relative in chosen:
        (subset / relative).parent.mkdir(parents=True, exist_ok=True)
        (subset / relative).symlink_to(source / relative)

    data = CatsDogsDataModule(str(subset), image_size=SIZE, batch_size=32, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    data.setup("fit")
    cache = data.cache
    assert data.layout == "split_folders" and cache.skipped == []
    assert sorted(cache.paths) == sorted(chosen) and cache.images.shape == (len(chosen), 3, SIZE, SIZE)
    hashes = manifest(source)
    assert all(cache.content_hashes[i] == hashes[path] for i, path in enumerate(cache.paths))
    assert sorted(cache.paths[i] for i in data.splits["test"]) == sorted(
        p for p in chosen if "validation/" in p
    )
    assert len(data.splits["val"]) == round(0.1 * 120)  # no byte-identical copies in the pool
    assert float(np.asarray(cache.images).std()) > 30  # real photos, not blank frames
    assert torch.all((data.channel_mean > 0.25) & (data.channel_mean < 0.75))
    for path in ("validation/cats/cat.2433.jpg", chosen[0], chosen[-2]):
        assert_same_photo(cache.images[cache.paths.index(path)], source / path)
    x, y = next(iter(data.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 3, SIZE, SIZE) and y.dtype == torch.int64
    assert 0 < int(y.sum()) < 32  # a shuffled mix of cats and dogs


def test_oxford_pet_odd_files_are_decoded_or_skipped_and_reported(tmp_path):
    root = real_photos("oxford-iiit-pet")
    assert detect_layout(root) == "oxford_pet"
    entries = list_entries(root, "auto")
    assert sorted(e.path for e in entries) == sorted(manifest(root))  # all 203 files
    assert all(e.label == (CAT if e.path.split("/")[1][0].isupper() else DOG) for e in entries)
    assert {e.source_split for e in entries} == {"train"}  # no annotation lists in this subset

    cache = ensure_cache(root, entries, SIZE, tmp_path / "cache", name="oxford_pet")
    assert cache.skipped == [("images/Abyssinian_100.mat", "not an image (cannot identify format)")]
    assert "images/Abyssinian_100.mat" in cache.skipped_report.read_text()
    # SOURCE.md: 102 cats (Abyssinian, Bengal) and 100 american_bulldog dogs.
    assert len(cache.labels) == 202 and int((cache.labels == CAT).sum()) == 102
    hashes = manifest(root)
    assert all(cache.content_hashes[i] == hashes[path] for i, path in enumerate(cache.paths))
    for odd in ("images/Abyssinian_5.jpg", "images/Abyssinian_34.jpg"):  # PNG (RGBA), GIF (P)
        pixels = torch.from_numpy(np.array(cache.images[cache.paths.index(odd)]))
        assert pixels.float().std() > 10, odd  # a decoded photo, not a flat fill
    # The PNG and GIF named .jpg, three progressive JPEGs (one with an ICC profile).
    for odd in (
        "Abyssinian_5.jpg",
        "Abyssinian_34.jpg",
        "Abyssinian_127.jpg",
        "Bengal_157.jpg",
        "Abyssinian_179.jpg",
    ):
        assert_same_photo(cache.images[cache.paths.index(f"images/{odd}")], root / "images" / odd)
