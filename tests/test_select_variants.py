"""benchmarks/select_variants.py compares each variant with the config on the same splits."""

import sys
from pathlib import Path

import pytest

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
