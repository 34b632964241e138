"""The epoch's training metrics cover every step's predictions, computed once at the end."""

import lightning.pytorch as pl
import torch
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
    assert model._train_outputs == []  # handed over and released at the epoch's end
