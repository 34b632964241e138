"""benchmarks/select_variants.py compares each variant with the config on the same splits."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from image_factory import make_layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from select_variants import BASELINE, mean_and_error, render  # noqa: E402


def test_difference_is_paired_split_by_split():
    # The splits differ a lot from each other, but the variant is 2 points better on every one:
    # unpaired, the two means overlap; paired, the difference is exactly +2.0% with no spread.
    accuracies = {BASELINE: [0.55, 0.70, 0.62], "wider": [0.57, 0.72, 0.64]}
    table = render("mlp_article", {BASELINE: [], "wider": ["--x", "1"]}, accuracies)
    assert "| wider | `--x 1` | 64.3% ± 4.3% | +2.0% ± 0.0% |" in table
    assert "| as configured | `(none)` | 62.3% ± 4.3% |  |" in table


def test_standard_error_is_the_sample_std_over_root_n():
    mean, error = mean_and_error([0.6, 0.7])
    assert mean == pytest.approx(0.65)
    assert error == pytest.approx(0.0707107 / 2**0.5, rel=1e-5)


def test_holdout_scores_a_part_of_train_and_never_needs_the_test_folder(tmp_path):
    root = make_layout(tmp_path / "photos", "split_folders", n_per_class=10)
    shutil.rmtree(root / "validation")  # the test folder: --holdout must not need it
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "select_variants.py"
    command = [sys.executable, str(script), "--config", "logreg", "--splits", "2", "--holdout"]
    command += ["--root", str(root)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out accuracy at the best validation epoch over 2 random splits" in result.stdout
    assert "| as configured | `(none)` |" in result.stdout
    assert "split 1: test_acc" in result.stderr  # scored on the carved-off part, not on validation
