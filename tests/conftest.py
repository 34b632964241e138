"""Shared fixtures: a tiny photo folder, one real train.py run on it, and the real photos.

The trained run goes through train.py as a user types it (a subprocess), once per test
session; the tests that only read its checkpoints, run folder and TensorBoard files share it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image_factory import make_layout

# Hypothesis keeps its examples and caches in ./.hypothesis unless told otherwise, and tests never
# write into the repository. Read when Hypothesis first stores something, after this has run.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "catsdogs-hypothesis")
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
ARTICLE_CONFIG = REPO / "configs" / "mlp_article.yaml"
# The article's config on 16x16 photos and a narrow network: the same code path, in seconds.
TINY = [
    "--data.image_size", "16",
    "--data.batch_size", "16",
    "--model.network_kwargs", '{"hidden_dims": [32, 16, 8]}',
    "--model.lr", "3e-3",
    "--trainer.max_epochs", "3",
    "--trainer.enable_progress_bar", "false",
    "--trainer.precision", "32-true",  # runs that are compared must not differ in precision by machine
]  # fmt: skip


def run_script(script: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python <script> args...` from the repository, run in `cwd`, output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def real_photos(name: str) -> Path:
    """A folder of ../shared/data, or a skip that says why."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"needs the real photos in {folder} (absent on this machine)")
    return folder


@dataclass(frozen=True)
class TrainedRun:
    work: Path  # the folder train.py ran in: runs/ and data/cache/ are under it
    pets: Path  # the photo folder it trained on
    stdout: str
    stderr: str

    @property
    def folder(self) -> Path:
        return self.work / "runs" / "mlp_article" / "version_0"

    @property
    def best(self) -> Path:
        return self.folder / "checkpoints" / "best.ckpt"

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def pets(tmp_path_factory) -> Path:
    """32 cats and 32 dogs as real JPEGs in class folders (Microsoft PetImages' layout), plus one
    file that only pretends to be a JPEG."""
    folder = make_layout(tmp_path_factory.mktemp("pets") / "PetImages", "class_folders", n_per_class=32)
    (folder / "Cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, pets) -> TrainedRun:
    """`python train.py --config configs/mlp_article.yaml --data.root PETS` (tiny sizes), once."""
    work = tmp_path_factory.mktemp("trained")
    result = run_script("train.py", "--config", ARTICLE_CONFIG, "--data.root", pets, *TINY, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return TrainedRun(work, pets, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def mislabelled(tmp_path_factory, pets) -> Path:
    """cats/ and dogs/ with 6 of `pets`' photos each of their own class, plus 3 dogs filed under cats/
    and 2 cats under dogs/ (mistakes for a network that learnt `pets`), plus one file that is not a photo."""
    folder = tmp_path_factory.mktemp("mislabelled")
    (folder / "cats").mkdir()
    (folder / "dogs").mkdir()
    for k in range(6):
        shutil.copy(pets / "Cat" / f"{k}.jpg", folder / "cats" / f"cat{k}.jpg")
        shutil.copy(pets / "Dog" / f"{k}.jpg", folder / "dogs" / f"dog{k}.jpg")
    for k in range(10, 13):
        shutil.copy(pets / "Dog" / f"{k}.jpg", folder / "cats" / f"dog{k}.jpg")
    for k in range(10, 12):
        shutil.copy(pets / "Cat" / f"{k}.jpg", folder / "dogs" / f"cat{k}.jpg")
    (folder / "cats" / "notes.jpg").write_text("not a photo")
    return folder
