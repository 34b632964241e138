"""Interrupted runs resume: SIGKILL mid-epoch, SIGTERM and SIGINT, each through the real train.py."""

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"
EPOCHS = 4
SETTINGS = [  # tiny, deterministic, 7 batches an epoch, every step logged
    "--data.image_size", "16",
    "--data.batch_size", "8",
    "--model.network_kwargs", '{"hidden_dims": [32, 16, 8], "dropout": 0.3}',  # dropout: the RNG matters
    "--model.lr", "3e-3",
    "--trainer.max_epochs", str(EPOCHS),
    "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false",
    "--seed_everything", "1",
    "--trainer.deterministic", "true",
]  # fmt: skip


VALIDATING = 99  # Pace's "batch" while validating: after every training batch of the epoch


class Pace(pl.Callback):
    """Test-only: writes "epoch batch" to a file before each training batch (and "epoch 99"
    before each validation batch), then waits a little, so the test can see where a run is
    and signal it there without guessing from timing."""

    def __init__(self, progress_file: str, seconds_per_batch: float = 0.1) -> None:
        self.progress_file = Path(progress_file)
        self.seconds_per_batch = seconds_per_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.progress_file.write_text(f"{trainer.current_epoch} {batch_idx}")
        time.sleep(self.seconds_per_batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.progress_file.write_text(f"{trainer.current_epoch} {VALIDATING}")
        time.sleep(self.seconds_per_batch)


def start(work: Path, pets: Path, *extra: str) -> subprocess.Popen:
    pace = {"class_path": "tests.test_reliability_resume.Pace", "init_args": {"progress_file": "progress"}}
    config = pets.parent / "config.yaml"  # one copy for every run of this module
    command = [sys.executable, str(REPO / "train.py"), "--config", str(config), *SETTINGS]
    command += ["--data.root", str(pets), *extra]
    command += ["--trainer.callbacks+", json.dumps(pace)]
    return subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def wait_for(work: Path, epoch: int, batch: int, process: subprocess.Popen) -> None:
    """Until the run is in `epoch` at `batch` or later and last.ckpt of an earlier epoch exists."""
    last = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        try:
            now = tuple(int(v) for v in (work / "progress").read_text().split())
        except (OSError, ValueError):
            now = (-1, -1)
        if len(now) == 2 and now >= (epoch, batch) and last.is_file():
            return
        time.sleep(0.02)
    raise AssertionError("the run never reached the point to interrupt it")


def final_weights(work: Path) -> dict[str, torch.Tensor]:
    last = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == EPOCHS - 1
    return checkpoint["state_dict"]


def scalars(work: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(work / "runs" / "mlp_article" / "version_0"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    (root / "config.yaml").write_text(CONFIG.read_text())
    return make_layout(root / "pets", "class_folders", n_per_class=32)


@pytest.fixture(scope="module")
def uninterrupted(pets, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted")
    status, _, err = finish(start(work, pets))
    assert status == 0, err[-3000:]
    return work


def assert_same_as_uninterrupted(work: Path, reference: Path) -> None:
    expected, got = final_weights(reference), final_weights(work)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs from the uninterrupted run"
    expected_steps, got_steps = scalars(reference), scalars(work)
    assert set(got_steps) == set(expected_steps)
    for tag, steps in got_steps.items():  # nothing logged twice that the uninterrupted run logged once
        assert not Counter(steps) - Counter(expected_steps[tag]), f"{tag}: {steps} vs {expected_steps[tag]}"
    # Lightning's own scalars: exactly the uninterrupted run's steps, nothing lost, nothing twice.
    # (Callbacks that log an update's statistics at the step count *after* it lose that one
    # point at the resume step, where TensorBoard purges the killed run's orphans.)
    for tag in ("train/loss_step", "train/loss_epoch", "val/loss", "val/acc", "lr-AdamW/weights", "epoch"):
        assert got_steps[tag] == expected_steps[tag], f"{tag}: {got_steps[tag]} != {expected_steps[tag]}"
    assert len(expected_steps["train/loss_step"]) == 7 * EPOCHS


# Worker processes fetch ahead: Lightning starts the first epoch's iterator before it
# restores its loops and calls set_epoch, so the resumed epoch's order must come from the
# checkpoint itself (a run with workers once resumed with epoch 0's order).
TWO_WORKERS = ["--data.num_workers", "2"]
WORKERS = pytest.mark.parametrize("workers", [[], TWO_WORKERS], ids=["in-process", "2 workers"])


@WORKERS
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(pets, uninterrupted, tmp_path, workers):
    process = start(tmp_path, pets, *workers)
    wait_for(tmp_path, epoch=1, batch=3, process=process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    status, out, err = finish(start(tmp_path, pets, *workers, "--ckpt_path", "last"))
    assert status == 0, err[-3000:]
    assert "version_0" in out and not (tmp_path / "runs" / "mlp_article" / "version_1").exists()
    assert_same_as_uninterrupted(tmp_path, uninterrupted)


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, []), (signal.SIGINT, []), (signal.SIGTERM, TWO_WORKERS)],
    ids=["SIGTERM", "SIGINT", "SIGTERM, 2 workers"],
)
def test_signal_saves_last_checkpoint_and_stops_then_resume_matches(
    pets, uninterrupted, tmp_path, signum, workers
):
    process = start(tmp_path, pets, *workers)
    wait_for(tmp_path, epoch=1, batch=2, process=process)
    process.send_signal(signum)
    status, out, err = finish(process)
    assert status == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "Training finished" not in out
    message = err.strip().splitlines()[-1]
    assert signal.Signals(signum).name in message and "last.ckpt" in message
    last = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    epoch, batch = (int(v) for v in (tmp_path / "progress").read_text().split())
    assert saved["epoch"] == epoch == 1  # saved mid-epoch, after the batch in flight
    assert saved["global_step"] == 7 * epoch + batch + 1
    assert not list(last.parent.glob(".*tmp*"))
    status, _, err = finish(start(tmp_path, pets, *workers, "--ckpt_path", str(last)))
    assert status == 0, err[-3000:]
    assert_same_as_uninterrupted(tmp_path, uninterrupted)


def test_signal_in_the_epochs_last_batch_stops_after_the_epochs_end_then_resume_matches(
    pets, uninterrupted, tmp_path
):
    """Lightning resumes a checkpoint saved after an epoch's last batch (6 of 0-6) in the next
    epoch, skipping the interrupted epoch's validation, best checkpoint and epoch metrics; so
    the run finishes that epoch first, then stops, and nothing is missing after the resume."""
    process = start(tmp_path, pets)
    wait_for(tmp_path, epoch=1, batch=6, process=process)
    process.send_signal(signal.SIGTERM)
    status, _, err = finish(process)
    assert status == 128 + signal.SIGTERM, err[-3000:]
    last = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 14  # 2 whole epochs
    logged, expected = scalars(tmp_path), scalars(uninterrupted)
    for tag in ("val/acc", "train/loss_epoch", "train/acc"):  # both epochs' ends, before the resume
        assert logged[tag] == expected[tag][:2], f"{tag}: {logged[tag]} vs {expected[tag]}"
    status, _, err = finish(start(tmp_path, pets, "--ckpt_path", "last"))
    assert status == 0, err[-3000:]
    assert_same_as_uninterrupted(tmp_path, uninterrupted)


def test_sigterm_during_validation_saves_and_stops_with_its_status_then_resume_matches(
    pets, uninterrupted, tmp_path
):
    """Lightning's own SIGTERM handling (chained before ours) would end the run at the epoch's
    end with exit status 0 and nothing saved; the signal must stop it like any other: after
    the next training batch, with last.ckpt and status 143."""
    process = start(tmp_path, pets)
    wait_for(tmp_path, epoch=1, batch=VALIDATING, process=process)
    process.send_signal(signal.SIGTERM)
    status, out, err = finish(process)
    assert status == 128 + signal.SIGTERM, err[-3000:]
    assert "Training finished" not in out
    last = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 15  # epoch 2's first
    status, _, err = finish(start(tmp_path, pets, "--ckpt_path", "last"))
    assert status == 0, err[-3000:]
    assert_same_as_uninterrupted(tmp_path, uninterrupted)


def test_resume_last_without_a_run_says_so_in_one_line(pets, tmp_path):
    status, _, err = finish(start(tmp_path, pets, "--ckpt_path", "last"))
    assert status == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: --ckpt_path last") and "last.ckpt" in err
    assert not (tmp_path / "data").exists()


DDP = [  # two CPU processes (gloo), 4 photos each: the same 8-photo global batch, 7 steps an epoch
    "--trainer.devices", "2",
    "--trainer.strategy", "ddp",
    "--trainer.accelerator", "cpu",
    "--data.batch_size", "4",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted_ddp(pets, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("uninterrupted_ddp")
    status, _, err = finish(start(work, pets, *DDP))
    assert status == 0, err[-3000:]
    return work


def test_ddp_signal_to_one_rank_stops_both_then_resume_matches(pets, uninterrupted_ddp, tmp_path):
    """`kill -INT PID` reaches rank 0 alone (rank 1 is its child, and Lightning forwards only
    SIGTERM to it): both ranks must stop after the same batch, or one would wait forever in
    the other's next all-reduce; and the resumed epoch must skip on each rank what that rank
    had trained on, or the weights would differ from the uninterrupted DDP run's."""
    process = start(tmp_path, pets, *DDP)
    wait_for(tmp_path, epoch=1, batch=2, process=process)
    process.send_signal(signal.SIGINT)
    status, out, err = finish(process)
    assert status == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err and "Training finished" not in out
    assert "stopped by SIGINT at step" in err  # rank 0
    assert "stopped by SIGTERM on another rank" not in err
    assert "stopped by SIGINT on another rank" in err, err[-3000:]  # rank 1, told by rank 0
    last = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and 7 < saved["global_step"] < 14  # mid-epoch
    status, _, err = finish(start(tmp_path, pets, *DDP, "--ckpt_path", "last"))
    assert status == 0, err[-3000:]
    assert_same_as_uninterrupted(tmp_path, uninterrupted_ddp)
