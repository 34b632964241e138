"""datasets.download against a real HTTP server on 127.0.0.1: torchvision's download_url and
extract_archive, the sha256 check, reuse without the network, and every failure as a
one-line DataError that leaves no half-downloaded archive or half-extracted folder."""

import functools
import hashlib
import http.server
import shutil
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from datasets import DataError
from datasets.datamodule import CatsDogsDataModule
from datasets.download import PETIMAGES_SHA256, download_petimages
from datasets.layouts import detect_layout, list_entries
from models.labels import CAT, DOG
from tests.image_factory import CAT_COLOR, DOG_COLOR, make_layout, write_image

pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
PHOTOS = {"PetImages/Cat/0.jpg": CAT, "PetImages/Cat/1.jpg": CAT, "PetImages/Dog/0.jpg": DOG}


def build_archive(photos: Path, archive: Path, top: str = "PetImages") -> Path:
    """A .zip or .tar.gz of `photos`' files, each under `top`/ in the archive."""
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zipped:
            for path in files:
                zipped.write(path, f"{top}/{path.relative_to(photos).as_posix()}")
    else:
        with tarfile.open(archive, "w:gz") as tarred:
            for path in files:
                tarred.add(path, f"{top}/{path.relative_to(photos).as_posix()}")
    return archive


class Served:
    """A folder served over HTTP on 127.0.0.1 in a thread, counting the GET requests."""

    def __init__(self, folder: Path):
        self.folder, self.requests = folder, []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=folder)
        )
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(tmp_path):
    server = Served(tmp_path / "served")
    (tmp_path / "served").mkdir()
    yield server
    server.close()


@pytest.fixture(params=["pets.zip", "pets.tar.gz"])
def archive(request, tmp_path, served):
    """(url, sha256) of a small PetImages archive on the server."""
    photos = tmp_path / "photos"
    for relative, label in PHOTOS.items():
        color = CAT_COLOR if label == CAT else DOG_COLOR
        write_image(
            photos / relative.removeprefix("PetImages/"), color, (16, 16), noise=20, seed=len(relative)
        )
    path = build_archive(photos, served.folder / request.param)
    return served.url(request.param), hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Everything under `folder`, relative: what a failed fetch left behind."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_download_verify_extract_then_reuse_without_the_network(archive, served, tmp_path):
    url, sha256 = archive
    data = tmp_path / "data"
    root = download_petimages(str(data), url=url, sha256=sha256, timeout=5)
    assert root == data / "PetImages"
    assert socket.getdefaulttimeout() is None  # the download's timeout was not left behind
    assert detect_layout(root) == "class_folders"
    assert {f"PetImages/{e.path}": e.label for e in list_entries(root, "auto")} == PHOTOS
    for relative in PHOTOS:  # the bytes that were archived
        assert (data / relative).read_bytes() == (
            tmp_path / "photos" / relative.removeprefix("PetImages/")
        ).read_bytes()
    archive_name = url.rsplit("/", 1)[1]
    assert sorted(p.name for p in data.iterdir()) == sorted(
        [".PetImages.complete", "PetImages", archive_name]
    )
    assert (data / ".PetImages.complete").read_text().strip() == sha256
    assert served.requests

    count = len(served.requests)
    served.close()  # from now on the network is gone
    assert download_petimages(str(data), url=url, sha256=sha256) == root
    assert len(served.requests) == count


def test_a_verified_archive_already_there_is_extracted_without_downloading(archive, served, tmp_path):
    url, sha256 = archive
    data = tmp_path / "data"
    data.mkdir()
    name = url.rsplit("/", 1)[1]
    shutil.copy(served.folder / name, data / name)
    root = download_petimages(str(data), url=url, sha256=sha256)
    assert served.requests == []
    assert len(list_entries(root, "class_folders")) == len(PHOTOS)


def test_a_damaged_archive_or_half_extracted_folder_is_replaced(archive, served, tmp_path):
    url, sha256 = archive
    data = tmp_path / "data"
    name = url.rsplit("/", 1)[1]
    write_image(data / "PetImages" / "Cat" / "left_by_a_crash.jpg", CAT_COLOR, (16, 16))  # no marker
    (data / name).write_bytes(b"the first half of an archive")
    root = download_petimages(str(data), url=url, sha256=sha256)
    assert served.requests  # the damaged archive was downloaded again
    assert hashlib.sha256((data / name).read_bytes()).hexdigest() == sha256
    assert sorted(f"PetImages/{e.path}" for e in list_entries(root, "auto")) == sorted(PHOTOS)


def test_wrong_checksum_is_a_one_line_error_and_leaves_nothing(archive, tmp_path):
    url, sha256 = archive
    data = tmp_path / "data"
    with pytest.raises(DataError) as error:
        download_petimages(str(data), url=url, sha256="0" * 64)
    message = one_line(error)
    assert "checksum mismatch" in message and f"expected {'0' * 64}, got {sha256}" in message
    assert "--data.root" in message and "retry" in message
    assert leftovers(data) == []  # no archive, no .part file, no PetImages/, no marker


def test_missing_file_on_the_server_is_a_one_line_error(served, tmp_path):
    with pytest.raises(DataError) as error:
        download_petimages(str(tmp_path / "data"), url=served.url("gone.zip"), sha256="0" * 64)
    message = one_line(error)
    assert "could not download" in message and "gone.zip" in message and "not found" in message.lower()
    assert "--data.root" in message
    assert leftovers(tmp_path / "data") == []


def test_archive_without_a_petimages_folder_is_a_one_line_error(served, tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "Cat" / "0.jpg", CAT_COLOR, (16, 16))
    archive = build_archive(photos, served.folder / "other.zip", top="kagglecatsanddogs")
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    data = tmp_path / "data"
    with pytest.raises(DataError) as error:
        download_petimages(str(data), url=served.url("other.zip"), sha256=sha256)
    message = one_line(error)
    assert "has no PetImages/ folder" in message and "--data.root" in message
    assert leftovers(data) == ["other.zip"]  # the verified download is kept; nothing extracted


def test_unreachable_server_fails_at_once(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        download_petimages(str(tmp_path / "data"), url=f"http://127.0.0.1:{port}/x.zip", timeout=2)
    assert time.monotonic() - start < 5
    message = one_line(error)
    assert "could not download" in message and "--data.root" in message
    assert not (tmp_path / "data" / "PetImages").exists()


def test_a_server_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel does) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        with pytest.raises(DataError) as error:
            download_petimages(
                str(tmp_path / "data"), url=f"http://127.0.0.1:{silent.getsockname()[1]}/x.zip", timeout=0.5
            )
        elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 5
    assert "could not download" in one_line(error) and "timed out" in str(error.value)
    assert socket.getdefaulttimeout() is None
    assert leftovers(tmp_path / "data") == []


def test_datamodule_without_root_uses_an_earlier_download_offline(tmp_path):
    data = tmp_path / "data"
    make_layout(data / "PetImages", "class_folders", n_per_class=4, size=(16, 16))
    (data / ".PetImages.complete").write_text(PETIMAGES_SHA256 + "\n")  # as download_petimages leaves it
    module = CatsDogsDataModule(
        root=None, image_size=16, batch_size=4, download_dir=str(data), cache_dir=str(tmp_path / "cache")
    )
    module.prepare_data()
    module.setup("fit")
    assert module.layout == "class_folders" and len(module.cache.labels) == 8
    assert f"data: {data / 'PetImages'} (class_folders), 8 photos" in module.summary()
    x, y = next(iter(module.val_dataloader()))
    assert x.shape[1:] == (3, 16, 16) and y.dtype == torch.int64
