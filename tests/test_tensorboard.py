"""NetworkInsight in-process: what it logs is right, on every family, and nothing without TensorBoard."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from callbacks import NetworkInsight
from callbacks.layer_stats import dead_fraction, histogram
from models import list_models
from models.classifier import CatsDogsClassifier

IMAGE_SIZE = 16
PROBE_SIZE = 8


def loader(count: int = 48, seed: int = 0) -> DataLoader:
    """Bright cats (label 1) and dark dogs (label 0), uint8 like the real datamodule's batches."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(count) % 2).float()  # (N,)
    noise = torch.randint(-40, 41, (count, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator)
    images = (80 + 100 * labels.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)  # (N, 3, S, S)
    return DataLoader(TensorDataset(images, labels), batch_size=16)


def fit(model: pl.LightningModule, logger, epochs: int = 1, **insight) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=logger,
        callbacks=[NetworkInsight(probe_size=PROBE_SIZE, **insight)],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader(), loader(seed=1))
    return trainer


def events(log_dir: str) -> EventAccumulator:
    kinds = ("scalars", "histograms", "images", "tensors", "compressedHistograms")
    accumulator = EventAccumulator(log_dir, size_guidance=dict.fromkeys(kinds, 0))
    accumulator.Reload()
    return accumulator


def test_histogram_counts_are_numpys_with_the_same_edges():
    values = torch.randn(10_000)
    summary = histogram(values, bins=64)
    edges = np.asarray(summary.bucket_limits)  # the left edge rides in the leading empty bucket
    expected, _ = np.histogram(values.numpy(), bins=edges)
    assert summary.bucket_counts[0] == 0
    assert summary.bucket_counts[1:] == expected.tolist()
    assert summary.num == 10_000 and summary.min == values.min().item() and summary.max == values.max().item()
    assert summary.sum_squares == pytest.approx(float((values.double() ** 2).sum()), rel=1e-5)


def test_logged_z_histogram_is_the_z_of_the_probe_batch(tmp_path):
    torch.manual_seed(0)
    model = CatsDogsClassifier(network_kwargs={"hidden_dims": [32, 16]}, image_size=IMAGE_SIZE, lr=3e-3)
    trainer = fit(model, TensorBoardLogger(tmp_path, name="run", default_hp_metric=False), epochs=2)
    logged = events(trainer.logger.log_dir).Histograms("layer1/Z")[-1]
    assert logged.step == trainer.global_step  # the snapshot after the last epoch: today's weights

    probe = next(iter(loader(seed=1)))[0][:PROBE_SIZE]  # the first validation images
    model.eval()
    with torch.no_grad():
        _, traces = model.network.forward_with_intermediates(model.normalize(probe))
    z = traces["layer1"].z.numpy()  # (8, 32)
    counts, _ = np.histogram(z, bins=np.asarray(logged.histogram_value.bucket_limit))
    assert logged.histogram_value.num == z.size == PROBE_SIZE * 32
    assert list(logged.histogram_value.bucket)[1:] == counts.tolist()
    assert logged.histogram_value.min == pytest.approx(
        z.min()
    ) and logged.histogram_value.max == pytest.approx(z.max())


def test_update_ratio_is_measured_on_snapshot_epochs_and_grad_norms_on_every_logging_step(tmp_path):
    torch.manual_seed(0)
    model = CatsDogsClassifier(network_kwargs={"hidden_dims": [8]}, image_size=IMAGE_SIZE, lr=3e-3)
    logger = TensorBoardLogger(tmp_path, name="run", default_hp_metric=False)
    trainer = fit(model, logger, epochs=4, every_n_epochs=2)  # snapshots after epochs 2 and 4
    logged = events(trainer.logger.log_dir)
    steps_per_epoch = trainer.global_step // 4  # 3 batches of 16
    ratio_steps = [event.step for event in logged.Scalars("layer1/update_ratio")]
    assert ratio_steps == [2 * steps_per_epoch, 4 * steps_per_epoch]  # each snapshot epoch's last step
    assert len(logged.Scalars("layer1/grad_norm")) == trainer.global_step  # log_every_n_steps=1
    assert all(0 < event.value < 1 for event in logged.Scalars("layer1/update_ratio"))


@pytest.mark.parametrize(
    ("activation", "tag"), [("relu", "layer1/dead_fraction"), ("tanh", "layer1/saturated_fraction")]
)
def test_dead_and_saturated_fractions_of_a_constructed_layer(tmp_path, activation, tag):
    model = CatsDogsClassifier(
        network_kwargs={"hidden_dims": [8], "activation": activation}, image_size=IMAGE_SIZE, lr=0.0
    )
    layer = model.network.linear_layers()["layer1"]
    with torch.no_grad():  # W = 0, so A = g(b) on every image: b decides which units are stuck
        layer.weight.zero_()
        # relu: b < 0 is dead, b > 0 alive. tanh: |b| = 3 gives |A| = 0.995 > 0.99, b = 0.5 does not.
        layer.bias.copy_(torch.tensor([-3.0, -3.0, 3.0, 0.5, 0.5, 0.5, 0.5, 0.5]))
    expected = 2 / 8 if activation == "relu" else 3 / 8
    assert dead_fraction(torch.relu(layer.bias.detach()).expand(4, 8)) == 2 / 8  # the function alone
    trainer = fit(model, TensorBoardLogger(tmp_path, name="run", default_hp_metric=False))  # lr 0: W, b stay
    values = [event.value for event in events(trainer.logger.log_dir).Scalars(tag)]
    assert len(values) == 2  # before training and after the epoch
    assert values == pytest.approx([expected, expected])


@pytest.mark.parametrize("name", list_models())
def test_every_family_gets_every_layer_histogram(tmp_path, name):
    model = CatsDogsClassifier(network=name, image_size=IMAGE_SIZE)
    trainer = fit(model, TensorBoardLogger(tmp_path, name="run", default_hp_metric=False))
    logged = events(trainer.logger.log_dir)
    histograms = set(logged.Tags()["histograms"])
    for layer in model.network.linear_layers():
        for kind in ("W", "b", "Z", "A", "grad_W"):
            assert f"{layer}/{kind}" in histograms
        assert {f"{layer}/grad_norm", f"{layer}/weight_norm", f"{layer}/update_ratio"} <= set(
            logged.Tags()["scalars"]
        )
    images = set(logged.Tags()["images"])
    first = next(iter(model.network.linear_layers().values()))
    assert (f"{next(iter(model.network.linear_layers()))}/templates" in images) == (
        first.in_features == 3 * IMAGE_SIZE * IMAGE_SIZE  # only when W's rows are whole images
    )


@pytest.mark.parametrize(
    "make_logger", [lambda path: False, lambda path: CSVLogger(path)], ids=["no_logger", "csv_logger"]
)
def test_without_tensorboard_it_does_nothing_and_does_not_fail(tmp_path, make_logger):
    model = CatsDogsClassifier(network_kwargs={"hidden_dims": [8]}, image_size=IMAGE_SIZE)
    trainer = fit(model, make_logger(tmp_path), epochs=2)
    trainer.test(model, loader(seed=2), verbose=False)
    assert not list(tmp_path.rglob("events.out.tfevents*"))
    for metrics in tmp_path.rglob("metrics.csv"):  # the CSV logger still gets Lightning's own metrics
        header = metrics.read_text().splitlines()[0]
        assert "val/acc" in header and "layer1/" not in header
