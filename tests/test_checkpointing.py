"""Checkpoints on disk: what a finished train.py run leaves, and AtomicCheckpointIO's writes.

best.ckpt is weights only (testing and predicting), last.ckpt the whole state (resuming);
both are whole zip archives with the `catsdogs` record. A save that fails part-way leaves
the previous file as it was and no temporary behind.
"""

import errno
import os
import re
import stat
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomllib
import torch

from inference import read_checkpoint
from models import PROJECT_VERSION
from tests.conftest import ARTICLE_CONFIG, REPO, TINY, run_script
from training.checkpointing import AtomicCheckpointIO, DiskFull


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- what a finished run leaves -------------------------------------------------------


@pytest.fixture(scope="module")
def without_checkpointing(request, pets, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A one-epoch run with --trainer.enable_checkpointing false, trained while `trained_run` is."""
    work = tmp_path_factory.mktemp("without_checkpointing")
    args = ["--config", ARTICLE_CONFIG, "--data.root", pets, *TINY, "--trainer.max_epochs", "1"]
    args += ["--trainer.enable_checkpointing", "false"]
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(run_script, "train.py", *args, cwd=work)
        request.getfixturevalue("trained_run")
        return work, result.result()


def test_finished_run_has_weights_only_best_and_full_last(trained_run, without_checkpointing):
    assert listing(trained_run.best.parent) == ["best.ckpt", "last.ckpt"]  # no temporaries left
    for path in (trained_run.best, trained_run.last):
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None, f"{path.name}: a record fails its CRC"
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask(), f"{path.name}: not the umask's mode"
    best, last = read_checkpoint(trained_run.best), read_checkpoint(trained_run.last)  # `catsdogs` record
    assert "optimizer_states" not in best and "lr_schedulers" not in best
    assert best["state_dict"].keys() == last["state_dict"].keys()
    assert last["optimizer_states"] and last["lr_schedulers"] and "loops" in last


def test_last_checkpoint_is_written_when_training_ends_though_no_minute_passed(trained_run):
    # 3 epochs of the tiny run take seconds, far from last_checkpoint's once-a-minute interval.
    train_photos = int(re.search(r"train\s+(\d+) photos", trained_run.stdout).group(1))
    steps_per_epoch = -(-train_photos // 16)  # TINY's batch size, the last batch partial
    last = read_checkpoint(trained_run.last)
    assert last["epoch"] == 3 and last["global_step"] == 3 * steps_per_epoch
    assert last["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 3


def test_training_without_checkpointing_writes_no_checkpoints(without_checkpointing):
    work, result = without_checkpointing
    assert result.returncode == 0, result.stderr[-3000:]
    run = work / "runs" / "mlp_article" / "version_0"
    assert (run / "config.yaml").is_file()  # the run itself happened, in its folder
    assert not (run / "checkpoints").exists()
    assert list(work.rglob("*.ckpt")) == []
    assert "test/acc" in result.stdout and "best checkpoint" not in result.stdout


def test_project_version_matches_pyproject():
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == PROJECT_VERSION


# --- AtomicCheckpointIO ---------------------------------------------------------------


def checkpoint_of(value: float, **extra) -> dict:
    return {"state_dict": {"w": torch.full((4, 3), value)}, "global_step": int(value), **extra}


class FullDisk:
    """Pickling it fails as a write onto a full disk does, part-way through the save."""

    def __reduce__(self):
        raise OSError(errno.ENOSPC, "No space left on device")


class FullDiskInTorchsWriter:
    """The same, as torch's zip writer reports it: a RuntimeError raised while handling the OSError."""

    def __reduce__(self):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None


@pytest.mark.parametrize("full_disk", [FullDisk, FullDiskInTorchsWriter])
def test_save_onto_a_full_disk_keeps_the_previous_file_and_says_what_it_needs(tmp_path, full_disk):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint(checkpoint_of(1.0), path)
    before = path.read_bytes()
    big = {"state_dict": {"w": torch.zeros(3_000_000)}, "tail": full_disk()}  # 12 MB of tensors
    with pytest.raises(DiskFull) as failed:
        io.save_checkpoint(big, path)
    message = str(failed.value)
    assert f"no space left in {tmp_path}: a checkpoint needs about 12 MB" in message, message
    assert "MB are free" in message and "--ckpt_path last" in message and "\n" not in message
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["last.ckpt"]


def test_a_save_that_fails_otherwise_is_not_called_a_full_disk(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError) as failed:
        AtomicCheckpointIO().save_checkpoint(checkpoint_of(1.0, tail=Unpicklable()), tmp_path / "x.ckpt")
    assert failed.value.errno == errno.EIO
    assert listing(tmp_path) == []


def test_save_replaces_the_file_whole_and_a_reader_keeps_the_old_one(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "ckpts" / "last.ckpt"  # the folder is made
    io.save_checkpoint(checkpoint_of(1.0), path)
    with open(path, "rb") as reader:  # e.g. predict.py loading it while training goes on
        io.save_checkpoint(checkpoint_of(2.0), path)
        assert os.fstat(reader.fileno()).st_ino != path.stat().st_ino  # renamed over, not rewritten
        assert torch.load(reader, weights_only=True)["global_step"] == 1
    saved = torch.load(path, weights_only=True)
    assert saved["global_step"] == 2 and torch.equal(saved["state_dict"]["w"], torch.full((4, 3), 2.0))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
    assert listing(path.parent) == ["last.ckpt"]


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_saved_files_get_the_umasks_mode_not_a_private_one(tmp_path, mask):
    previous = os.umask(mask)
    try:
        AtomicCheckpointIO().save_checkpoint(checkpoint_of(1.0), tmp_path / "best.ckpt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "best.ckpt").stat().st_mode) == 0o666 & ~mask


def test_a_temporary_left_by_a_killed_process_of_the_same_pid_does_not_block_saving(tmp_path):
    # In a container a restarted run often gets the very PID of the one a kill stopped mid-save.
    path = tmp_path / "last.ckpt"
    stale = tmp_path / f".last.ckpt.{os.getpid()}.tmp"
    stale.write_bytes(b"PK half a checkpoint")
    AtomicCheckpointIO().save_checkpoint(checkpoint_of(3.0), path)
    assert torch.load(path, weights_only=True)["global_step"] == 3
    assert listing(tmp_path) == ["last.ckpt"]
