"""Every config in configs/ is complete: it parses, builds its model and trains one batch."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return make_layout(tmp_path_factory.mktemp("configs") / "pets", "class_folders", n_per_class=8)


def test_the_zoo_has_its_configs():
    assert {c.stem for c in CONFIGS} >= {"logreg", "mlp_article", "mlp_deep", "resmlp", "mixer", "shift_mlp"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_parses_builds_and_trains_one_batch(config, pets, tmp_path):
    args = [sys.executable, str(REPO / "train.py"), "--config", str(config), "--data.root", str(pets),
            "--data.image_size", "16", "--data.batch_size", "8", "--trainer.fast_dev_run", "1"]  # fmt: skip
    printed = subprocess.run([*args, "--print_config"], cwd=tmp_path, capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert f"name: {config.stem}" in printed.stdout  # each config logs under its own name
    trained = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "test/acc" in trained.stdout


def test_training_without_a_logger_works(pets, tmp_path):
    args = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "mlp_article.yaml"),
            "--data.root", str(pets), "--data.image_size", "16", "--data.batch_size", "8",
            "--trainer.max_epochs", "1", "--trainer.logger", "false"]  # fmt: skip
    trained = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "test/acc" in trained.stdout
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("events.out.*"))
