"""The real train.py with NetworkInsight on a tiny photo folder, read back with TensorBoard's own reader."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from image_factory import make_layout
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"
LAYERS = ("layer1", "layer2", "layer3", "head")  # hidden_dims [16, 8, 8] below, then the head
TINY = [
    "--data.image_size", "16",
    "--data.batch_size", "16",
    "--model.network_kwargs", '{"hidden_dims": [16, 8, 8]}',
    "--trainer.max_epochs", "2",
]  # fmt: skip
INSIGHT = {"class_path": "callbacks.NetworkInsight", "init_args": {"probe_size": 8}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tensorboard")
    pets = make_layout(work / "pets", "class_folders", n_per_class=24)
    config = yaml.safe_load(CONFIG.read_text())
    callbacks = config["trainer"].setdefault("callbacks", [])
    insight = [c for c in callbacks if c["class_path"].endswith("NetworkInsight")]
    if insight:  # the config already has it: only shrink its probe to the tiny data
        insight[0].setdefault("init_args", {})["probe_size"] = 8
    else:
        callbacks.append(INSIGHT)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", "config.yaml", "--data.root", str(pets), *TINY],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "runs" / "mlp_article" / "version_0"


@pytest.fixture(scope="module")
def logged(run_dir) -> EventAccumulator:
    kinds = ("scalars", "histograms", "images", "tensors", "compressedHistograms")
    accumulator = EventAccumulator(str(run_dir), size_guidance=dict.fromkeys(kinds, 0))
    accumulator.Reload()
    return accumulator


def test_every_layer_has_its_histograms_each_epoch(logged):
    tags = set(logged.Tags()["histograms"])
    for layer in LAYERS:
        for kind in ("W", "b", "Z", "A", "grad_W"):
            assert f"{layer}/{kind}" in tags, f"{layer}/{kind} missing from {sorted(tags)}"
    assert len(logged.Histograms("layer1/W")) == 3  # before training, then after each of 2 epochs
    assert len(logged.Histograms("layer1/grad_W")) == 2  # gradients exist only once training runs


def test_every_layer_has_its_scalars_and_a_custom_scalars_layout(logged):
    tags = set(logged.Tags()["scalars"])
    for layer in LAYERS:
        for statistic in ("weight_norm", "grad_norm", "update_ratio"):
            assert f"{layer}/{statistic}" in tags, f"{layer}/{statistic} missing from {sorted(tags)}"
    for layer in LAYERS[:-1]:  # ReLU layers; the head is a bare linear layer with no activation
        assert f"{layer}/dead_fraction" in tags
    assert "custom_scalars__config__" in logged.Tags()["tensors"]


def test_images_pr_curves_and_graph(logged):
    images = set(logged.Tags()["images"])
    assert {"layer1/templates", "probe/p_cat", "val/confusion_matrix", "test/confusion_matrix"} <= images
    templates = logged.Images("layer1/templates")[-1]
    assert templates.width > 16 and templates.height > 16  # a grid of 16x16 templates, upscaled
    assert {"val/pr_curve", "test/pr_curve"} <= set(logged.Tags()["tensors"])
    assert logged.SummaryMetadata("val/pr_curve").plugin_data.plugin_name == "pr_curves"
    assert logged.Tags()["graph"]


def test_hparams_hold_the_real_best_val_acc_and_test_acc(logged):
    content = logged.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert metric_tags == {"hp/best_val_acc", "hp/test_acc"}
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["network"].string_value == "mlp"
    val_acc = [event.value for event in logged.Scalars("val/acc")]
    assert logged.Scalars("hp/best_val_acc")[-1].value == pytest.approx(max(val_acc))
    assert logged.Scalars("hp/test_acc")[-1].value == pytest.approx(logged.Scalars("test/acc")[-1].value)
