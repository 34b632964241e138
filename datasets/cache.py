"""The decode-once cache: every photo decoded to uint8 (3, S, S) in one .npy file.

Training then reads a memory-mapped array instead of decoding JPEGs every epoch. The
folder's name holds a key over everything that changes its content (format version,
image size, the source files' names, sizes and mtimes, labels and source splits), so a
changed folder or size gets a fresh cache, never a stale one. A cache is built in a
scratch folder and renamed into place in one step, with index.json written last, so an
interrupted build is never mistaken for a finished one.
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
from datasets.layouts import Entry
from models.labels import CAT

# Bump when the decoded pixels would change for the same files (resize rule, colour
# handling...), so old caches are not reused.
CACHE_FORMAT_VERSION = 1


@dataclass
class Cache:
    """A loaded cache: `images` is a read-only memmap (N, 3, S, S) uint8, row i is `paths[i]`."""

    directory: Path
    key: str
    images: np.ndarray
    labels: np.ndarray  # (N,) int64, 1 = cat
    paths: list[str]  # relative to the data root
    source_splits: list[str]  # "train" or "test", as the layout says
    content_hashes: list[str]  # sha256 of each source file's bytes
    skipped: list[tuple[str, str]]  # (relative path, reason) of every unreadable file

    @property
    def skipped_report(self) -> Path:
        return self.directory / "skipped.csv"


def ensure_cache(
    root: str | os.PathLike,
    entries: Sequence[Entry],
    image_size: int,
    cache_dir: str | os.PathLike,
    name: str,
) -> Cache:
    """Load the cache for these entries, decoding them first if there is none yet.

    Raises:
        DataError: no entries, no readable image, or only one class.
    """
    root = Path(root).resolve()
    if not entries:
        raise DataError(f"no files found under data.root '{root}'; point --data.root at the photos")
    rows = sorted([e.path, *_size_and_mtime(root / e.path), e.label, e.source_split] for e in entries)
    recipe = json.dumps([CACHE_FORMAT_VERSION, image_size, str(root), rows])
    key = hashlib.sha256(recipe.encode()).hexdigest()
    directory = Path(cache_dir) / f"{name}-{image_size}px-{key[:16]}"
    try:
        cache = _load(directory, image_size) if (directory / "index.json").is_file() else None
    except (OSError, ValueError, KeyError) as error:  # a truncated images.npy, a garbled index
        warnings.warn(f"the cache at {directory} is damaged ({error}); rebuilding it", stacklevel=2)
        cache = None
    if cache is None:
        _build(root, entries, image_size, directory, key)
        cache = _load(directory, image_size)
    _check_classes(cache, root)
    return cache


def _load(directory: Path, image_size: int) -> Cache:
    index = json.loads((directory / "index.json").read_text())
    images = np.load(directory / "images.npy", mmap_mode="r")
    if images.shape != (len(index["paths"]), 3, image_size, image_size):
        raise ValueError(f"images.npy is {images.shape}, index.json lists {len(index['paths'])} photos")
    with open(directory / "skipped.csv", newline="") as report:
        skipped = [(row["path"], row["reason"]) for row in csv.DictReader(report)]
    return Cache(
        directory=directory,
        key=index["key"],
        images=images,
        labels=np.asarray(index["labels"], dtype=np.int64),
        paths=index["paths"],
        source_splits=index["source_splits"],
        content_hashes=index["content_hashes"],
        skipped=skipped,
    )


def _build(root: Path, entries: Sequence[Entry], image_size: int, directory: Path, key: str) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        sources = [str(root / entry.path) for entry in entries]
        # Written straight into a memmap, so memory stays flat for 25,000 photos; one slot
        # per file because which files are unreadable is only known afterwards.
        slots = np.lib.format.open_memmap(
            scratch / "slots.npy", mode="w+", dtype=np.uint8, shape=(len(sources), 3, image_size, image_size)
        )
        kept, skipped = [], []
        for i, (_, pixels, reason) in enumerate(decode_many(sources, image_size, progress=True)):
            if pixels is None:
                skipped.append((entries[i].path, reason))
            else:
                slots[len(kept)] = pixels.numpy()
                kept.append(i)
        np.save(scratch / "images.npy", slots[: len(kept)])
        del slots
        (scratch / "slots.npy").unlink()
        with open(scratch / "skipped.csv", "w", newline="") as report:
            csv.writer(report).writerows([("path", "reason"), *skipped])
        labels = [entries[i].label for i in kept]
        index = {
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "root": str(root),
            "image_size": image_size,
            "cats": labels.count(CAT),
            "dogs": len(labels) - labels.count(CAT),
            "paths": [entries[i].path for i in kept],
            "labels": labels,
            "source_splits": [entries[i].source_split for i in kept],
            "content_hashes": [sha256_file(sources[i]) for i in kept],
        }
        (scratch / "index.json").write_text(json.dumps(index))  # last: marks the cache complete
        if directory.exists():
            shutil.rmtree(directory)  # an interrupted build that got as far as its rename
        os.replace(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_classes(cache: Cache, root: Path) -> None:
    cats = int((cache.labels == CAT).sum())
    dogs = len(cache.labels) - cats
    if cats == 0 and dogs == 0:
        raise DataError(
            f"no readable images under data.root '{root}': all {len(cache.skipped)} files were "
            f"skipped, reasons in {cache.skipped_report}"
        )
    if cats == 0 or dogs == 0:
        found, missing = ("cat", "dog") if dogs == 0 else ("dog", "cat")
        raise DataError(
            f"only {found} photos under data.root '{root}' ({len(cache.labels)} readable, no "
            f"{missing}s); the classifier needs both cats and dogs"
        )


def _size_and_mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return -1, -1  # e.g. a broken symlink: still an entry, reported as unreadable
    return stat.st_size, stat.st_mtime_ns
