"""The pipeline on the shared real photos (read in place, never copied into the repo).

cats_and_dogs_filtered goes through the whole DataModule (3000 photos decode in a
few seconds at 16 px thanks to JPEG draft mode); the Oxford-IIIT subset holds the
odd files: a PNG and a GIF named
.jpg, and a MATLAB .mat file that must be skipped and reported.
"""

from collections import Counter
from pathlib import Path

import pytest
import torch

from datasets import CatsDogsDataModule
from datasets.cache import ensure_cache
from datasets.layouts import detect_layout, list_entries

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SIZE = 16


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-photo tests need the shared photos")
    return SHARED_DATA


def test_cats_and_dogs_filtered_is_split_folders(shared_data, tmp_path):
    root = shared_data / "cats_and_dogs_filtered"
    assert detect_layout(root) == "split_folders"
    entries = list_entries(root, "auto")
    counts = Counter((e.source_split, e.label) for e in entries)
    assert counts == {("train", 1): 1000, ("train", 0): 1000, ("test", 1): 500, ("test", 0): 500}
    assert all(e.label == int("/cats/" in e.path) for e in entries)  # cat = 1
    assert all(e.source_split == ("test" if e.path.startswith("validation/") else "train") for e in entries)

    data = CatsDogsDataModule(str(root), image_size=SIZE, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()
    data.setup("fit")
    info = data.cache_info
    assert info.images.shape == (3000, 3, SIZE, SIZE) and info.skipped == []
    assert data.split_sizes["test"] == 1000  # the validation/ folder, as the source intends
    assert data.split_sizes["train"] + data.split_sizes["val"] == 2000  # no byte-identical copies
    assert data.split_sizes["val"] == 200
    assert info.images[::100].std() > 20  # real photos, not blank frames
    assert torch.all((data.channel_mean > 0.3) & (data.channel_mean < 0.7))


def test_oxford_pet_odd_files_are_handled(shared_data, tmp_path):
    root = shared_data / "oxford-iiit-pet"
    assert detect_layout(root) == "oxford_pet"
    entries = list_entries(root, "auto")
    assert len(entries) == 203
    labels = {e.path: e.label for e in entries}
    assert labels["images/Abyssinian_5.jpg"] == 1 and labels["images/american_bulldog_10.jpg"] == 0

    info = ensure_cache(root, entries, SIZE, tmp_path / "cache", workers=2, progress=False, name="oxford_pet")
    assert info.skipped == [("images/Abyssinian_100.mat", "not an image (cannot identify format)")]
    assert "images/Abyssinian_100.mat" in info.skipped_report.read_text()
    assert len(info.labels) == 202 and int(info.labels.sum()) == 102  # 102 cats, 100 dogs
    for odd in ("images/Abyssinian_5.jpg", "images/Abyssinian_34.jpg"):  # PNG (RGBA), GIF (P)
        pixels = torch.from_numpy(info.images[info.paths.index(odd)].copy())
        assert pixels.float().std() > 10  # a decoded photo, not a flat fill
