"""The LightningModule: loss, metrics, optimiser and logging around one PCatModel.

It takes the network's registered *name* and plain values, so `save_hyperparameters()`
stores only primitives: checkpoints load with `torch.load(weights_only=True)`, and
`CatsDogsClassifier.load_from_checkpoint(path)` rebuilds everything (call `.eval()` on it
before predicting, as with any nn.Module; `inference.load_model(path)` does that for you).
"""

import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeFloat, restricted_number_type
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score
from torchvision.transforms import v2

from models import CHECKPOINT_FORMAT, PROJECT_VERSION
from models.labels import CAT
from models.pcat_model import InputNorm, PCatModel

# Checked by LightningCLI before any photo is read, and shown in --help; a NaN fails too.
HalfOpenUnitInterval = restricted_number_type("HalfOpenUnitInterval", float, [(">=", 0), ("<", 1)])


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; raised before the bad update is applied."""


class CatsDogsClassifier(pl.LightningModule):
    """Trains a zoo network to output one logit z per photo, p_cat = sigmoid(z).

    Args:
        network: Registered model name (see `models.list_models()`), e.g. `mlp`, `logreg`.
        network_kwargs: Arguments of that model's builder, e.g. `{hidden_dims: [512, 256, 128]}`.
        image_size: Side of the square input photo; linked from `data.image_size`.
        input_norm: "dataset" (the training photos' channel mean and std) or "per_image".
        tta_flip: Validate, test and predict with the mean logit of the photo and its mirror.
        threshold: p_cat at or above which a photo is called a cat.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay (weights only, never biases or norms).
        warmup_epochs: Epochs of linear learning-rate warmup before the cosine decay.
        min_lr_ratio: The cosine schedule ends at `lr * min_lr_ratio`.
        label_smoothing: Pulls the training targets towards 0.5 by this amount (0 = off).
        mixup_alpha: MixUp: train on blends of two photos and of their targets (0 = off).
        cutmix_alpha: CutMix: paste a box of one photo into another, targets by area (0 = off).
            With both on, each batch uses one of the two at random.
    """

    def __init__(
        self,
        network: str = "mlp",
        network_kwargs: dict[str, Any] | None = None,
        image_size: int = 64,
        input_norm: InputNorm = "dataset",
        tta_flip: bool = False,
        threshold: ClosedUnitInterval = 0.5,
        lr: NonNegativeFloat = 1e-3,
        weight_decay: NonNegativeFloat = 0.0,
        warmup_epochs: NonNegativeFloat = 0.0,
        min_lr_ratio: ClosedUnitInterval = 0.01,
        label_smoothing: HalfOpenUnitInterval = 0.0,
        mixup_alpha: NonNegativeFloat = 0.0,
        cutmix_alpha: NonNegativeFloat = 0.0,
    ) -> None:
        super().__init__()
        # Plain floats in checkpoints: the CLI's constrained types are classes that
        # torch.load(weights_only=True) refuses to unpickle.
        threshold, lr, weight_decay = float(threshold), float(lr), float(weight_decay)
        warmup_epochs, min_lr_ratio = float(warmup_epochs), float(min_lr_ratio)
        label_smoothing, mixup_alpha, cutmix_alpha = (
            float(label_smoothing),
            float(mixup_alpha),
            float(cutmix_alpha),
        )
        self.save_hyperparameters()
        self.model = PCatModel(network, network_kwargs, image_size, input_norm, tta_flip, threshold)
        mixers = [v2.MixUp(alpha=mixup_alpha, num_classes=2)] if mixup_alpha else []
        mixers += [v2.CutMix(alpha=cutmix_alpha, num_classes=2)] if cutmix_alpha else []
        self.mix = v2.RandomChoice(mixers) if mixers else None
        # One torchmetrics collection per stage; Lightning computes, syncs and resets them.
        self.train_metrics = binary_metrics("train/", threshold)
        self.val_metrics = binary_metrics("val/", threshold)
        self.test_metrics = binary_metrics("test/", threshold)
        # Mean losses over every photo of a stage, on every rank together: each is fed the
        # per-photo losses, so uneven batches and ranks average right. No NaN check: it would
        # make the CPU wait for the GPU every step, and a NaN training loss stops the run anyway.
        # ("disable" also drops MeanMetric's weights, hence per-photo values, not weights.)
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        # Lets Lightning draw the model graph in TensorBoard and show layer shapes at the start.
        self.example_input_array = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)

    def forward(self, images: Tensor) -> Tensor:
        """uint8 photos (B, 3, S, S) -> logits z (B,)."""
        return self.model.logits(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch  # (B, 3, S, S) uint8, (B,) 1 = cat
        x, targets = self.model.normalize(images), labels.float()
        if self.mix is not None:  # blended photos, blended answers: the share of cat in each
            x, soft_labels = self.mix(x, labels)
            targets = soft_labels[:, CAT]
        smoothing = self.hparams.label_smoothing
        targets = targets * (1 - smoothing) + 0.5 * smoothing
        z = self.model.network(x)  # (B,)
        photo_losses = F.binary_cross_entropy_with_logits(z, targets, reduction="none")  # (B,)
        loss = photo_losses.mean()
        # The one wait for the GPU a step that we keep: it stops before the bad update.
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}); the checkpoints on disk are from before it: lower model.lr "
                "and start again"
            )
        self.train_metrics.update(p_cat_of(z.detach()), labels)  # on the augmented photos
        self.train_loss.update(photo_losses.detach())
        self.log("train/loss_step", loss, prog_bar=True)  # this batch, on this rank
        return loss

    def on_train_epoch_end(self) -> None:
        # Logged once an epoch, not from every step: a self.log call costs ~2 ms, and four of
        # them a step were a fifth of the article MLP's training time on 2 cores.
        self.log("train/loss_epoch", self.train_loss)
        self.log_dict(self.train_metrics)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, self.val_metrics, self.val_loss, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, self.test_metrics, self.test_loss, "test")

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.model(images)  # p_cat (B,)

    def configure_optimizers(self) -> dict[str, Any]:
        # No weight decay on biases and norm parameters: decaying them only hurts.
        params = list(self.parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": self.hparams.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
            fused=can_fuse_adamw(self.device, self.trainer.precision_plugin),
        )
        trainer, steps_per_epoch = self.trainer, self._steps_per_epoch()
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        total_steps = trainer.max_steps if trainer.max_steps > 0 else epochs * steps_per_epoch
        warmup_steps = int(self.hparams.warmup_epochs * steps_per_epoch)
        min_ratio = self.hparams.min_lr_ratio

        def warmup_then_cosine(step: int) -> float:  # the factor on lr at optimizer step `step`
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        # A function, not an object: its numbers are not saved in checkpoints, so a run resumed
        # with a larger max_epochs stretches the schedule over the new total.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        trainer, data = self.trainer, self.trainer.datamodule
        if not getattr(data, "train_photos", 0):  # loaders passed to fit() directly
            return max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs or 1))
        # Counted from the training split, not by trainer.estimated_stepping_batches: that builds
        # the training loader before a resumed run's place in the epoch is restored into it, and
        # the resumed epoch would start over.
        batches = math.ceil(data.train_photos / (data.batch_size * trainer.world_size))
        return max(1, batches // trainer.accumulate_grad_batches)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if stage == "fit" and getattr(datamodule, "channel_mean", None) is not None:
            # Measured on the training photos; saved in the checkpoint with the weights.
            self.model.set_channel_stats(datamodule.channel_mean, datamodule.channel_std)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain data only (loads with weights_only=True): what rebuilds the PCatModel, and
        # which photos trained it.
        checkpoint["catsdogs"] = {
            "format": CHECKPOINT_FORMAT,
            "project_version": PROJECT_VERSION,
            "model_config": self.model.config,
            "data_manifest_sha256": getattr(self.trainer.datamodule, "manifest_hash", None),
        }

    def _evaluate(
        self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, loss: MeanMetric, stage: str
    ) -> Tensor:
        images, labels = batch
        z = self(images)
        p_cat = p_cat_of(z)
        metrics.update(p_cat, labels)
        loss.update(F.binary_cross_entropy_with_logits(z, labels.float(), reduction="none"))
        self.log(f"{stage}/loss", loss)
        self.log_dict(metrics, prog_bar=stage == "val")
        return p_cat  # NetworkInsight draws the confusion matrix and PR curve from these


def p_cat_of(z: Tensor) -> Tensor:
    """p_cat = sigmoid(z) in float32. Under bf16 autocast z is bf16, and a bf16 p_cat near 0.5
    is a multiple of 2^-8: p_cat in (0.5, 0.502) would become 0.5, which torchmetrics calls dog
    and predict.py (float32) calls cat."""
    return torch.sigmoid(z.float())


def can_fuse_adamw(device: torch.device, precision_plugin: Precision) -> bool:
    """Whether AdamW may run fused: one kernel over all parameters instead of a loop of ~10 ops
    per tensor (on 2 CPU cores ~6 ms a step for the article MLP's 6.4M weights instead of ~40 ms).

    Not under a loss scaler (16-mixed): Lightning then leaves unscaling to the fused step, so the
    gradients that clipping and NetworkInsight see are still times the loss scale (65,536 at
    first), and `gradient_clip_val` raises.
    """
    scaled = isinstance(precision_plugin, MixedPrecision) and precision_plugin.scaler is not None
    return device.type in ("cpu", "cuda") and not scaled


def binary_metrics(prefix: str, threshold: float) -> MetricCollection:
    """Accuracy, AUROC and F1 with cat as the positive class.

    `validate_args=False`: the inputs are ours (p_cat in [0, 1], labels 0 or 1), and checking
    them makes the CPU wait for the GPU on every update.
    """
    metrics = {
        "acc": BinaryAccuracy(threshold, validate_args=False),
        "auroc": BinaryAUROC(validate_args=False),
        "f1": BinaryF1Score(threshold, validate_args=False),
    }
    return MetricCollection(metrics, prefix=prefix)
