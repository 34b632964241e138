"""Bad input never costs data: clear one-line errors before any work, and divergence stops cleanly."""

import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from models import ModelConfigError
from models.checkpoint import read_checkpoint
from models.classifier import CatsDogsClassifier
from tests.image_factory import make_layout, write_image

REPO = Path(__file__).resolve().parents[1]
TINY = ["--data.image_size", "16", "--data.batch_size", "16",
        "--model.network_kwargs", '{"hidden_dims": [16, 8]}']  # fmt: skip


class PoisonWeightsAtEpoch(pl.Callback):
    """Test-only: from `epoch` on, puts a NaN into the first weight, so the loss becomes NaN."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.epoch:
            with torch.no_grad():
                next(pl_module.network.parameters()).view(-1)[0] = float("nan")


def train(cwd: Path, *args: str, config: str = "mlp_article") -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / f"{config}.yaml")]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=16)
    poison = '{"class_path": "tests.test_reliability_inputs.PoisonWeightsAtEpoch", "init_args": {"epoch": 1}}'
    result = train(tmp_path, "--data.root", str(pets), *TINY, "--trainer.max_epochs", "3",
                   "--trainer.callbacks+", poison)  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    message = last_line(result.stderr)
    assert message.startswith("error: training loss is nan at step ")
    last = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    assert str(last) in message or "last.ckpt" in message
    assert "Traceback" not in result.stderr
    checkpoint = read_checkpoint(last)  # still whole and loadable
    assert checkpoint["epoch"] == 0  # the good state from before the poisoned epoch
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values())


def test_image_size_the_model_cannot_take_fails_fast(tmp_path):
    start = time.monotonic()
    result = train(tmp_path, "--data.root", str(tmp_path), "--data.image_size", "30", config="mixer")
    assert result.returncode == 2
    assert "image_size 30 is not a multiple of patch_size 8" in last_line(result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
    assert time.monotonic() - start < 60


def test_a_folder_without_usable_images_is_a_clear_error(tmp_path):
    pets = tmp_path / "pets"
    for name in ("Cat/a.jpg", "Cat/b.jpg", "Dog/c.jpg"):
        (pets / name).parent.mkdir(parents=True, exist_ok=True)
        (pets / name).write_bytes(b"")  # empty files: nothing decodes
    result = train(tmp_path, "--data.root", str(pets), *TINY)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("error: no readable images under data.root")


def test_a_folder_with_only_one_usable_class_is_a_clear_error(tmp_path):
    pets = tmp_path / "pets"
    for i in range(4):
        write_image(pets / "Cat" / f"{i}.jpg", color=(200, 40, 40), size=(20, 20))
    (pets / "Dog").mkdir()
    (pets / "Dog" / "broken.jpg").write_bytes(b"not an image")
    result = train(tmp_path, "--data.root", str(pets), *TINY)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "class" in last_line(result.stderr).lower()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, "model.lr -1.0 is out of range; pass a value 0 or more"),
        ({"lr": float("nan")}, "model.lr nan is out of range"),
        ({"weight_decay": -0.1}, "model.weight_decay -0.1"),
        ({"warmup_epochs": -1.0}, "model.warmup_epochs -1.0"),
        ({"min_lr_ratio": 2.0}, r"model.min_lr_ratio 2.0 is out of range; pass a value in \[0, 1\]"),
        ({"label_smoothing": 1.0}, r"model.label_smoothing 1.0 is out of range; pass a value in \[0, 1\)"),
        ({"mixup_alpha": -1.0}, "model.mixup_alpha -1.0"),
        ({"threshold": 1.5}, "model.threshold 1.5"),
        ({"input_norm": "bogus"}, "model.input_norm 'bogus' is unknown"),
        (
            {"network_kwargs": {"dropout": 1.5}},
            r"model 'mlp': dropout 1.5 is out of range; pass a value in \[0, 1\)",
        ),
        ({"network_kwargs": {"hidden_dims": [0]}}, "model 'mlp': a layer of 768 -> 0 units"),
        ({"network_kwargs": {"activation": "relu6"}}, "model 'mlp': unknown activation 'relu6'"),
        ({"network": "mixer", "network_kwargs": {"patch_size": 0}}, "patch_size 0 must be at least 1"),
        ({"network": "shift_mlp", "network_kwargs": {"patch_size": 0}}, "patch_size 0 must be at least 1"),
    ],
)
def test_a_number_the_model_cannot_use_is_a_one_line_model_config_error(kwargs, message):
    with pytest.raises(ModelConfigError, match=message):
        CatsDogsClassifier(**{"image_size": 16, **kwargs})


def test_lr_zero_is_allowed_it_keeps_the_initial_weights():
    assert CatsDogsClassifier(image_size=16, lr=0.0).hparams.lr == 0.0  # the DDP tests rely on it


def test_train_py_reports_a_bad_model_number_in_one_line_before_reading_any_photo(tmp_path):
    start = time.monotonic()
    result = train(tmp_path, "--data.root", str(tmp_path), "--model.lr", "-1", *TINY)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        last_line(result.stderr)
        == "error: model.lr -1.0 is out of range; pass a value 0 or more (0 keeps the initial weights)"
    )
    assert not (tmp_path / "data").exists()
    assert time.monotonic() - start < 60
