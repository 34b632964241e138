"""train.py as a user types it: the run it leaves behind, and one line for every bad option."""

import pytest

from tests.conftest import ARTICLE_CONFIG, run_script


def test_a_run_leaves_its_folder_checkpoints_and_a_summary_that_says_where(trained_run):
    assert (trained_run.folder / "config.yaml").is_file()
    assert trained_run.best.is_file() and trained_run.last.is_file()
    out = trained_run.stdout
    assert "test/acc" in out and "test/auroc" in out
    assert "run folder:      runs/mlp_article/version_0" in out
    assert "best checkpoint: runs/mlp_article/version_0/checkpoints/best.ckpt (val/acc" in out
    assert "python predict.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt" in out
    assert "tensorboard --logdir runs" in out


def test_an_unreadable_photo_is_skipped_and_listed_by_name(trained_run):
    (report,) = (trained_run.work / "data" / "cache").glob("*/skipped.csv")
    assert "broken.jpg" in report.read_text()
    assert "skipped: 1 unreadable file" in trained_run.stdout


@pytest.mark.parametrize(
    "notice",
    ["litlogger", "weights_only", "LeafSpec", "not resumable", "jit.trace"],
)
def test_a_run_prints_none_of_the_notices_this_project_makes_untrue(trained_run, notice):
    assert notice not in trained_run.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--model.lrr", "0.1"], "unknown key model.lrr; did you mean model.lr?"),
        (["--trainer.max_epoch", "3"], "unknown key trainer.max_epoch; did you mean trainer.max_epochs?"),
        (["--trainer.max_epohcs", "3"], "did you mean trainer.max_epochs?"),
        (["--trainer.max_epochs", "three"], "max_epochs"),
        (
            ["--model.lr", "-1"],
            '"model.lr": Not of type NonNegativeFloat: -1 does not conform to restriction v>=0',
        ),
        (["--model.network", "perceptron"], "perceptron"),
        (["--data.root", "/no/such/folder"], "/no/such/folder"),
        (
            ["--insight.probe_size", "0"],
            '"insight.probe_size": Not of type PositiveInt',
        ),  # our callback's type
        (["--checkpoint.mode", "maxx"], "got maxx"),  # refused by Lightning's ModelCheckpoint
    ],
)
def test_a_bad_option_fails_in_one_line_before_any_photo_is_read(tmp_path, override, expected):
    result = run_script("train.py", "--config", ARTICLE_CONFIG, *override, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    *_, last = result.stderr.splitlines()  # Lightning may say "Seed set to 42" before it
    assert last.startswith("error: ") and expected in last, result.stderr
    assert result.stderr.count("error") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_print_config_shows_the_whole_config_defaults_included(tmp_path):
    result = run_script(
        "train.py", "--config", ARTICLE_CONFIG, "--model.lr", "0.01", "--print_config", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "lr: 0.01" in out and "hidden_dims:" in out and "name: mlp_article" in out  # the zoo config
    assert "image_size: 64" in out and "monitor: val/acc" in out  # configs/defaults.yaml
    assert "last_checkpoint:" in out and "insight:" in out and "EarlyStopping" in out
    assert "\noptimizer:" not in out  # the classifier's own AdamW and schedule, not a CLI option
