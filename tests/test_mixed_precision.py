"""The classifier under mixed precision, run on the CPU: what a GPU user gets with 16-mixed
(loss scaling, skipped steps, gradient clipping) and with bf16-mixed (p_cat for the metrics)."""

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from models.classifier import CatsDogsClassifier, can_fuse_adamw
from models.labels import CAT
from training.network_insight import NetworkInsight

QUIET = dict(enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


@pytest.mark.parametrize(
    ("device", "precision", "fused"),
    [
        ("cpu", Precision(), True),  # 32-true
        ("cuda", MixedPrecision("bf16-mixed", "cuda"), True),  # bf16 needs no loss scaler
        ("cuda", MixedPrecision("16-mixed", "cuda", scaler=torch.amp.GradScaler("cpu")), False),
        ("cpu", MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu")), False),
        ("mps", Precision(), False),  # torch's fused AdamW is for CPU and CUDA tensors
    ],
)
def test_adamw_is_fused_only_where_no_loss_scaler_needs_to_unscale_first(device, precision, fused):
    assert can_fuse_adamw(torch.device(device), precision) is fused


class Photos(pl.LightningDataModule):
    """Fixed tensors as a datamodule: NetworkInsight takes its probe photos from one."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        super().__init__()
        self.photos = TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.photos, batch_size=16)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.photos, batch_size=16)


class OverflowOnLastStep(pl.Callback):
    """An inf gradient on the epoch's last step, as an fp16 overflow gives: the scaler skips it."""

    def on_after_backward(self, trainer, pl_module):
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            pl_module.model.network.head.weight.grad[0, 0] = float("inf")


def test_16_mixed_logs_unscaled_gradients_clips_and_survives_a_skipped_step(tmp_path):
    """A loss scaler (CPU's, standing in for CUDA's) with gradient clipping and NetworkInsight."""
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8), torch.arange(48) % 2
    # lr 0: the weights stay where they start, so step 0's gradient can be computed again here.
    model = CatsDogsClassifier(network_kwargs={"hidden_dims": [8], "dropout": 0.0}, image_size=8, lr=0.0)
    network = model.model.network
    F.binary_cross_entropy_with_logits(
        network(model.model.normalize(images[:16])), labels[:16].float()
    ).backward()
    expected_norm = torch.linalg.vector_norm(network.linear_layers()["layer1"].weight.grad).item()
    model.zero_grad()
    trainer = pl.Trainer(
        max_epochs=1,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))],
        gradient_clip_val=1.0,  # raises with a fused AdamW: it unscales only inside its step
        logger=TensorBoardLogger(tmp_path, name="run"),
        log_every_n_steps=1,
        callbacks=[NetworkInsight(every_n_epochs=1, probe_size=16), OverflowOnLastStep()],
        **QUIET,
    )
    trainer.fit(model, datamodule=Photos(images, labels))

    assert not trainer.optimizers[0].defaults["fused"]
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    logged_norm = events.Scalars("layer1/grad_norm")[0]
    assert logged_norm.step == 0
    # fp16 arithmetic: close to the float32 gradient, not 65,536 (the initial loss scale) times it.
    assert logged_norm.value == pytest.approx(expected_norm, rel=0.02)
    # The skipped step's inf gradient is left out of the histograms; the layers' others stay.
    histograms = set(events.Tags()["histograms"])
    assert "head/grad_W" not in histograms
    assert {"layer1/grad_W", "head/W", "head/Z"} <= histograms


@pytest.mark.filterwarnings("ignore:No negative samples:UserWarning")  # AUROC of cats alone
def test_bf16_metrics_count_a_z_just_above_0_as_a_cat():
    """bf16 has 8 bits of mantissa: sigmoid(2^-10) = 0.500244 rounds to 0.5 in bf16, which
    torchmetrics (p > threshold) calls dog, while predict.py's float32 p_cat says cat."""
    model = CatsDogsClassifier(network="logreg", image_size=8)
    with torch.no_grad():  # z = 2^-10 for every photo, exactly representable in bf16
        model.model.network.head.weight.zero_()
        model.model.network.head.bias.fill_(2**-10)
    cats = TensorDataset(torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8), torch.full((8,), CAT))
    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, **QUIET)
    (metrics,) = trainer.validate(model, DataLoader(cats, batch_size=4), verbose=False)
    assert metrics["val/acc"] == 1.0
