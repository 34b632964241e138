"""The whole user path through the real entry points: train.py, then predict.py on its checkpoint."""

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from models.classifier import CatsDogsClassifier
from tests.image_factory import make_layout, write_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"
TINY = [  # small enough to train in seconds, same code path as the real config
    "--data.image_size", "16",
    "--data.batch_size", "16",
    "--model.network_kwargs", '{"hidden_dims": [32, 16, 8]}',
    "--model.lr", "3e-3",
    "--trainer.max_epochs", "4",
]  # fmt: skip


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train the article's config on a tiny real JPEG folder that holds a broken file too."""
    work = tmp_path_factory.mktemp("e2e")
    pets = make_layout(work / "pets", "class_folders", n_per_class=32)
    (pets / "Cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = run("train.py", "--config", str(CONFIG), "--data.root", str(pets), *TINY, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, pets, result


def test_train_writes_run_folder_checkpoints_and_summary(trained):
    work, _, result = trained
    run_dir = work / "runs" / "mlp_article" / "version_0"
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "test/acc" in result.stdout
    assert str(Path("runs") / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt") in result.stdout
    assert "tensorboard --logdir runs" in result.stdout


def test_unreadable_training_file_is_skipped_and_reported(trained):
    work, _, _ = trained
    reports = list((work / "data" / "cache").glob("*/skipped.csv"))
    assert len(reports) == 1
    assert "broken.jpg" in reports[0].read_text()


def test_checkpoint_holds_only_plain_data_and_rebuilds_itself(trained):
    work, _, _ = trained
    best = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)  # no pickled code allowed
    assert checkpoint["hyper_parameters"]["network"] == "mlp"
    assert checkpoint["hyper_parameters"]["image_size"] == 16
    model = CatsDogsClassifier.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    # What produced the file and how an image must be prepared are recorded beside the weights.
    record = checkpoint["catsdogs"]
    assert record["model"] == "mlp" and record["preprocessing"]["image_size"] == 16
    cache_dirs = list((work / "data" / "cache").iterdir())
    assert record["data_manifest_sha256"] and record["data_manifest_sha256"][:16] in cache_dirs[0].name
    # The training set's per-channel statistics travel inside the checkpoint.
    assert not torch.allclose(model.channel_mean, torch.full((3,), 0.5))
    torch.testing.assert_close(model.channel_mean, checkpoint["state_dict"]["channel_mean"])


def test_tensorboard_has_loss_accuracy_auroc_and_learning_rate(trained):
    work, _, _ = trained
    run_dir = work / "runs" / "mlp_article" / "version_0"
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss_step",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/auroc",
        "val/f1",
        "test/acc",
        "test/auroc",
        "lr-AdamW/weights",
    ):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert len(events.Scalars("val/acc")) == 4  # one point per epoch


def test_predict_csv_labels_cats_as_cats(trained):
    work, pets, _ = trained
    best = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt"
    single = next(iter(sorted((pets / "Dog").glob("*.jpg"))))
    result = run("predict.py", "--ckpt", str(best), str(single), str(pets / "Cat"), cwd=work)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["path", "p_cat", "label"]
    cat_rows = [r for r in rows if "/Cat/" in r["path"]]
    assert len(cat_rows) == 32  # every readable cat photo, none for broken.jpg
    assert rows[0]["path"] == str(single)
    for row in rows:
        assert row["label"] == ("cat" if float(row["p_cat"]) >= 0.5 else "dog")
    # The synthetic classes are easy: a trained model calls most cat photos cats (cat = positive).
    assert sum(r["label"] == "cat" for r in cat_rows) >= 0.8 * len(cat_rows)
    assert "broken.jpg" in result.stderr and "broken.jpg" not in result.stdout


def test_predict_threshold_json_and_output_file(trained, tmp_path):
    work, pets, _ = trained
    best = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt"
    out = tmp_path / "predictions.json"
    args = ["--ckpt", str(best), "--format", "json", "--threshold", "1.0", "--output", str(out)]
    result = run("predict.py", *args, str(pets), cwd=work)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 64
    assert {row["label"] for row in rows} == {"dog"}  # nothing reaches p_cat >= 1.0


def test_predict_fails_only_when_nothing_is_readable(trained, tmp_path):
    work, _, _ = trained
    best = work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt"
    (tmp_path / "notes.txt").write_text("not an image")
    write_image(tmp_path / "good" / "photo.png", color=(200, 30, 30), size=(20, 20), fmt="PNG")
    bad_only = run("predict.py", "--ckpt", str(best), str(tmp_path / "notes.txt"), cwd=work)
    assert bad_only.returncode == 1
    assert "notes.txt" in bad_only.stderr
    mixed = run(
        "predict.py", "--ckpt", str(best), str(tmp_path / "notes.txt"), str(tmp_path / "good"), cwd=work
    )
    assert mixed.returncode == 0
    assert len(mixed.stdout.strip().splitlines()) == 2  # header + the one readable image


def test_predict_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    fake = tmp_path / "model.ckpt"
    fake.write_bytes(b"definitely not a checkpoint")
    result = run("predict.py", "--ckpt", str(fake), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "model.ckpt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (["--model.lrr", "0.1"], "lrr"),
        (["--trainer.max_epochs", "three"], "max_epochs"),
        (["--data.root", "/no/such/folder"], "/no/such/folder"),
        (["--model.network", "perceptron"], "perceptron"),
    ],
)
def test_bad_config_fails_fast_before_touching_data(tmp_path, override, named):
    start = time.monotonic()
    result = run("train.py", "--config", str(CONFIG), *override, cwd=tmp_path)
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()
    assert time.monotonic() - start < 60  # seconds, not a training run


def test_print_config_shows_the_resolved_config(tmp_path):
    result = run("train.py", "--config", str(CONFIG), "--model.lr", "0.01", "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lr: 0.01" in result.stdout
    assert "hidden_dims:" in result.stdout and "image_size: 64" in result.stdout
