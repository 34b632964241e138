"""The decode-once cache: contents, reuse, rebuilds on change, damage, skipped-file report."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from datasets import DataError, decode_image
from datasets.cache import ensure_cache
from datasets.layouts import list_entries
from models.labels import CAT, DOG
from tests.conftest import REPO
from tests.image_factory import (
    make_directory_named_image,
    make_layout,
    write_empty,
    write_image,
    write_random_bytes,
    write_text_as_jpg,
    write_thumbs_db,
    write_truncated_jpeg,
)

SIZE = 16
N_PER_CLASS = 6


@pytest.fixture
def photos(tmp_path):
    return make_layout(tmp_path / "pets", "class_folders", n_per_class=N_PER_CLASS, size=(20, 16))


def build(root, cache_dir, image_size=SIZE):
    return ensure_cache(root, list_entries(root, "auto"), image_size, cache_dir, name="pets")


def stamp(cache) -> list[tuple[int, int]]:
    """(inode, mtime) of every file of a cache: unchanged exactly when nothing was rewritten."""
    return [(os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in sorted(cache.directory.iterdir())]


def test_cache_holds_decoded_pixels_labels_and_hashes(photos, tmp_path):
    cache = build(photos, tmp_path / "cache")
    n = 2 * N_PER_CLASS
    assert cache.images.shape == (n, 3, SIZE, SIZE) and cache.images.dtype == np.uint8
    assert isinstance(cache.images, np.memmap) and not cache.images.flags.writeable
    assert cache.labels.dtype == np.int64 and len(cache.labels) == len(cache.paths) == n
    assert cache.source_splits == ["train"] * n
    for i, relative in enumerate(cache.paths):
        path = photos / relative
        assert np.array_equal(cache.images[i], decode_image(path, SIZE).numpy())
        assert cache.content_hashes[i] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert cache.labels[i] == (CAT if relative.startswith("Cat/") else DOG)
    assert cache.skipped == []
    assert cache.skipped_report.read_text().splitlines() == ["path,reason"]
    index = json.loads((cache.directory / "index.json").read_text())
    assert (index["cats"], index["dogs"], index["image_size"]) == (N_PER_CLASS, N_PER_CLASS, SIZE)
    assert cache.directory.name == f"pets-{SIZE}px-{cache.key[:16]}"
    # Built in a scratch folder and renamed into place: nothing else is left behind.
    assert os.listdir(tmp_path / "cache") == [cache.directory.name]


def test_second_run_reuses_the_cache_without_decoding(photos, tmp_path):
    # A BMP keeps its byte size whatever its pixels, so its content can change while the
    # name, size and (restored) mtime the cache key is made of stay the same.
    bmp = write_image(photos / "Cat" / "same_size.bmp", (250, 0, 0), (20, 16), fmt="BMP")
    first = build(photos, tmp_path / "cache")
    files_before = stamp(first)
    row = first.paths.index("Cat/same_size.bmp")
    old_pixels = np.array(first.images[row])
    before = bmp.stat()
    write_image(bmp, (0, 0, 250), (20, 16), fmt="BMP")
    os.utime(bmp, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert bmp.stat().st_size == before.st_size

    second = build(photos, tmp_path / "cache")
    assert second.directory == first.directory and second.key == first.key
    assert stamp(second) == files_before  # no file of the cache was written again
    assert np.array_equal(second.images[row], old_pixels)  # the pixels of the first decode...
    assert not np.array_equal(decode_image(bmp, SIZE).numpy(), old_pixels)  # ...not of the file now
    assert second.paths == first.paths and second.content_hashes == first.content_hashes


def test_relative_and_absolute_root_share_one_cache(photos, tmp_path, monkeypatch):
    first = build(photos, tmp_path / "cache")
    files_before = stamp(first)
    monkeypatch.chdir(photos.parent)
    second = build("pets", tmp_path / "cache")
    assert second.directory == first.directory and stamp(second) == files_before


@pytest.mark.parametrize("change", ["image_size", "add", "remove", "rewrite", "touch"])
def test_changed_photos_or_image_size_get_a_fresh_cache(photos, tmp_path, change):
    first = build(photos, tmp_path / "cache")
    first_dir, first_files = first.directory, stamp(first)
    image_size, expected_rows = SIZE, 2 * N_PER_CLASS
    target = photos / "Dog" / "0.jpg"
    if change == "image_size":
        image_size = 2 * SIZE
    elif change == "add":
        write_image(photos / "Cat" / "new.jpg", (250, 80, 80), (20, 16))
        expected_rows += 1
    elif change == "remove":
        target.unlink()
        expected_rows -= 1
    elif change == "rewrite":
        write_image(target, (250, 250, 250), (20, 16))  # another photo under the same name
    else:
        os.utime(target, ns=(1, 1))  # same name and bytes, another mtime
    second = build(photos, tmp_path / "cache", image_size=image_size)
    assert second.key != first.key and second.directory != first_dir
    assert second.images.shape == (expected_rows, 3, image_size, image_size)
    for i, relative in enumerate(second.paths):  # decoded afresh from the files as they are now
        assert np.array_equal(second.images[i], decode_image(photos / relative, image_size).numpy())
    assert stamp(first) == first_files  # the old cache is left as it was


@pytest.mark.parametrize(
    "damage",
    ["truncated_images", "noise_over_pixels", "garbled_index", "index_is_a_list", "index_is_null",
     "no_report", "wrong_shape"],
)  # fmt: skip
def test_damaged_cache_is_rebuilt_with_a_warning(photos, tmp_path, damage):
    first = build(photos, tmp_path / "cache")
    directory, pixels, paths = first.directory, np.array(first.images), first.paths
    del first  # unmap images.npy before damaging it
    images_file, index_file = directory / "images.npy", directory / "index.json"
    if damage == "truncated_images":
        os.truncate(images_file, os.path.getsize(images_file) // 2)
    elif damage == "noise_over_pixels":  # the header whole, the pixels random: loads as a cache
        header = os.path.getsize(images_file) - pixels.nbytes
        with open(images_file, "r+b") as file:
            file.seek(header)
            file.write(np.random.default_rng(0).bytes(pixels.nbytes))
    elif damage == "garbled_index":
        index_file.write_text(index_file.read_text()[:40])
    elif damage == "index_is_a_list":
        index_file.write_text("[]")
    elif damage == "index_is_null":
        index_file.write_text("null")
    elif damage == "no_report":
        (directory / "skipped.csv").unlink()
    else:
        np.save(images_file, np.zeros((3, 3, SIZE, SIZE), dtype=np.uint8))
    with pytest.warns(UserWarning, match="damaged.*rebuilding"):
        rebuilt = build(photos, tmp_path / "cache")
    assert rebuilt.directory == directory and rebuilt.paths == paths
    assert np.array_equal(rebuilt.images, pixels)
    files = stamp(rebuilt)
    assert stamp(build(photos, tmp_path / "cache")) == files  # the rebuilt one is trusted


def test_interrupted_builds_are_never_mistaken_for_a_cache(photos, tmp_path):
    first = build(photos, tmp_path / "cache")
    directory, pixels = first.directory, np.array(first.images)
    del first
    # A build that stopped before index.json (the last file written), and an older build's
    # scratch folder that was never renamed into place.
    (directory / "index.json").unlink()
    np.save(directory / "images.npy", np.zeros_like(pixels))
    scratch = tmp_path / "cache" / f".{directory.name}.stale"
    scratch.mkdir()
    (scratch / "index.json").write_text("{}")
    rebuilt = build(photos, tmp_path / "cache")
    assert rebuilt.directory == directory and np.array_equal(rebuilt.images, pixels)
    assert sorted(os.listdir(tmp_path / "cache")) == sorted([directory.name, scratch.name])


def start_pooled_build(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """train.py's cache build of 300 copies of one large photo, in a process of its own (whose main
    thread sets the SIGTERM handler), decoded by a pool: slow enough to be stopped midway."""
    photo = write_image(tmp_path / "photo.jpg", (200, 120, 80), (900, 900), noise=60)
    for label in ("Cat", "Dog"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        for i in range(150):
            os.link(photo, tmp_path / "pets" / label / f"{i}.jpg")
    script = (
        "import sys; from datasets.cache import ensure_cache; from datasets.layouts import list_entries; "
        "ensure_cache(sys.argv[1], list_entries(sys.argv[1], 'auto'), 64, sys.argv[2], 'pets')"
    )
    command = [sys.executable, "-c", script, str(tmp_path / "pets"), str(tmp_path / "cache")]
    return subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True), tmp_path / "cache"


def test_a_build_decoded_by_a_pool_completes(tmp_path):
    # The pool ends its workers with SIGTERM; they inherit the build's handler and must not
    # remove the scratch folder the build still writes to.
    build, cache_dir = start_pooled_build(tmp_path)
    _, errors = build.communicate(timeout=300)
    assert build.returncode == 0, errors
    (directory,) = cache_dir.iterdir()
    assert (directory / "index.json").is_file()
    assert np.load(directory / "images.npy").shape == (300, 3, 64, 64)


def test_sigterm_during_a_build_leaves_no_scratch_folder(tmp_path):
    build, cache_dir = start_pooled_build(tmp_path)
    deadline = time.monotonic() + 120
    # Stopped while it decodes: its scratch folder holds the memory-mapped slots by then.
    while not (cache_dir.is_dir() and any(cache_dir.glob(".*/slots.npy"))):
        assert build.poll() is None and time.monotonic() < deadline, "the build ended before it was stopped"
        time.sleep(0.005)
    build.send_signal(signal.SIGTERM)
    build.communicate(timeout=60)
    assert build.returncode == 128 + signal.SIGTERM
    assert os.listdir(cache_dir) == []


def test_unreadable_files_are_skipped_reported_and_never_crash(photos, tmp_path):
    broken = {
        "Cat/empty.jpg": (write_empty, "empty file"),
        "Cat/truncated.jpg": (write_truncated_jpeg, "truncated image"),
        "Cat/random.jpg": (write_random_bytes, "not an image (cannot identify format)"),
        "Dog/notes.jpg": (write_text_as_jpg, "not an image (cannot identify format)"),
        "Dog/Thumbs.db": (write_thumbs_db, "not an image (cannot identify format)"),
        "Dog/folder.jpg": (make_directory_named_image, "is a directory"),
    }
    for relative, (make, _) in broken.items():
        make(photos / relative)
    cache = build(photos, tmp_path / "cache")
    assert cache.images.shape[0] == len(cache.labels) == 2 * N_PER_CLASS
    assert not set(cache.paths) & set(broken)
    with open(cache.skipped_report, newline="") as report:
        rows = {row["path"]: row["reason"] for row in csv.DictReader(report)}
    assert rows == {relative: reason for relative, (_, reason) in broken.items()}
    assert dict(cache.skipped) == rows
    # The readable photos were compacted: row i is still the photo at paths[i], label and all.
    for i, relative in enumerate(cache.paths):
        assert np.array_equal(cache.images[i], decode_image(photos / relative, SIZE).numpy())
        assert cache.labels[i] == (CAT if relative.startswith("Cat/") else DOG)
    assert build(photos, tmp_path / "cache").skipped == cache.skipped  # reloaded from the report


def test_source_splits_follow_the_layout(tmp_path):
    root = make_layout(tmp_path / "pets", "split_folders", n_per_class=4, size=(16, 16))
    cache = ensure_cache(root, list_entries(root, "auto"), SIZE, tmp_path / "cache", name="split_folders")
    assert cache.directory.name.startswith(f"split_folders-{SIZE}px-")
    assert cache.source_splits == [
        "test" if path.startswith("validation/") else "train" for path in cache.paths
    ]
    assert cache.source_splits.count("test") == 2 * 2


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_no_readable_images_is_a_one_line_error_naming_the_report(tmp_path):
    write_empty(tmp_path / "pets" / "Cat" / "a.jpg")
    write_text_as_jpg(tmp_path / "pets" / "Dog" / "b.jpg")
    with pytest.raises(DataError) as error:
        build(tmp_path / "pets", tmp_path / "cache")
    message = one_line(error)
    assert "no readable images" in message and "all 2 files were skipped" in message
    report = message.rsplit("reasons in ", 1)[1]
    assert report.endswith("skipped.csv") and len(Path(report).read_text().splitlines()) == 3
