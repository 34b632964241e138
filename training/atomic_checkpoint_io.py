"""Checkpoint files that are always whole: write a temporary file, fsync it, rename it into place.

A crash, a kill or a full disk in the middle of a save leaves the previous
checkpoint untouched: the new bytes go to `.<name>.tmp-<random>` in the same
folder, and only a complete, fsynced file is renamed over the old one
(`os.replace` is atomic within one filesystem). The temporary name does not end
in `.ckpt`, so nothing that looks for checkpoints ever picks one up, and the next
save of the same file deletes any left by a killed process.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

TEMP_INFIX = ".tmp-"


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with crash-safe local writes and `weights_only=True` loads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or get_filesystem(path).protocol not in ("file", ("file", "local")):
            super().save_checkpoint(checkpoint, path, storage_options)  # remote: fsspec's transaction
            return
        save_atomically(checkpoint, Path(path))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict:
        # Whatever the caller asked for: a checkpoint never gets to run code while loading.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def save_atomically(obj: object, path: Path) -> None:
    """torch.save `obj` to `path` so that `path` is always either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}{TEMP_INFIX}", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)  # ...and the rename itself survives a power cut


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of `path` left by a process killed while saving it."""
    stale = sorted(path.parent.glob(f".{path.name}{TEMP_INFIX}*"))
    for leftover in stale:
        with contextlib.suppress(OSError):
            leftover.unlink()
    return stale


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
