"""The LightningModule: its metrics, logged steps, schedule, mixing and refusals."""

import csv

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from jsonargparse import ArgumentError, ArgumentParser
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from models.classifier import CatsDogsClassifier, TrainingDiverged


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
        p_cat = model.model(images)
    targets = labels.long()
    logged = trainer.callback_metrics
    torch.testing.assert_close(logged["train/acc"], BinaryAccuracy()(p_cat, targets))
    torch.testing.assert_close(logged["train/auroc"], BinaryAUROC()(p_cat, targets))
    torch.testing.assert_close(logged["train/f1"], BinaryF1Score()(p_cat, targets))
    # The mean over all 40 images, not over the 3 batch means (the last batch has 8 images).
    with torch.no_grad():
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
    torch.testing.assert_close(logged["train/loss_epoch"], loss)


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


def test_a_nan_loss_stops_training_naming_the_step_before_the_update():
    images = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 2, (32,))
    model = CatsDogsClassifier(network="logreg", image_size=8, lr=1e-3)
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip

    class PoisonStep2(pl.Callback):  # the weights go NaN at step 2, as a far too large lr would do
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 2:
                with torch.no_grad():
                    pl_module.model.network.head.weight.fill_(float("nan"))

    trainer.callbacks.append(PoisonStep2())
    with pytest.raises(TrainingDiverged, match="at step 2 "):
        trainer.fit(model, loader)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("lr", "-1"), ("min_lr_ratio", "2"), ("label_smoothing", "1"), ("mixup_alpha", "nan")],
)
def test_out_of_range_hyperparameters_are_refused_by_their_cli_types(argument, value):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CatsDogsClassifier, "model")
    with pytest.raises(ArgumentError, match=f'(?s)"model.{argument}".* does not conform to restriction'):
        parser.parse_args(["--model.network", "logreg", f"--model.{argument}", value])


def test_values_from_the_cli_reach_the_checkpoint_as_plain_floats():
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CatsDogsClassifier, "model")
    config = parser.parse_args(["--model.network", "logreg", "--model.image_size", "8", "--model.lr", "0.01"])
    assert type(config.model.lr) is not float  # the constrained type that did the check
    hparams = parser.instantiate(config).model.hparams
    assert hparams.lr == 0.01 and {type(hparams[key]) for key in ("lr", "threshold", "min_lr_ratio")} == {
        float
    }


def test_schedule_warms_up_then_decays_to_min_lr_ratio():
    images, labels = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 2, (64,))
    model = CatsDogsClassifier(network="logreg", image_size=8, lr=0.1, warmup_epochs=1, min_lr_ratio=0.1)
    seen = []

    class RecordLr(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[RecordLr()])  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=16))  # 4 steps an epoch
    assert seen[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])  # linear warmup over the first epoch
    assert max(seen) == pytest.approx(0.1) and seen[-1] < seen[4]  # then cosine decay
    assert seen[-1] >= 0.01 - 1e-12  # never below lr * min_lr_ratio


def test_mixup_trains_on_blended_targets():
    torch.manual_seed(0)
    model = CatsDogsClassifier(network="logreg", image_size=8, mixup_alpha=0.4)
    images, labels = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8), torch.arange(16) % 2
    x, soft = model.mix(model.model.normalize(images), labels)
    assert x.shape == (16, 3, 8, 8) and soft.shape == (16, 2)
    assert ((soft > 0) & (soft < 1)).any()  # some targets are a share of cat, not 0 or 1
    torch.testing.assert_close(soft.sum(1), torch.ones(16))
