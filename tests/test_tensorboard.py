"""What train.py's run shows in TensorBoard, read back with TensorBoard's own reader: every
layer's W, b, Z, A and dL/dW, unit health, the pictures, the curves, the HParams row and the
Projector's files; and the probe photos, half cats, half dogs."""

import math

import lightning.pytorch as pl
import pytest
import torch
from google.protobuf import text_format
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from datasets.datamodule import CatsDogsDataModule
from models.classifier import CatsDogsClassifier
from models.labels import CAT, CLASS_NAMES
from training.network_insight import NetworkInsight

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


def test_the_projector_shows_x_and_the_last_hidden_a_of_the_best_epoch(trained_run):
    config = text_format.Parse(
        (trained_run.folder / "projector_config.pbtxt").read_text(encoding="utf-8"), ProjectorConfig()
    )
    best_step = torch.load(trained_run.best, map_location="cpu", weights_only=True)["global_step"]
    embeddings = {e.tensor_name: e for e in config.embeddings}
    assert set(embeddings) == {f"x:{best_step:05d}", f"layer3/A:{best_step:05d}"}  # TINY's last hidden
    data = CatsDogsDataModule(
        str(trained_run.pets), image_size=16, cache_dir=str(trained_run.work / "data/cache")
    )
    data.setup("fit")
    photos = len(data.val_labels)
    for name, width in ((f"x:{best_step:05d}", 3 * 16 * 16), (f"layer3/A:{best_step:05d}", 8)):
        info = embeddings[name]
        rows = (trained_run.folder / info.tensor_path).read_text().splitlines()
        assert len(rows) == photos and {len(row.split("\t")) for row in rows} == {width}
        header, *metadata = (trained_run.folder / info.metadata_path).read_text().splitlines()
        assert header.split("\t") == ["label", "p_cat", "call"] and len(metadata) == photos
        columns = [row.split("\t") for row in metadata]
        # the validation photos, cat, dog, cat, dog, ...: every one, each class as often as in the split
        labels = [CLASS_NAMES.index(label) for label, _, _ in columns]
        assert sorted(labels) == sorted(data.val_labels.tolist())
        assert labels[:2] == [CAT, 1 - CAT]
        for label, p_cat, call in columns:
            assert 0 <= float(p_cat) <= 1
            assert call == ("right" if (float(p_cat) >= 0.5) == (label == "cat") else "wrong")
        side = math.ceil(photos**0.5) * 16  # 16x16 photos, a square of them
        assert Image.open(trained_run.folder / info.sprite.image_path).size == (side, side)
        assert list(info.sprite.single_image_dim) == [16, 16]


def test_the_probe_is_half_cats_half_dogs_the_same_every_time(pets, tmp_path):
    data = CatsDogsDataModule(str(pets), image_size=16, val_fraction=0.4, cache_dir=str(tmp_path))
    data.prepare_data()
    data.setup("fit")
    loader_images, loader_labels = map(torch.cat, zip(*data.val_dataloader(), strict=True))
    assert torch.equal(data.val_labels, loader_labels)  # in the loader's order
    assert (loader_labels[:8] == CAT).all()  # cats sort first: the first 8 photos would all be cats
    insight = NetworkInsight(probe_size=8)
    images, labels = insight.validation_photos(data, 8)
    assert labels.tolist() == [CAT, 1 - CAT] * 4
    cats, dogs = (loader_labels == CAT).nonzero().flatten(), (loader_labels != CAT).nonzero().flatten()
    assert torch.equal(images[0::2], loader_images[cats[:4]])  # the first cats and dogs, in order
    assert torch.equal(images[1::2], loader_images[dogs[:4]])
    again = insight.validation_photos(data, 8)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)
    _, every = insight.validation_photos(data, 1000)  # more than there are: each photo once
    assert sorted(every.tolist()) == sorted(loader_labels.tolist())


@pytest.mark.parametrize(
    "network, network_kwargs, projector_photos, a_width",
    [
        ("logreg", {}, 4, None),  # no hidden layer: x alone
        ("mixer", {"patch_size": 4, "width": 8, "depth": 1, "token_hidden": 4, "channel_hidden": 6}, 6, 8),
        ("mlp", {"hidden_dims": [8]}, 0, None),  # switched off
    ],
)
def test_the_projector_of_every_kind_of_network_and_switched_off(
    pets, tmp_path, network, network_kwargs, projector_photos, a_width
):
    data = CatsDogsDataModule(
        str(pets), image_size=16, batch_size=16, val_fraction=0.25, cache_dir=str(tmp_path)
    )
    model = CatsDogsClassifier(network, network_kwargs, image_size=16)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=TensorBoardLogger(tmp_path, name="run"),
        callbacks=[
            NetworkInsight(projector_photos=projector_photos),
            ModelCheckpoint(monitor="val/acc", mode="max"),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    folder = tmp_path / "run" / "version_0"
    if not projector_photos:
        assert not (folder / "projector_config.pbtxt").exists() and not list(folder.glob("0*"))
        return
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    tensors = {e.tensor_name.split(":")[0]: folder / e.tensor_path for e in config.embeddings}
    last_hidden = list(model.model.network.layers())[-2] if a_width else None
    assert set(tensors) == {"x"} | ({f"{last_hidden}/A"} if a_width else set())
    for tag, width in (("x", 3 * 16 * 16), (f"{last_hidden}/A", a_width)):
        if tag in tensors:
            rows = [row.split("\t") for row in tensors[tag].read_text().splitlines()]
            assert len(rows) == projector_photos and {len(row) for row in rows} == {width}
    # x is the pixels the first layer sees: the model's own normalisation of the photos
    images, _ = NetworkInsight().validation_photos(data, projector_photos)
    x = model.model.normalize(images).flatten(1)
    rows = torch.tensor(
        [[float(v) for v in row.split("\t")] for row in tensors["x"].read_text().splitlines()]
    )
    assert torch.allclose(rows, x, atol=5e-4)
