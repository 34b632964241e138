"""last.ckpt stays at most `every_seconds` behind, is current when training ends, and resumes from there."""

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
TINY = [  # 5 steps an epoch; lr 0: val/acc never improves on epoch 0, so no best.ckpt save writes last.ckpt
    "--data.image_size", "16",
    "--data.batch_size", "8",
    "--model.network_kwargs", '{"hidden_dims": [16, 8]}',
    "--model.lr", "0",
    "--trainer.enable_progress_bar", "false",
]  # fmt: skip


class RecordLastOnDisk(pl.Callback):
    """Test-only: at every epoch's start and at the end, appends the global step that
    checkpoints/last.ckpt on disk holds (None before it exists) to a JSON-lines file."""

    def __init__(self, record_file: str) -> None:
        self.record_file = Path(record_file)

    def _record(self, trainer: pl.Trainer, moment: str) -> None:
        last = Path(trainer.log_dir) / "checkpoints" / "last.ckpt"
        on_disk = (
            torch.load(last, map_location="cpu", weights_only=True)["global_step"] if last.is_file() else None
        )
        line = {
            "moment": moment,
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "last": on_disk,
        }
        with self.record_file.open("a") as records:
            records.write(json.dumps(line) + "\n")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer, "epoch start")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._record(trainer, "end")


def train(work: Path, pets: Path, every_seconds: float, *extra: str) -> list[dict]:
    record = {"class_path": "tests.test_reliability_last_checkpoint.RecordLastOnDisk",
              "init_args": {"record_file": "records.jsonl"}}  # fmt: skip
    keep_last = {
        "class_path": "training.KeepLastCheckpointCurrent",
        "init_args": {"every_seconds": every_seconds},
    }
    (work / "records.jsonl").unlink(missing_ok=True)
    command = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "mlp_article.yaml")]
    command += ["--data.root", str(pets), *TINY, *extra]
    command += ["--trainer.callbacks+", json.dumps(keep_last), "--trainer.callbacks+", json.dumps(record)]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in (work / "records.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("pets") / "pets", "class_folders", n_per_class=24)


def test_every_seconds_zero_writes_last_checkpoint_every_epoch(pets, tmp_path):
    records = train(tmp_path, pets, 0, "--trainer.max_epochs", "3")
    starts = [r for r in records if r["moment"] == "epoch start"]
    assert [r["epoch"] for r in starts] == [0, 1, 2]
    assert starts[0]["last"] is None
    assert all(r["last"] == r["step"] > 0 for r in starts[1:])  # the previous epoch's end, every time


def test_a_long_interval_skips_epoch_saves_but_the_end_is_saved_and_resumes(pets, tmp_path):
    records = train(tmp_path, pets, 3600, "--trainer.max_epochs", "4")
    starts, end = records[:-1], records[-1]
    steps_per_epoch = starts[1]["step"]
    assert [r["epoch"] for r in starts] == [0, 1, 2, 3] and steps_per_epoch > 0
    # Epoch 0's first val/acc was a new best: best.ckpt and last.ckpt then, and nothing since.
    assert [r["last"] for r in starts[1:]] == [steps_per_epoch] * 3
    assert end["last"] == end["step"] == 4 * steps_per_epoch  # the final epoch is always saved

    # The run continues from there: the next epoch, not a repeat of the last one.
    records = train(tmp_path, pets, 3600, "--trainer.max_epochs", "5", "--ckpt_path", "last")
    assert [(r["moment"], r["epoch"], r["step"]) for r in records] == [
        ("epoch start", 4, 4 * steps_per_epoch),
        ("end", 5, 5 * steps_per_epoch),  # after the loop, current_epoch counts finished epochs
    ]
    assert records[-1]["last"] == 5 * steps_per_epoch


def test_a_run_stopped_between_timed_saves_writes_last_checkpoint_at_its_end(pets, tmp_path):
    # No epoch limit (-1): max_steps ends the run in epoch 2, long before the interval.
    records = train(tmp_path, pets, 3600, "--trainer.max_epochs", "-1", "--trainer.max_steps", "12")
    starts, end = records[:-1], records[-1]
    steps_per_epoch = starts[1]["step"]
    assert [r["epoch"] for r in starts] == [0, 1, 2] and 2 * steps_per_epoch < 12
    assert [r["last"] for r in starts[1:]] == [steps_per_epoch] * 2  # epoch 0's best, nothing since
    assert end["moment"] == "end" and end["step"] == 12
    assert end["last"] == 12

    # Resumed from that save, it goes on from step 12. Lightning counts an epoch cut short by
    # max_steps as finished (as its own ModelCheckpoint's end-of-training save does), so the
    # rest of epoch 2's batches are skipped and epoch 3 starts.
    records = train(tmp_path, pets, 3600, "--trainer.max_epochs", "-1", "--trainer.max_steps", "17",
                    "--ckpt_path", "last")  # fmt: skip
    assert records[0]["moment"] == "epoch start" and (records[0]["epoch"], records[0]["step"]) == (3, 12)
    assert records[-1]["moment"] == "end" and records[-1]["step"] == records[-1]["last"] == 17
