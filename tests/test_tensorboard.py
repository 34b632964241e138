"""What train.py's run shows in TensorBoard, read back with TensorBoard's own reader: every
layer's W, b, Z, A and dL/dW, unit health, the pictures, the curves and the HParams row."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

LAYERS = ("layer1", "layer2", "layer3", "head")  # TINY's hidden_dims [32, 16, 8], then the head
EPOCHS = 3  # TINY's max_epochs: a snapshot after every one (max_epochs // 5 rounds up to 1)


@pytest.fixture(scope="module")
def logged(trained_run) -> EventAccumulator:
    kinds = ("scalars", "histograms", "images", "tensors", "compressedHistograms")
    accumulator = EventAccumulator(str(trained_run.folder), size_guidance=dict.fromkeys(kinds, 0))
    accumulator.Reload()
    return accumulator


def test_every_layer_has_its_histograms_at_every_snapshot(logged):
    tags = set(logged.Tags()["histograms"])
    for layer in LAYERS:
        for kind in ("W", "b", "Z", "A", "grad_W"):
            assert f"{layer}/{kind}" in tags, f"{layer}/{kind} missing from {sorted(tags)}"
    assert len(logged.Histograms("layer1/W")) == EPOCHS + 1  # the untrained network, then each epoch
    assert len(logged.Histograms("layer1/grad_W")) == EPOCHS  # gradients exist once training runs
    first, last = logged.Histograms("layer1/W")[0], logged.Histograms("layer1/W")[-1]
    assert first.step == 0 and last.step > 0
    assert first.histogram_value.sum_squares != last.histogram_value.sum_squares  # W moved


def test_every_layer_has_its_scalars(logged):
    tags = set(logged.Tags()["scalars"])
    for layer in LAYERS:
        assert f"{layer}/grad_norm" in tags
    for layer in LAYERS[:-1]:  # ReLU layers; the head is a bare Z = W x + b
        assert f"{layer}/dead_fraction" in tags
        assert all(0 <= event.value <= 1 for event in logged.Scalars(f"{layer}/dead_fraction"))
    assert {"train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/auroc", "test/acc"} <= tags
    assert any(tag.startswith("lr-") for tag in tags)  # Lightning's LearningRateMonitor


def test_pictures_curves_and_graph(logged):
    images = set(logged.Tags()["images"])
    assert {"layer1/templates", "probe/p_cat", "val/confusion_matrix", "test/confusion_matrix"} <= images
    templates = logged.Images("layer1/templates")[-1]
    assert templates.width > 16 and templates.height > 16  # a grid of 16x16 templates, upscaled
    assert len(logged.Images("probe/p_cat")) == EPOCHS + 1
    assert {"val/pr_curve", "test/pr_curve"} <= set(logged.Tags()["tensors"])
    assert logged.SummaryMetadata("val/pr_curve").plugin_data.plugin_name == "pr_curves"
    assert logged.Tags()["graph"]


def test_hparams_hold_the_real_best_val_acc_and_test_acc(logged):
    content = logged.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} == {"hp/best_val_acc", "hp/test_acc"}
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert session.session_start_info.hparams["network"].string_value == "mlp"
    val_acc = [event.value for event in logged.Scalars("val/acc")]
    assert logged.Scalars("hp/best_val_acc")[-1].value == pytest.approx(max(val_acc))
    assert logged.Scalars("hp/test_acc")[-1].value == pytest.approx(logged.Scalars("test/acc")[-1].value)
