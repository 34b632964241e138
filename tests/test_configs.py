"""Every zoo config in configs/ is complete on top of configs/defaults.yaml: it parses, names
its runs, builds its model and trains and tests one batch (in this process: no start-up cost)."""

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_script
from tests.image_factory import make_layout
from training.cli import CatsDogsCLI

CONFIGS = sorted(c for c in (REPO / "configs").glob("*.yaml") if c.stem != "defaults")


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("configs") / "pets", "class_folders", n_per_class=8)


def test_the_zoo_has_its_configs():
    assert {c.stem for c in CONFIGS} >= {"logreg", "mlp_article", "mlp_deep", "resmlp", "mixer", "shift_mlp"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_builds_names_its_runs_and_trains_one_batch(config, pets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its data/cache/ lands here
    monkeypatch.setattr(sys, "argv", ["train.py"])  # pytest's own options are not train.py's
    cli = CatsDogsCLI(
        ["--config", str(config), "--data.root", str(pets), "--data.image_size", "16",
         "--data.batch_size", "8", "--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false"]
    )  # fmt: skip
    assert cli.config["trainer.logger.init_args.name"] == config.stem  # runs/<config name>/version_<n>
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule)
    assert 0 <= results["test/acc"] <= 1


def test_training_without_a_logger_writes_no_tensorboard_files(pets, tmp_path):
    result = run_script(
        "train.py", "--config", REPO / "configs" / "mlp_article.yaml", "--data.root", pets,
        "--data.image_size", "16", "--data.batch_size", "8", "--trainer.max_epochs", "1",
        "--trainer.logger", "false", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test/acc" in result.stdout
    assert not list(tmp_path.rglob("events.out.*"))
