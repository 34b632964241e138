"""The training path learns: logistic regression fits a linearly separable set exactly."""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.classifier import CatsDogsClassifier

IMAGE_SIZE = 8  # 3 x 8 x 8 = 192 inputs


def separable_photos(count: int = 512, margin: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose label is the side of a fixed hyperplane they lie on, at least `margin` away.

    More images than inputs (512 > 193 weights), so a perfect fit means the rule was learned,
    not that any labelling of so few points could be memorised.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (4 * count, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator, dtype=torch.uint8
    )
    direction = torch.randn(3 * IMAGE_SIZE**2, generator=generator)
    scores = ((images.flatten(1).float() / 255 - 0.5) @ direction) / direction.norm()  # signed distance
    keep = scores.abs() > margin * scores.std()
    images, scores = images[keep][:count], scores[keep][:count]
    assert len(images) == count
    return images, (scores > 0).long()  # 1 = cat


def test_logreg_reaches_100_percent_training_accuracy_on_a_linearly_separable_set():
    images, labels = separable_photos()
    model = CatsDogsClassifier(network="logreg", image_size=IMAGE_SIZE, lr=0.01)
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=60,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    assert trainer.callback_metrics["train/acc"] == 1.0  # the last epoch's, as logged
    model.eval()
    with torch.no_grad():
        predicted = (model.model(images) >= 0.5).long()  # the article's rule: p_cat >= 0.5 means cat
    assert torch.equal(predicted, labels)
