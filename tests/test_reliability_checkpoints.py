"""Checkpoints are whole on disk and never run code when loaded."""

import errno
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import training.atomic_checkpoint_io as atomic_io
from models.checkpoint import CheckpointError, read_checkpoint
from models.classifier import CHECKPOINT_FORMAT, CatsDogsClassifier
from training import AtomicCheckpointIO

REPO = Path(__file__).resolve().parents[1]


def checkpoint_of(value: float) -> dict:
    model = CatsDogsClassifier(network="logreg", image_size=8)
    torch.nn.init.constant_(model.network.head.weight, value)
    return {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "marker": value}


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(checkpoint_of(1.0), path)

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint(checkpoint_of(2.0), path)
    monkeypatch.undo()
    assert read_checkpoint(path)["marker"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no half-written temporary


def test_kill_during_a_slow_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint_of(1.0), path)
    # A child process saves through a "slow disk" (every write sleeps) and is killed mid-write.
    script = f"""
import sys, time, torch
sys.path.insert(0, {str(REPO)!r})
import training.atomic_checkpoint_io as atomic_io
real_save = torch.save
def slow_save(obj, file):
    file.write(b"PK partial bytes"); file.flush()
    open({str(tmp_path / "writing")!r}, "w").close()
    time.sleep(60)
atomic_io.torch.save = slow_save
atomic_io.save_atomically({{"state_dict": {{}}}}, atomic_io.Path({str(path)!r}))
"""
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(3000):
            if (tmp_path / "writing").exists():
                break
            assert child.poll() is None
            __import__("time").sleep(0.01)
        child.kill()
    finally:
        child.wait(timeout=30)
    assert read_checkpoint(path)["marker"] == 1.0
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".last.ckpt.tmp-")]
    assert leftovers and not any(p.suffix == ".ckpt" for p in leftovers)  # never looks like a checkpoint
    AtomicCheckpointIO().save_checkpoint(checkpoint_of(3.0), path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".last.ckpt.tmp-")]  # cleaned up
    assert read_checkpoint(path)["marker"] == 3.0


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(target)}, path)
    assert not target.exists()
    return path, target


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / script), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_code_in_a_checkpoint_never_runs_in_predict_or_train(tmp_path):
    path, target = malicious_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refusing"):
        read_checkpoint(path)
    predicted = run("predict.py", "--ckpt", str(path), str(tmp_path), cwd=tmp_path)
    (tmp_path / "pets").mkdir()
    config = str(REPO / "configs" / "mlp_article.yaml")
    trained = run(
        "train.py",
        "--config",
        config,
        "--data.root",
        str(tmp_path / "pets"),
        "--ckpt_path",
        str(path),
        cwd=tmp_path,
    )
    for result in (predicted, trained):
        assert result.returncode == 2
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: refusing") and "evil.ckpt" in last and "Traceback" not in result.stderr
    assert not target.exists()


@pytest.mark.parametrize("kind", ["truncated", "not_a_checkpoint", "newer_format"])
def test_damaged_or_foreign_checkpoint_is_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "model.ckpt"
    good = checkpoint_of(1.0)
    if kind == "truncated":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "not_a_checkpoint":
        path.write_bytes(b"definitely not a checkpoint")
    else:
        torch.save({**good, "catsdogs": {"format": CHECKPOINT_FORMAT + 1, "project_version": "9.0"}}, path)
    (tmp_path / "pets").mkdir()
    config = str(REPO / "configs" / "mlp_article.yaml")
    for result in (
        run("predict.py", "--ckpt", str(path), str(tmp_path), cwd=tmp_path),
        run(
            "train.py",
            "--config",
            config,
            "--data.root",
            str(tmp_path / "pets"),
            "--ckpt_path",
            str(path),
            cwd=tmp_path,
        ),
    ):
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and "model.ckpt" in last and "Traceback" not in result.stderr
        if kind == "newer_format":
            assert "9.0" in last and "format" in last
    assert not (tmp_path / "data").exists()


def test_project_version_matches_pyproject():
    import tomllib

    from models.classifier import PROJECT_VERSION

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"] == PROJECT_VERSION


def training_checkpoint(value: float, step: int, last_model_path: str = "last.ckpt") -> dict:
    """What Lightning hands the CheckpointIO: weights plus the position in training."""
    position = {"epoch": step // 10, "global_step": step, "loops": {"fit_loop": {"step": step}}}
    callbacks = {"ModelCheckpoint": {"last_model_path": last_model_path}}
    return {**checkpoint_of(value), **position, "callbacks": callbacks}


def test_best_and_last_of_one_moment_share_one_file_and_later_saves_split_them(tmp_path):
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    moment = training_checkpoint(1.0, step=10)
    io.save_checkpoint(moment, best)
    io.save_checkpoint(dict(moment), last)  # ModelCheckpoint's save_last: a new dict, same tensors
    assert best.stat().st_ino == last.stat().st_ino  # written once, linked once
    io.save_checkpoint(training_checkpoint(2.0, step=20), last)  # next epoch, not a new best
    assert best.stat().st_ino != last.stat().st_ino
    assert read_checkpoint(best)["marker"] == 1.0  # renaming a new file over last left best alone
    assert read_checkpoint(last)["marker"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_checkpoints_that_differ_in_anything_are_written_out(tmp_path):
    io = AtomicCheckpointIO()
    first = training_checkpoint(1.0, step=10, last_model_path="")
    io.save_checkpoint(first, tmp_path / "a.ckpt")
    # Same step, but the bookkeeping a resume reads differs (the first epoch's best save).
    io.save_checkpoint(
        {**first, "callbacks": {"ModelCheckpoint": {"last_model_path": "b"}}}, tmp_path / "b.ckpt"
    )
    io.save_checkpoint(training_checkpoint(2.0, step=11), tmp_path / "c.ckpt")
    plain = checkpoint_of(3.0)
    io.save_checkpoint(plain, tmp_path / "d.ckpt")
    io.save_checkpoint(plain, tmp_path / "e.ckpt")  # not a training checkpoint: never linked
    assert read_checkpoint(tmp_path / "b.ckpt")["callbacks"]["ModelCheckpoint"]["last_model_path"] == "b"
    assert [read_checkpoint(tmp_path / f"{n}.ckpt")["marker"] for n in "acde"] == [1.0, 2.0, 3.0, 3.0]
    assert len({(tmp_path / f"{name}.ckpt").stat().st_ino for name in "abcde"}) == 5


def test_bfloat16_checkpoints_link_too(tmp_path):
    io = AtomicCheckpointIO()
    moment = training_checkpoint(1.0, step=10)
    moment["state_dict"] = {k: v.to(torch.bfloat16) for k, v in moment["state_dict"].items()}  # bf16-true
    io.save_checkpoint(moment, tmp_path / "best.ckpt")
    io.save_checkpoint(dict(moment), tmp_path / "last.ckpt")
    assert (tmp_path / "best.ckpt").stat().st_ino == (tmp_path / "last.ckpt").stat().st_ino
    assert (
        read_checkpoint(tmp_path / "last.ckpt")["state_dict"]["network.head.weight"].dtype == torch.bfloat16
    )


@pytest.mark.skipif(
    not hasattr(torch.serialization, "set_crc32_options"), reason="this torch always writes the zip CRC32"
)
def test_checkpoints_skip_the_zip_crc32_and_still_load(tmp_path):
    path = tmp_path / "last.ckpt"
    crc_before = torch.serialization.get_crc32_options()
    AtomicCheckpointIO().save_checkpoint(checkpoint_of(3.0), path)
    with zipfile.ZipFile(path) as archive:
        records = archive.infolist()
    tensor_records = [r for r in records if "/data/" in r.filename and r.file_size > 0]
    assert tensor_records and all(r.CRC == 0 for r in tensor_records)  # not computed
    assert read_checkpoint(path)["marker"] == 3.0
    assert torch.equal(read_checkpoint(path)["state_dict"]["network.head.weight"], torch.full((1, 192), 3.0))
    assert torch.serialization.get_crc32_options() == crc_before  # the process-wide option is restored
