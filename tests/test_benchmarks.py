"""The time-to-accuracy benchmark: its per-epoch test curve agrees with train.py's own test of
the epoch validation chose, and its table and plot read the curves right."""

import json
import sys

import pytest
import torch

from tests.conftest import ARTICLE_CONFIG, REPO, TINY
from tests.image_factory import make_layout


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the scripts import each other by name
    import time_to_accuracy
    import zoo

    return zoo, time_to_accuracy


def test_the_curve_at_the_chosen_epoch_is_the_test_figure_of_the_run(benchmarks, tmp_path, monkeypatch):
    zoo, time_to_accuracy = benchmarks
    photos = make_layout(tmp_path / "pets", "split_folders", n_per_class=12)
    monkeypatch.chdir(tmp_path)  # runs/ and data/cache/ land here
    monkeypatch.setattr(sys, "argv", ["zoo.py"])
    out = tmp_path / "result.json"
    zoo.run_one(ARTICLE_CONFIG.stem, 0, str(photos), out, TINY, test=True, curve=True)
    result = json.loads(out.read_text())

    curve = result["curve"]
    assert [point["epoch"] for point in curve] == [1, 2, 3]  # every epoch of a short run
    assert all(b["seconds"] > a["seconds"] > 0 for a, b in zip(curve, curve[1:], strict=False))
    # best.ckpt is the first epoch with the best val/acc; train.py's test of it is the table's figure.
    chosen = next(point for point in curve if point["val_acc"] == result["best_val_acc"])
    assert chosen["test_acc"] == pytest.approx(result["test_acc"], abs=1e-6)
    assert result["command"].startswith("python train.py --config configs/mlp_article.yaml --data.root ")
    assert curve[-1]["seconds"] <= result["fit_seconds"]  # both leave the curve's own test passes out


def test_seconds_to_each_target_and_the_table(benchmarks, tmp_path):
    _, time_to_accuracy = benchmarks
    curve = [
        {"epoch": 1, "seconds": 10.0, "val_acc": 0.6, "test_acc": 0.60},
        {"epoch": 2, "seconds": 20.0, "val_acc": 0.7, "test_acc": 0.72},
        {"epoch": 3, "seconds": 30.0, "val_acc": 0.7, "test_acc": 0.76},
    ]
    assert time_to_accuracy.seconds_to(curve, (0.65, 0.70, 0.75, 0.80)) == {
        0.65: 20.0,
        0.70: 20.0,
        0.75: 30.0,
        0.80: None,
    }
    slower = [{**point, "seconds": point["seconds"] * 3} for point in curve[:2]]  # never reaches 75%
    results = [{"config": "a", "seed": 0, "curve": curve}, {"config": "a", "seed": 1, "curve": slower}]
    table = time_to_accuracy.render_targets(results, ["a"])
    assert "| a | 40 s | 40 s | 30 s (1 of 2 seeds) | not reached | 74.0% |" in table  # median of 20 and 60

    picture = tmp_path / "plot.png"
    time_to_accuracy.plot(results, ["a"], picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_that_shared_the_machine_go_on_the_alone_clock(benchmarks):
    _, time_to_accuracy = benchmarks
    curve = [{"epoch": 2, "seconds": 50.0, "test_acc": 0.6}, {"epoch": 4, "seconds": 130.0, "test_acc": 0.7}]
    shared = {"config": "a", "seed": 0, "epochs": 4, "fit_seconds": 130.0, "images_per_second": 10.0}
    results = [{**shared, "curve": curve}, {**shared, "config": "untimed", "curve": curve}]
    (timed,) = time_to_accuracy.on_alone_clock(results, {"a": 5.0})  # configs not timed alone drop out
    assert [point["seconds"] for point in timed["curve"]] == [10.0, 20.0]
    assert timed["fit_seconds"] == 20.0 and timed["images_per_second"] == 65.0  # 13x faster alone
    assert [point["test_acc"] for point in timed["curve"]] == [0.6, 0.7]  # accuracy is as measured


def test_the_reference_cnn_is_the_published_network_and_its_rate_is_measured(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reference_cnn_cost

    cnn = reference_cnn_cost.reference_cnn()
    # The book's model summary of this convnet: "Total params: 3,453,121".
    assert sum(p.numel() for p in cnn.parameters()) == 3_453_121
    assert cnn(torch.zeros(2, 3, 150, 150)).shape == (2, 1)
    network, size, batch = reference_cnn_cost.config_network("best")  # what configs/best.yaml trains
    assert sum(p.numel() for p in network.parameters()) == 1_554_881 and (size, batch) == (64, 128)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    before = network[1].weight.detach().clone()
    rate = reference_cnn_cost.photos_per_second(network, optimizer, batch=4, size=8, seconds=0.05)
    assert rate > 0 and not torch.equal(network[1].weight, before)  # it took real training steps


def test_the_step_rates_run_both_precisions_on_each_configs_real_network(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import step_rate

    network, size, batch = step_rate.config_network("logreg")
    assert (size, batch) == (32, 128) and sum(p.numel() for p in network.parameters()) == 3 * 32 * 32 + 1
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.1)
    before = next(network.parameters()).detach().clone()
    for bf16 in (False, True):
        assert (
            step_rate.photos_per_second(network, optimizer, batch=4, size=size, seconds=0.05, bf16=bf16) > 0
        )
    assert not torch.equal(next(network.parameters()), before)  # real steps in both precisions


def test_data_size_subsets_are_nested_and_balanced_and_train_through_train_py(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import data_size

    root = make_layout(tmp_path / "photos", "split_folders", n_per_class=12)
    small, large = (data_size.nested_subset(root, n, tmp_path / f"subset-{n}") for n in (8, 16))
    for subset, n in ((small, 8), (large, 16)):
        assert [len(list((subset / "train" / c).iterdir())) for c in ("cats", "dogs")] == [n // 2, n // 2]
        assert (subset / "validation").resolve() == (root / "validation").resolve()
    for name in ("cats", "dogs"):  # every photo of the smaller subset is in the larger one
        assert {p.name for p in (small / "train" / name).iterdir()} < {
            p.name for p in (large / "train" / name).iterdir()
        }
    tiny = ("--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--data.image_size", "16")
    results = data_size.train_sizes(["logreg"], [8, 24], root, whole=24, results_file=None, extra_args=tiny)
    assert [(r["config"], r["train_photos"]) for r in results] == [("logreg", 8), ("logreg", 24)]
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["epochs"] == 1 for r in results)
    assert "<nested subset of 8 photos>" in results[0]["command"]
    table = data_size.render(results)
    assert "| logreg |" in table and "8 photos" in table
    data_size.plot(results, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
