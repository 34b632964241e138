"""The decode-once cache: every photo decoded to uint8 (3, S, S) in one .npy file.

Training then reads a memory-mapped array instead of decoding JPEGs every epoch.
The cache folder's name holds a key over everything that changes its content
(format version, image size, the source files' names, sizes and mtimes, labels
and source splits), so a changed folder or size gets a fresh cache, never a
stale one. A cache is written into a scratch folder and renamed into place in
one step, and its images.npy is checksummed on every load, so an interrupted or
damaged build is rebuilt, never used.
"""

import csv
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.checksum import sha256_file
from datasets.decode import decode_many
from datasets.errors import DataError
from datasets.layouts import CAT, Entry

# Bump when the decoded pixels would change for the same files (resize rule,
# colour handling...), so old caches are not reused.
CACHE_FORMAT_VERSION = 1
COPY_CHUNK_IMAGES = 1024  # rows per copy when dropping unreadable files' slots


@dataclass
class CacheInfo:
    """A loaded cache: `images` is a read-only memmap (N, 3, S, S) uint8."""

    directory: Path
    key: str
    images: np.ndarray
    labels: np.ndarray  # (N,) int64, 1 = cat
    paths: list[str]  # relative to the data root
    source_splits: list[str]
    content_hashes: list[str]  # sha256 of each source file's bytes
    skipped: list[tuple[str, str]]  # (relative path, reason)
    decoded: int  # files run through the decoder in this call; 0 when reused

    @property
    def skipped_report(self) -> Path:
        return self.directory / "skipped.csv"


def cache_key(root: str | os.PathLike, entries: Sequence[Entry], image_size: int) -> str:
    rows = [[e.path, *_size_and_mtime(Path(root) / e.path), e.label, e.source_split] for e in entries]
    recipe = [CACHE_FORMAT_VERSION, image_size, str(Path(root).resolve()), sorted(rows)]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


def ensure_cache(
    root: str | os.PathLike,
    entries: Sequence[Entry],
    image_size: int,
    cache_dir: str | os.PathLike,
    workers: int = 0,
    progress: bool = True,
    name: str | None = None,
    verified_key: str | None = None,
) -> CacheInfo:
    """Load the cache for these entries, building it first if it is missing or damaged.

    `name` (usually the layout) starts the cache folder's name; the root folder's
    name is used without it. The images' checksum is verified on load unless this
    process already verified the cache with that key (`verified_key`): a run loads it
    up to four times (prepare_data and setup, for fit and for test), ~0.5 s each at
    25,000 images.

    Raises:
        DataError: no entries, no readable image, or only one class.
    """
    root = Path(root).resolve()
    if not entries:
        raise DataError(f"no files found under data.root '{root}'; point --data.root at the photos")
    key = cache_key(root, entries, image_size)
    directory = Path(cache_dir) / f"{name or root.name}-{image_size}px-{key[:16]}"
    info = _load(directory, key, image_size, verify=key != verified_key)
    if info is None:
        _build(root, entries, image_size, directory, key, workers, progress)
        info = _load(directory, key, image_size, verify=False)  # just written and hashed
        if info is None:
            raise DataError(f"cache at {directory} could not be read back; delete it and retry")
        info.decoded = len(entries)
    _check_classes(info, root)
    return info


def _load(directory: Path, key: str, image_size: int, verify: bool = True) -> CacheInfo | None:
    index_file = directory / "index.json"
    if not index_file.is_file():
        if directory.exists():
            warnings.warn(f"cache at {directory} has no index.json; rebuilding it", stacklevel=3)
        return None
    images_file = directory / "images.npy"
    try:
        index = json.loads(index_file.read_text())
        if index["format_version"] != CACHE_FORMAT_VERSION or index["key"] != key:
            raise ValueError("index.json belongs to another cache")
        if verify and sha256_file(images_file) != index["images_sha256"]:
            raise ValueError("images.npy checksum does not match index.json")
        images = np.load(images_file, mmap_mode="r")
        expected = (index["count"], 3, image_size, image_size)
        if images.shape != expected or images.dtype != np.uint8:
            raise ValueError(f"images.npy is {images.dtype}{images.shape}, expected uint8{expected}")
        with open(directory / "skipped.csv", newline="") as report:
            skipped = [(row["path"], row["reason"]) for row in csv.DictReader(report)]
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"cache at {directory} is damaged ({error}); rebuilding it", stacklevel=3)
        return None
    return CacheInfo(
        directory=directory,
        key=key,
        images=images,
        labels=np.asarray(index["labels"], dtype=np.int64),
        paths=index["paths"],
        source_splits=index["source_splits"],
        content_hashes=index["content_hashes"],
        skipped=skipped,
        decoded=0,
    )


def _build(
    root: Path,
    entries: Sequence[Entry],
    image_size: int,
    directory: Path,
    key: str,
    workers: int,
    progress: bool,
) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        sources = [str(root / entry.path) for entry in entries]
        kept, skipped = _decode_into(scratch / "images.npy", sources, entries, image_size, workers, progress)
        _fsync(scratch / "images.npy")
        with open(scratch / "skipped.csv", "w", newline="") as report:
            writer = csv.writer(report)
            writer.writerow(["path", "reason"])
            writer.writerows(skipped)
        _fsync(scratch / "skipped.csv")
        labels = [entries[i].label for i in kept]
        index = {
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "root": str(root),
            "image_size": image_size,
            "count": len(kept),
            "cats": labels.count(CAT),
            "dogs": len(labels) - labels.count(CAT),
            "skipped": len(skipped),
            "images_sha256": sha256_file(scratch / "images.npy"),
            "paths": [entries[i].path for i in kept],
            "labels": labels,
            "source_splits": [entries[i].source_split for i in kept],
            "content_hashes": [sha256_file(sources[i]) for i in kept],
        }
        # index.json last: its presence is what marks a cache as complete.
        (scratch / "index.json").write_text(json.dumps(index))
        _fsync(scratch / "index.json")
        _fsync(scratch)
        if directory.exists():
            shutil.rmtree(directory)  # a damaged cache, already reported by _load
        os.replace(scratch, directory)
        _fsync(directory.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _decode_into(
    images_file: Path,
    sources: list[str],
    entries: Sequence[Entry],
    image_size: int,
    workers: int,
    progress: bool,
) -> tuple[list[int], list[tuple[str, str]]]:
    """Decode every source into images_file; returns kept entry indices and skipped rows."""
    # Written straight into a memmap so memory stays flat for 25k photos; a slot
    # per entry because which files are unreadable is only known afterwards.
    all_file = images_file.with_name("all.npy")
    shape = (len(sources), 3, image_size, image_size)
    images = np.lib.format.open_memmap(all_file, mode="w+", dtype=np.uint8, shape=shape)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    results = decode_many(sources, image_size, workers, progress, desc="decoding photos")
    for i, (_, pixels, reason) in enumerate(results):
        if pixels is None:
            skipped.append((entries[i].path, reason or "unknown"))
            continue
        images[len(kept)] = pixels.numpy()
        kept.append(i)
    images.flush()
    if len(kept) == len(sources):
        del images
        os.replace(all_file, images_file)
        return kept, skipped
    compact = np.lib.format.open_memmap(
        images_file, mode="w+", dtype=np.uint8, shape=(len(kept), 3, image_size, image_size)
    )
    for start in range(0, len(kept), COPY_CHUNK_IMAGES):
        stop = min(start + COPY_CHUNK_IMAGES, len(kept))
        compact[start:stop] = images[start:stop]
    compact.flush()
    del images, compact
    all_file.unlink()
    return kept, skipped


def _check_classes(info: CacheInfo, root: Path) -> None:
    cats = int((info.labels == CAT).sum())
    dogs = len(info.labels) - cats
    if cats == 0 and dogs == 0:
        raise DataError(
            f"no readable images under data.root '{root}': all {len(info.skipped)} files were "
            f"skipped, reasons in {info.skipped_report}"
        )
    if cats == 0 or dogs == 0:
        found, missing = ("cat", "dog") if dogs == 0 else ("dog", "cat")
        raise DataError(
            f"only {found} photos under data.root '{root}' ({len(info.labels)} readable, no "
            f"{missing}s); the classifier needs both cats and dogs"
        )


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1, -1  # e.g. a broken symlink: still an entry, reported as unreadable
    return stat.st_size, stat.st_mtime_ns


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
