"""benchmarks/feature_cost.py's variants switch off what their names say, on train.py's real path."""

import sys
from pathlib import Path

import pytest

from tests.image_factory import make_layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import feature_cost  # noqa: E402  (after benchmarks/ is on the path)
import perf_train  # noqa: E402


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return make_layout(tmp_path_factory.mktemp("photos") / "pets", "class_folders", n_per_class=12)


def run_variant(name: str, pets: Path, tmp_path: Path) -> tuple[dict, Path]:
    options, dropped = feature_cost.VARIANTS[name]
    run_dir = tmp_path / "runs"
    run = perf_train.real_run(
        str(pets), str(tmp_path / "cache"), str(run_dir), 2, options, drop_callbacks=dropped
    )
    return run, run_dir


def test_as_configured_writes_checkpoints_and_tensorboard_events(pets, tmp_path):
    run, run_dir = run_variant("as configured", pets, tmp_path)
    assert Path(run["best_checkpoint"]).name == "best.ckpt"
    assert {path.name for path in run_dir.rglob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
    assert list(run_dir.rglob("events.out.tfevents.*"))
    assert perf_train.summarise_paired(run)["checkpoint_seconds"] > 0


def test_no_checkpoints_saves_nothing_and_times_no_save(pets, tmp_path):
    run, run_dir = run_variant("no checkpoints", pets, tmp_path)
    assert run["best_checkpoint"] is None
    assert list(run_dir.rglob("*.ckpt")) == []
    assert perf_train.summarise_paired(run)["checkpoint_seconds"] == 0


def test_without_a_logger_everything_still_goes_to_the_run_folder(pets, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run, run_dir = run_variant("no logger (nor NetworkInsight, LR monitor)", pets, tmp_path)
    assert {path.name for path in run_dir.rglob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
    assert list(run_dir.rglob("events.out.tfevents.*")) == []
    assert list(cwd.iterdir()) == []  # no checkpoints/ or config.yaml where the benchmark was started


def test_all_off_leaves_no_checkpoint_and_no_tensorboard_run(pets, tmp_path):
    run, run_dir = run_variant("all of the above off, and early stopping", pets, tmp_path)
    assert list(run_dir.rglob("*.ckpt")) == []
    assert list(run_dir.rglob("events.out.tfevents.*")) == []
    summary = perf_train.summarise_paired(run)
    assert summary["epochs"] == 1 and summary["full_ratio"] > 0  # the paired timing still ran


def test_table_has_a_row_per_variant_with_the_median_of_its_rounds():
    rounds = [
        {"train_ratio": r, "full_ratio": r / 2, "full_vs_val_ratio": r / 2, "checkpoint_fraction": 0.1}
        for r in (0.8, 0.9, 1.0)
    ]
    rows = feature_cost.table({"as configured": rounds}).splitlines()
    assert rows[2] == "| as configured | 90.0% | 45.0% | 45.0% | 10.0% |"
