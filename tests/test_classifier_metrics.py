"""The epoch's training metrics cover every step's predictions, computed once at the end."""

import csv

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from models.classifier import CatsDogsClassifier


def test_train_metrics_of_an_epoch_equal_the_metrics_of_all_its_predictions():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = (torch.rand(40) < 0.5).float()
    # lr 0: the weights never move, so every step's predictions are the final model's.
    network_kwargs = {"hidden_dims": [8], "dropout": 0.0}
    model = CatsDogsClassifier(network="mlp", network_kwargs=network_kwargs, image_size=8, lr=0.0)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)  # 3 steps, the last one short
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    with torch.no_grad():
        p_cat = model.p_cat(images)
    targets = labels.long()
    logged = trainer.callback_metrics
    torch.testing.assert_close(logged["train/acc"], BinaryAccuracy()(p_cat, targets))
    torch.testing.assert_close(logged["train/auroc"], BinaryAUROC()(p_cat, targets))
    torch.testing.assert_close(logged["train/f1"], BinaryF1Score()(p_cat, targets))
    # The mean over all 40 images, not over the 3 batch means (the last batch has 8 images).
    with torch.no_grad():
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
    torch.testing.assert_close(logged["train/loss_epoch"], loss)
    assert model._train_outputs == []  # handed over and released at the epoch's end


class LogsEveryStep(CatsDogsClassifier):
    """Also logs a value on every step, so Lightning's own choice of steps to write is visible."""

    def training_step(self, batch, batch_idx):
        self.log("every_step", float(batch_idx))
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("every", [1, 2, 5])
def test_train_loss_step_is_written_on_exactly_the_steps_lightning_writes(tmp_path, every):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = (torch.rand(40) < 0.5).float()
    model = LogsEveryStep(network_kwargs={"hidden_dims": [8], "dropout": 0.0}, image_size=8, lr=0.0)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)  # 3 steps an epoch
    trainer = pl.Trainer(
        max_epochs=3,
        logger=CSVLogger(tmp_path, name="run"),
        log_every_n_steps=every,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    with open(f"{trainer.logger.log_dir}/metrics.csv") as file:
        rows = list(csv.DictReader(file))
    lightning_steps = [int(row["step"]) for row in rows if row["every_step"]]
    loss_rows = [row for row in rows if row["train/loss_step"]]
    assert lightning_steps and [int(row["step"]) for row in loss_rows] == lightning_steps
    with torch.no_grad():  # lr 0: the loss of a step is the loss of its batch under the fixed weights
        batch_losses = [F.binary_cross_entropy_with_logits(model(x), y).item() for x, y in loader]
    for row in loss_rows:  # this step's loss, not one left over from an earlier step
        assert float(row["train/loss_step"]) == pytest.approx(batch_losses[int(float(row["every_step"]))])
