"""The decode-once cache: every photo decoded to uint8 (3, S, S) in one .npy file.

Training then reads a memory-mapped array instead of decoding JPEGs every epoch. The
folder's name holds a key over everything that changes its content (format version, image
size, the source files' names, sizes and mtimes, labels and source splits). Like rsync's
default, size and mtime stand for the content: a photo replaced by one of the same byte size
with its mtime put back is not noticed (hashing every photo at every start would cost as much
as decoding it). A cache is built in a scratch folder and renamed into place, index.json
written last, so an interrupted build is never mistaken for a finished one; SIGTERM or Ctrl-C
during a build removes the scratch folder. index.json holds a blake2b digest of the pixels,
checked at every load, so bytes damaged on disk are rebuilt, never trained on.
"""

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.decode import decode_many
from datasets.errors import DataError
from datasets.layouts import Entry
from models.labels import CAT
from models.pretrained import file_sha256

# Bump when the decoded pixels would change for the same files (resize rule, colour
# handling...), so old caches are not reused.
CACHE_FORMAT_VERSION = 2  # 2: index.json holds the pixels' digest


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
    # A truncated images.npy, pixels that are not the ones decoded, a garbled or malformed index.
    except (OSError, ValueError, KeyError, TypeError) as error:
        warnings.warn(f"the cache at {directory} is damaged ({error}); rebuilding it", stacklevel=2)
        cache = None
    if cache is None:
        with _scratch_folder(directory) as scratch:
            _build(root, entries, image_size, directory, key, scratch)
        cache = _load(directory, image_size)
    _check_classes(cache, root)
    return cache


def _load(directory: Path, image_size: int) -> Cache:
    index = json.loads((directory / "index.json").read_text())
    images = np.load(directory / "images.npy", mmap_mode="r")
    if images.shape != (len(index["paths"]), 3, image_size, image_size):
        raise ValueError(f"images.npy is {images.shape}, index.json lists {len(index['paths'])} photos")
    if pixel_digest(images) != index["pixels_blake2b"]:
        raise ValueError("images.npy does not hold the pixels it was built with")
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


def _build(
    root: Path, entries: Sequence[Entry], image_size: int, directory: Path, key: str, scratch: Path
) -> None:
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
        digest = pixel_digest(slots[: len(kept)])
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
            "content_hashes": [file_sha256(sources[i]) for i in kept],
            "pixels_blake2b": digest,
        }
        (scratch / "index.json").write_text(json.dumps(index))  # last: marks the cache complete
        if directory.exists():
            shutil.rmtree(directory)  # an interrupted build that got as far as its rename
        os.replace(scratch, directory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _scratch_folder(directory: Path) -> Iterator[Path]:
    """A new hidden folder beside `directory` to build in; within the block SIGTERM removes it
    and ends the process (143). By default SIGTERM ends the process on the spot, leaving the
    folder, and Lightning installs its own handler only after prepare_data, which builds the
    cache. The handler exits itself instead of raising SystemExit: an exception raised while
    the decoding pool runs one of its finalizers is printed and ignored, and the build would
    go on. Where another handler is set, or off the main thread (where none can be), it is
    left as it is."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield scratch
        return

    def remove_and_exit(signum: int, frame: object) -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        os._exit(128 + signum)  # the pool's worker processes end with their parent's pipes

    signal.signal(signal.SIGTERM, remove_and_exit)
    try:
        yield scratch
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pixel_digest(images: np.ndarray) -> str:
    """blake2b of the pixel bytes: about 1 GB/s, 0.1 s for 7,000 photos at 64 px, checked at every load."""
    return hashlib.blake2b(np.ascontiguousarray(images)).hexdigest()


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
