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
from pathlib import Path

from torchvision.datasets.utils import download_url, extract_archive

from datasets.errors import DataError
from models.pretrained import file_sha256

PETIMAGES_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
# 824,887,076 bytes; unpacks to PetImages/Cat and PetImages/Dog, including known-broken
# files and Thumbs.db, which the cache skips and reports.
PETIMAGES_SHA256 = "b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9"
FOLDER = "PetImages"


def download_petimages(
    download_dir: str = "data",
    url: str = PETIMAGES_URL,
    sha256: str = PETIMAGES_SHA256,
    timeout: float = 15.0,
) -> Path:
    """The extracted PetImages folder under `download_dir`, downloading it if needed.

    A marker file written after a complete extraction lets later calls return
    without touching the network.
    """
    download_dir = Path(download_dir)
    target = download_dir / FOLDER
    marker = download_dir / f".{FOLDER}.complete"
    if marker.is_file() and target.is_dir() and marker.read_text().strip() == sha256:
        return target

    archive = download_dir / (Path(urllib.parse.urlparse(url).path).name or "archive.zip")
    if not (archive.is_file() and file_sha256(archive) == sha256):
        _download(url, sha256, archive, timeout)
    _extract(archive, target)
    marker.write_text(sha256 + "\n")
    return target


def _download(url: str, sha256: str, archive: Path, timeout: float) -> None:
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
        download_url(url, str(archive.parent), filename=partial.name, md5=None)
    except (OSError, RuntimeError, ValueError, http.client.HTTPException) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise DataError(
            f"could not download the Kaggle Cats and Dogs archive from {url} ({reason}); "
            "pass --data.root DIR to train on a copy you already have"
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)

    actual = file_sha256(partial)
    if actual != sha256:
        partial.unlink()
        raise DataError(
            f"checksum mismatch for {archive}: expected {sha256}, got {actual}; "
            "the download was deleted: retry, or pass --data.root DIR with the photos"
        )
    os.replace(partial, archive)


def _extract(archive: Path, target: Path) -> None:
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
        extracted = scratch / FOLDER
        if not extracted.is_dir():
            raise DataError(
                f"{archive} has no {FOLDER}/ folder; delete it and retry, "
                "or pass --data.root DIR with the photos"
            )
        if target.exists():
            shutil.rmtree(target)  # left by an earlier, interrupted run (no marker)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
