"""download_petimages against a local HTTP server: download, checksum, extract, reuse, failures."""

import functools
import hashlib
import http.server
import socket
import threading
import time
import zipfile

import pytest

from datasets import DataError, download_petimages
from datasets.layouts import detect_layout, list_entries
from tests.image_factory import write_image


@pytest.fixture
def served_zip(tmp_path):
    """(url, sha256, requests) of a small PetImages zip served on 127.0.0.1."""
    served = tmp_path / "served"
    photos = tmp_path / "photos"
    for i in range(2):
        write_image(photos / f"Cat/{i}.jpg", (220, 90, 70), noise=20, seed=i)
        write_image(photos / f"Dog/{i}.jpg", (40, 50, 120), noise=20, seed=10 + i)
    served.mkdir()
    with zipfile.ZipFile(served / "pets.zip", "w") as archive:
        for photo in sorted(photos.rglob("*.jpg")):
            archive.write(photo, f"PetImages/{photo.relative_to(photos).as_posix()}")
    requests: list[str] = []

    class CountingHandler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass  # keep test output clean

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    sha256 = hashlib.sha256((served / "pets.zip").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_address[1]}/pets.zip", sha256, requests
    server.shutdown()
    server.server_close()


def test_download_verify_extract_then_reuse(served_zip, tmp_path):
    url, sha256, requests = served_zip
    root = download_petimages(str(tmp_path / "data"), url=url, sha256=sha256, timeout=5)
    assert root == tmp_path / "data" / "PetImages"
    assert detect_layout(root) == "class_folders"
    assert len(list_entries(root, "class_folders")) == 4
    assert (tmp_path / "data" / "pets.zip").is_file()  # kept for reuse
    assert socket.getdefaulttimeout() is None  # restored after the download
    assert len(requests) > 0

    count = len(requests)
    assert download_petimages(str(tmp_path / "data"), url=url, sha256=sha256) == root
    assert len(requests) == count  # marker found: no network at all


def test_matching_archive_is_reused_without_downloading(served_zip, tmp_path):
    url, sha256, requests = served_zip
    data = tmp_path / "data"
    data.mkdir()
    (data / "pets.zip").write_bytes((tmp_path / "served" / "pets.zip").read_bytes())
    root = download_petimages(str(data), url=url, sha256=sha256)
    assert requests == []
    assert sorted(p.name for p in (root / "Cat").iterdir()) == ["0.jpg", "1.jpg"]


def test_checksum_mismatch_is_an_error_and_leaves_no_archive(served_zip, tmp_path):
    url, _, _ = served_zip
    with pytest.raises(DataError, match="checksum mismatch .*expected 0{64}, got [0-9a-f]{64}"):
        download_petimages(str(tmp_path / "data"), url=url, sha256="0" * 64)
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_url_fails_fast_with_data_root_hint(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        download_petimages(str(tmp_path / "data"), url=f"http://127.0.0.1:{port}/x.zip", timeout=2)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert "could not download" in message and "--data.root" in message and "\n" not in message
    assert not (tmp_path / "data" / "PetImages").exists()
