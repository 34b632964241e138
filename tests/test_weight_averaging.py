"""EMA of the weights through Lightning's EMAWeightAveraging, added to any config on the command line.

The averaged weights are what gets validated, checkpointed as `state_dict` and so predicted
with; the raw weights ride along for resuming. Real train.py runs on a tiny JPEG folder.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets import decode_image
from inference import CatsDogsPredictor, load_model, read_checkpoint
from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config", str(REPO / "configs" / "mlp_article.yaml"),
    "--data.image_size", "16",
    "--data.batch_size", "8",
    "--model.network_kwargs", '{"hidden_dims": [16, 8], "dropout": 0.0}',
    "--model.lr", "3e-3",
    "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
    "--trainer.callbacks.decay", "0.9",
]  # fmt: skip


def train(work: Path, pets: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO / "train.py"), *TINY, "--data.root", str(pets), *extra]
    result = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("ema")
    pets = make_layout(work / "pets", "class_folders", n_per_class=16)
    train(work, pets, "--trainer.max_epochs", "2")
    return work, pets


def test_checkpoint_holds_the_average_and_the_raw_weights(run):
    work, _ = run
    checkpoint = read_checkpoint(work / "runs/mlp_article/version_0/checkpoints/last.ckpt")
    average, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert average.keys() == raw.keys()
    weight = "model.network.hidden.layer1.linear.weight"
    assert not torch.equal(average[weight], raw[weight])  # decay 0.9: the average lags behind
    steps = checkpoint["global_step"]
    assert steps >= 4 and checkpoint["averaging_state"]["n_averaged"].item() == steps  # one update a step
    torch.testing.assert_close(
        average["model.channel_mean"], raw["model.channel_mean"]
    )  # statistics, not averaged away


def test_predictions_use_the_averaged_weights(run):
    work, pets = run
    path = work / "runs/mlp_article/version_0/checkpoints/last.ckpt"
    checkpoint = read_checkpoint(path)
    averaged = load_model(path)  # loads `state_dict`: the average
    raw = load_model(path)
    raw.load_state_dict(
        {
            k.removeprefix("model."): v
            for k, v in checkpoint["current_model_state"].items()
            if k.startswith("model.")
        }
    )
    images = torch.stack([decode_image(photo, 16) for photo in sorted((pets / "Cat").glob("*.jpg"))[:4]])
    predicted = CatsDogsPredictor.from_pretrained(path).p_cat(images)
    with torch.inference_mode():
        torch.testing.assert_close(predicted, averaged(images), rtol=0, atol=1e-6)
        assert (predicted - raw(images)).abs().max() > 1e-5


def test_resume_continues_the_average(run):
    work, pets = run
    last = work / "runs/mlp_article/version_0/checkpoints/last.ckpt"
    steps_before = read_checkpoint(last)["global_step"]
    # The run's own config.yaml has the callback: the command names only what changes.
    resumed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "mlp_article.yaml"),
         "--ckpt_path", "last", "--trainer.max_epochs", "3"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == steps_before * 3 // 2  # a third epoch on top of two
    # the average restored from the checkpoint and updated on: not restarted from the raw weights
    assert checkpoint["averaging_state"]["n_averaged"].item() == checkpoint["global_step"]
