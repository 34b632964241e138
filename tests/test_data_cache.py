"""The decode-once cache: reuse, keys, damage detection, skipped-file report."""

import csv
import errno
import hashlib
import json
import os

import numpy as np
import pytest

import datasets.cache as cache_module
from datasets import CatsDogsDataModule, DataError, decode_image
from datasets.cache import ensure_cache
from datasets.layouts import list_entries
from tests.image_factory import (
    make_directory_named_image,
    make_layout,
    write_empty,
    write_image,
    write_text_as_jpg,
    write_thumbs_db,
    write_truncated_jpeg,
)

SIZE = 16


@pytest.fixture
def pets(tmp_path):
    return make_layout(tmp_path / "pets", "class_folders", n_per_class=6)


def build(root, cache_dir, image_size=SIZE):
    return ensure_cache(root, list_entries(root, "auto"), image_size, cache_dir, workers=1, progress=False)


def test_cache_holds_decoded_pixels_labels_and_hashes(pets, tmp_path):
    info = build(pets, tmp_path / "cache")
    assert info.images.shape == (12, 3, SIZE, SIZE) and info.images.dtype == np.uint8
    assert isinstance(info.images, np.memmap)
    assert info.decoded == 12 and info.skipped == []
    assert info.labels.dtype == np.int64
    for i in (0, 11):
        path = pets / info.paths[i]
        assert np.array_equal(info.images[i], decode_image(path, SIZE).numpy())
        assert info.content_hashes[i] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert info.labels[i] == (1 if info.paths[i].startswith("Cat/") else 0)
    assert info.directory.name.startswith(f"pets-{SIZE}px-{info.key[:16]}")
    # The scratch folder was renamed into place: nothing half-built is left.
    assert sorted(os.listdir(tmp_path / "cache")) == [info.directory.name]


def test_second_call_reuses_the_cache(pets, tmp_path):
    first = build(pets, tmp_path / "cache")
    second = build(pets, tmp_path / "cache")
    assert second.decoded == 0
    assert second.key == first.key and second.directory == first.directory
    assert np.array_equal(second.images, first.images)
    assert second.paths == first.paths


def test_changed_folder_or_size_gets_a_new_key(pets, tmp_path):
    first = build(pets, tmp_path / "cache")
    assert build(pets, tmp_path / "cache", image_size=SIZE * 2).key != first.key
    write_image(pets / "Cat" / "new.jpg", (250, 80, 80))
    added = build(pets, tmp_path / "cache")
    assert added.key != first.key and added.decoded == 13
    os.utime(pets / "Cat" / "new.jpg", ns=(1, 1))  # same name and size, new mtime
    assert build(pets, tmp_path / "cache").key != added.key


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_index"])
def test_damaged_cache_is_detected_and_rebuilt(pets, tmp_path, damage):
    first = build(pets, tmp_path / "cache")
    pixels = np.array(first.images)
    images_file = first.directory / "images.npy"
    del first
    if damage == "flip":
        with open(images_file, "r+b") as file:
            file.seek(os.path.getsize(images_file) - 100)
            byte = file.read(1)
            file.seek(-1, os.SEEK_CUR)
            file.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        os.truncate(images_file, os.path.getsize(images_file) // 2)
    else:
        os.remove(images_file.with_name("index.json"))
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = build(pets, tmp_path / "cache")
    assert rebuilt.decoded == 12
    assert np.array_equal(rebuilt.images, pixels)
    assert build(pets, tmp_path / "cache").decoded == 0  # and the rebuilt one is trusted


def test_unreadable_files_are_skipped_and_reported(pets, tmp_path):
    broken = {
        "Cat/empty.jpg": write_empty,
        "Cat/truncated.jpg": write_truncated_jpeg,
        "Dog/notes.jpg": write_text_as_jpg,
        "Dog/Thumbs.db": write_thumbs_db,
        "Dog/folder.jpg": make_directory_named_image,
    }
    for relative, make in broken.items():
        make(pets / relative)
    info = build(pets, tmp_path / "cache")
    assert len(info.labels) == 12 and info.images.shape[0] == 12
    assert not set(info.paths) & set(broken)
    with open(info.skipped_report, newline="") as report:
        rows = {row["path"]: row["reason"] for row in csv.DictReader(report)}
    assert rows == dict(info.skipped)
    assert rows["Cat/empty.jpg"] == "empty file"
    assert rows["Cat/truncated.jpg"] == "truncated image"
    assert rows["Dog/notes.jpg"].startswith("not an image")
    assert rows["Dog/Thumbs.db"].startswith("not an image")
    assert rows["Dog/folder.jpg"] == "is a directory"
    index = json.loads((info.directory / "index.json").read_text())
    assert index["count"] == 12 and index["skipped"] == 5
    # The kept images were compacted: row i is still the photo at paths[i].
    assert np.array_equal(info.images[-1], decode_image(pets / info.paths[-1], SIZE).numpy())
    assert build(pets, tmp_path / "cache").skipped == info.skipped  # reloaded from the report


def test_only_one_class_is_an_error(tmp_path):
    for i in range(3):
        write_image(tmp_path / "pets" / "Cat" / f"{i}.jpg", (250, 80, 80), noise=10, seed=i)
    with pytest.raises(DataError, match="only cat photos"):
        build(tmp_path / "pets", tmp_path / "cache")


def test_no_readable_images_is_an_error(tmp_path):
    write_empty(tmp_path / "pets" / "Cat" / "a.jpg")
    write_text_as_jpg(tmp_path / "pets" / "Dog" / "b.jpg")
    with pytest.raises(DataError, match=r"no readable images.*skipped\.csv"):
        build(tmp_path / "pets", tmp_path / "cache")


def test_no_files_is_an_error(tmp_path):
    (tmp_path / "pets" / "Cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no files found"):
        build(tmp_path / "pets", tmp_path / "cache")


def test_full_disk_while_building_leaves_nothing_a_later_run_trusts(pets, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The first durable write of the build fails, as it would on a full disk.
    monkeypatch.setattr(cache_module.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        ensure_cache(pets, list_entries(pets, "class_folders"), SIZE, cache_dir, progress=False)
    monkeypatch.undo()
    assert not list(cache_dir.rglob("index.json"))  # no cache that looks complete
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # scratch folder removed
    rebuilt = ensure_cache(pets, list_entries(pets, "class_folders"), SIZE, cache_dir, progress=False)
    assert rebuilt.decoded == 12 and len(rebuilt.labels) == 12


def test_a_cache_verified_once_is_not_hashed_again_in_the_same_process(pets, tmp_path, monkeypatch):
    data = CatsDogsDataModule(root=str(pets), image_size=SIZE, cache_dir=str(tmp_path / "cache"))
    data.prepare_data()  # builds and hashes the cache
    hashed = []
    real_sha256_file = cache_module.sha256_file
    monkeypatch.setattr(
        cache_module, "sha256_file", lambda path: hashed.append(path) or real_sha256_file(path)
    )
    data.setup("fit")
    data.setup("test")
    assert hashed == []  # verified by prepare_data in this process already
    fresh = CatsDogsDataModule(root=str(pets), image_size=SIZE, cache_dir=str(tmp_path / "cache"))
    fresh.setup("fit")  # another process (or rank) checks the file once
    assert [p.name for p in hashed] == ["images.npy"]
