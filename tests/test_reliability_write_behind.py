"""Write-behind checkpoints: saves within the interval wait in memory, as they were, until written."""

import errno
import json
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml

import training.atomic_checkpoint_io as atomic_io
from models.checkpoint import read_checkpoint
from tests.image_factory import make_layout
from tests.test_reliability_checkpoints import training_checkpoint
from training import AtomicCheckpointIO
from training.checkpoint_snapshot import SnapshotBuffers

HOUR = 3600.0
REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"


def weight(path) -> float:
    return float(read_checkpoint(path)["state_dict"]["network.head.weight"][0, 0])


def test_a_save_within_the_interval_waits_in_memory_as_it_was_then(tmp_path):
    io, best = AtomicCheckpointIO(write_behind_seconds=HOUR), tmp_path / "best.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)  # a run's first save: written at once
    assert weight(best) == 1.0
    second = training_checkpoint(2.0, step=20)
    io.save_checkpoint(second, best)
    assert weight(best) == 1.0  # held, not written
    second["state_dict"]["network.head.weight"].fill_(99.0)  # the next optimiser step, in place
    io.flush()
    assert weight(best) == 2.0 and read_checkpoint(best)["global_step"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]  # no temporaries left


def test_the_first_save_after_the_interval_writes_the_held_ones_too(tmp_path):
    io = AtomicCheckpointIO(write_behind_seconds=0.2)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    io.save_checkpoint(training_checkpoint(2.0, step=20), best)
    io.flush_if_due()
    assert weight(best) == 1.0  # not due yet
    time.sleep(0.25)
    io.save_checkpoint(training_checkpoint(3.0, step=30), last)
    assert (weight(best), weight(last)) == (2.0, 3.0)


def test_flush_if_due_writes_once_the_interval_has_passed(tmp_path):
    io, best = AtomicCheckpointIO(write_behind_seconds=0.2), tmp_path / "best.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    io.save_checkpoint(training_checkpoint(2.0, step=20), best)
    time.sleep(0.25)
    io.flush_if_due()
    assert weight(best) == 2.0


def test_held_best_and_last_of_one_moment_are_written_once_and_linked(tmp_path):
    io = AtomicCheckpointIO(write_behind_seconds=HOUR)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    io.save_checkpoint(training_checkpoint(1.0, step=10), last)  # the step just written: out at once
    assert weight(last) == 1.0
    moment = training_checkpoint(2.0, step=20)
    io.save_checkpoint(moment, best)
    io.save_checkpoint(dict(moment), last)
    io.flush()
    assert best.stat().st_ino == last.stat().st_ino
    assert weight(last) == 2.0


def test_a_snapshot_two_names_hold_is_not_overwritten_while_one_still_holds_it(tmp_path):
    io = AtomicCheckpointIO(write_behind_seconds=HOUR)
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    moment = training_checkpoint(2.0, step=20)
    io.save_checkpoint(moment, best)
    io.save_checkpoint(dict(moment), last)  # one snapshot, two names
    io.save_checkpoint(training_checkpoint(3.0, step=30), best)  # a new best; last.ckpt still holds step 20
    io.flush()
    assert (weight(best), weight(last)) == (3.0, 2.0)
    assert read_checkpoint(last)["global_step"] == 20


def test_a_held_checkpoint_that_is_removed_is_never_written(tmp_path):
    io = AtomicCheckpointIO(write_behind_seconds=HOUR)
    io.save_checkpoint(training_checkpoint(1.0, step=10), tmp_path / "epoch=0.ckpt")
    io.save_checkpoint(training_checkpoint(2.0, step=20), tmp_path / "epoch=1.ckpt")
    io.remove_checkpoint(tmp_path / "epoch=1.ckpt")  # ModelCheckpoint dropping it from its top k
    io.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0.ckpt"]


def test_loading_or_teardown_writes_what_is_held(tmp_path):
    io, best = AtomicCheckpointIO(write_behind_seconds=HOUR), tmp_path / "best.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    io.save_checkpoint(training_checkpoint(2.0, step=20), best)
    assert float(io.load_checkpoint(best)["state_dict"]["network.head.weight"][0, 0]) == 2.0
    io.save_checkpoint(training_checkpoint(3.0, step=30), best)
    io.teardown()  # the end of fit, or an exception on the way out of it
    assert weight(best) == 3.0


def test_a_held_save_that_meets_a_full_disk_stays_held_and_the_file_stays_whole(tmp_path, monkeypatch):
    io, best = AtomicCheckpointIO(write_behind_seconds=HOUR), tmp_path / "best.ckpt"
    io.save_checkpoint(training_checkpoint(1.0, step=10), best)
    io.save_checkpoint(training_checkpoint(2.0, step=20), best)

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.flush()
    monkeypatch.undo()
    assert weight(best) == 1.0  # the previous file, whole
    io.flush()  # space again: the held save was not dropped
    assert weight(best) == 2.0


def test_write_behind_zero_writes_every_save(tmp_path):
    io, best = AtomicCheckpointIO(), tmp_path / "best.ckpt"
    for step, value in ((10, 1.0), (20, 2.0)):
        io.save_checkpoint(training_checkpoint(value, step=step), best)
        assert weight(best) == value


def test_snapshots_reuse_their_buffers_and_keep_container_types():
    live = {
        "state_dict": OrderedDict(w=torch.ones(4, 3), b=torch.zeros(4)),
        "optimizer_states": [
            {"state": {0: {"exp_avg": torch.full((4, 3), 0.5)}}, "param_groups": [{"lr": 0.1}]}
        ],
        "loops": {"step": 7},
    }
    live["state_dict"]["w_again"] = live["state_dict"]["w"]  # one tensor under two names
    buffers = SnapshotBuffers()
    first = buffers.copy(live)
    address = first["state_dict"]["w"].data_ptr()
    live["state_dict"]["w"].add_(1.0)
    live["loops"]["step"] = 8
    assert torch.equal(first["state_dict"]["w"], torch.ones(4, 3)) and first["loops"]["step"] == 7
    assert first["state_dict"]["w_again"] is first["state_dict"]["w"]
    assert isinstance(first["state_dict"], OrderedDict)
    assert first["optimizer_states"][0]["param_groups"] == [{"lr": 0.1}]
    second = buffers.copy(live)
    assert second["state_dict"]["w"].data_ptr() == address  # the same memory, no fresh pages
    assert torch.equal(second["state_dict"]["w"], torch.full((4, 3), 2.0)) and second["loops"]["step"] == 8


class PeakAtEpoch(pl.Callback):
    """Test-only: logs `peak`, highest at epoch `best_epoch`, keeps that epoch's weights in
    `weights.pt`, and at each epoch's start records which epoch best.ckpt on disk holds."""

    def __init__(self, best_epoch: int) -> None:
        self.best_epoch = best_epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        best = Path(trainer.log_dir) / "checkpoints" / "best.ckpt"
        on_disk = torch.load(best, weights_only=True)["epoch"] if best.is_file() else None
        with open("best_on_disk.jsonl", "a") as records:
            records.write(json.dumps([trainer.current_epoch, on_disk]) + "\n")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        pl_module.log("peak", -abs(trainer.current_epoch - self.best_epoch) * 1.0)
        if trainer.current_epoch == self.best_epoch:
            torch.save(pl_module.state_dict(), "weights.pt")


def test_train_py_holds_new_bests_and_writes_the_best_epochs_weights_at_the_end(tmp_path):
    config = yaml.safe_load(CONFIG.read_text())
    checkpoint = next(
        c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")
    )
    checkpoint["init_args"].update(monitor="peak", mode="max")
    config["trainer"]["callbacks"].append(
        {"class_path": "tests.test_reliability_write_behind.PeakAtEpoch", "init_args": {"best_epoch": 2}}
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=16)
    command = [sys.executable, str(REPO / "train.py"), "--config", "config.yaml", "--data.root", str(pets)]
    command += ["--data.image_size", "16", "--data.batch_size", "8", "--trainer.max_epochs", "5"]
    command += [
        "--model.network_kwargs",
        '{"hidden_dims": [16, 8]}',
        "--trainer.enable_progress_bar",
        "false",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # Epoch 0's best was written at once (a run's first save); epochs 1 and 2's waited in memory.
    records = [json.loads(line) for line in (tmp_path / "best_on_disk.jsonl").read_text().splitlines()]
    assert records == [[0, None], [1, 0], [2, 0], [3, 0], [4, 0]]
    # At the end, best.ckpt holds epoch 2's weights, as they were then, three epochs of steps ago.
    best = torch.load(tmp_path / "runs/mlp_article/version_0/checkpoints/best.ckpt", weights_only=True)
    expected = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert best["epoch"] == 2
    assert best["state_dict"].keys() == expected.keys()
    assert all(torch.equal(best["state_dict"][name], expected[name]) for name in expected)
    last = torch.load(tmp_path / "runs/mlp_article/version_0/checkpoints/last.ckpt", weights_only=True)
    assert last["epoch"] == 4
    assert not torch.equal(last["state_dict"]["network.head.weight"], expected["network.head.weight"])
