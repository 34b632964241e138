"""Fetch Microsoft's "Kaggle Cats and Dogs" archive once: download, verify, extract.

Every failure (offline, wrong checksum, broken archive) becomes a one-line
DataError that names --data.root, because the other way to train is a copy of
the photos the user already has.
"""

import http.client
import os
import shutil
import socket
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.utils import download_url, extract_archive

from datasets.checksum import sha256_file
from datasets.errors import DataError


@dataclass(frozen=True)
class ArchiveSource:
    """Where an archive lives, what its bytes hash to, and the folder it unpacks to."""

    url: str
    sha256: str
    folder: str
    description: str = "the Kaggle Cats and Dogs archive"


PETIMAGES = ArchiveSource(
    url=(
        "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
        "kagglecatsanddogs_5340.zip"
    ),
    # 824,887,076 bytes; unpacks to PetImages/Cat and PetImages/Dog, including
    # known-broken files and Thumbs.db, which the cache skips and reports.
    sha256="b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9",
    folder="PetImages",
)


def download_petimages(
    download_dir: str = "data",
    url: str = PETIMAGES.url,
    sha256: str = PETIMAGES.sha256,
    timeout: float = 15.0,
) -> Path:
    """The extracted PetImages folder under `download_dir`, downloading it if needed."""
    source = ArchiveSource(url=url, sha256=sha256, folder=PETIMAGES.folder)
    return fetch_archive(source, download_dir, timeout)


def fetch_archive(source: ArchiveSource, download_dir: str | os.PathLike, timeout: float) -> Path:
    """Download (or reuse), verify and extract `source`; returns download_dir/folder.

    A marker file written after a complete extraction lets later calls return
    without touching the network.
    """
    download_dir = Path(download_dir)
    target = download_dir / source.folder
    marker = download_dir / f".{source.folder}.complete"
    if marker.is_file() and target.is_dir() and marker.read_text().strip() == source.sha256:
        return target

    archive = download_dir / (Path(urllib.parse.urlparse(source.url).path).name or "archive.zip")
    if not (archive.is_file() and sha256_file(archive) == source.sha256):
        _download(source, archive, timeout)
    _extract(source, archive, target)
    marker.write_text(source.sha256 + "\n")
    return target


def _download(source: ArchiveSource, archive: Path, timeout: float) -> None:
    # Download under a temporary name: an interrupted download must never look
    # like a finished archive.
    partial = archive.with_name(archive.name + ".part")
    partial.unlink(missing_ok=True)
    archive.unlink(missing_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    # urllib inside download_url takes no timeout argument; without one an
    # offline machine can hang for minutes instead of failing in seconds.
    socket.setdefaulttimeout(timeout)
    try:
        download_url(source.url, str(archive.parent), filename=partial.name, md5=None)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise DataError(
            f"could not download {source.description} from {source.url} ({reason}); "
            "pass --data.root DIR to train on a copy you already have"
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)

    actual = sha256_file(partial)
    if actual != source.sha256:
        partial.unlink()
        raise DataError(
            f"checksum mismatch for {archive}: expected {source.sha256}, got {actual}; "
            "the download was deleted: retry, or pass --data.root DIR with the photos"
        )
    os.replace(partial, archive)


def _extract(source: ArchiveSource, archive: Path, target: Path) -> None:
    # Extract beside the target and move the folder in one step, so a crash
    # mid-extraction leaves no half-filled PetImages/ behind.
    scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=archive.parent))
    try:
        try:
            extract_archive(str(archive), str(scratch))
        except (OSError, zipfile.BadZipFile, RuntimeError) as error:
            raise DataError(
                f"could not extract {archive} ({error}); delete it and retry, "
                "or pass --data.root DIR with the photos"
            ) from error
        extracted = scratch / source.folder
        if not extracted.is_dir():
            raise DataError(
                f"{archive} has no {source.folder}/ folder; delete it and retry, "
                "or pass --data.root DIR with the photos"
            )
        if target.exists():
            shutil.rmtree(target)  # left by an earlier, interrupted run (no marker)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
