"""The LightningModule: loss, metrics, optimiser and logging around a zoo model.

It takes the model's registered *name* and plain values, so `save_hyperparameters()`
stores only primitives: checkpoints load with `torch.load(weights_only=True)` and
`load_from_checkpoint(path)` rebuilds the network with no extra arguments.
"""

import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score

from models.flip_average import flip_averaged_logits
from models.preprocess import INPUT_NORMS, InputNorm, normalize_images
from models.registry import ModelConfigError, create_model
from models.version import CHECKPOINT_FORMAT, PROJECT_VERSION

CAT = 1  # cat is the positive class everywhere: label 1, p_cat = sigmoid(z)
DOG = 0
CLASS_NAMES = {CAT: "cat", DOG: "dog"}

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel


class CatsDogsClassifier(pl.LightningModule):
    """Trains a registered zoo model to output one logit z with p_cat = sigmoid(z).

    Args:
        network: Registered model name (see `models.list_models()`), e.g. `mlp`, `logreg`.
        network_kwargs: Arguments of that model's builder, e.g. `{hidden_dims: [512, 256, 128]}`.
        image_size: Side of the square input image; linked from `data.image_size`.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        warmup_epochs: Epochs of linear learning-rate warmup before the cosine decay.
        min_lr_ratio: The cosine schedule ends at `lr * min_lr_ratio`.
        label_smoothing: Pulls the BCE targets towards 0.5 by this amount (0 = off).
        mixup_alpha: Trains on blends lam * x_i + (1 - lam) * x_j with targets blended alike,
            lam ~ Beta(alpha, alpha) per batch (0 = off; 0.2-0.4 is typical).
        threshold: p_cat at or above which an image is called a cat.
        tta_flip: Test-time flip averaging: outside training, z is the mean of the logits of
            the photo and of its mirror image (twice the inference cost; predict.py, explain.py
            and exports do the same, so they report the p_cat that was tested).
        input_norm: How pixels become x: "dataset" (per-channel mean and std of the training
            split) or "per_image" (each photo standardised by its own mean and std).
    """

    def __init__(
        self,
        network: str = "mlp",
        network_kwargs: dict[str, Any] | None = None,
        image_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        threshold: float = 0.5,
        tta_flip: bool = False,
        input_norm: InputNorm = "dataset",
    ) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ModelConfigError(
                f"model.input_norm '{input_norm}' is unknown; choose one of {', '.join(INPUT_NORMS)}"
            )
        # Checked before any data is read, so a mistyped number fails in a second, in one line.
        for name, value, in_range, allowed in (
            ("lr", lr, lr >= 0, "0 or more (0 keeps the initial weights)"),
            ("weight_decay", weight_decay, weight_decay >= 0, "0 or more"),
            ("warmup_epochs", warmup_epochs, warmup_epochs >= 0, "0 or more"),
            ("min_lr_ratio", min_lr_ratio, 0 <= min_lr_ratio <= 1, "in [0, 1]"),
            ("label_smoothing", label_smoothing, 0 <= label_smoothing < 1, "in [0, 1)"),
            ("mixup_alpha", mixup_alpha, mixup_alpha >= 0, "0 or more (0 = off)"),
            ("threshold", threshold, 0 <= threshold <= 1, "in [0, 1]: a p_cat"),
        ):
            if not (in_range and math.isfinite(value)):  # NaN fails every comparison too
                raise ModelConfigError(f"model.{name} {value} is out of range; pass a value {allowed}")
        self.save_hyperparameters()
        self.network = create_model(network, image_size=image_size, **(network_kwargs or {}))
        # Input normalisation is part of the model, so a checkpoint alone can predict.
        # Filled from the training split's per-channel statistics in setup("fit").
        self.register_buffer("channel_mean", torch.full((3,), 0.5))
        self.register_buffer("channel_std", torch.full((3,), 0.25))
        # One torchmetrics collection per stage (attributes, so Lightning moves and resets them).
        self.train_metrics = _binary_metrics("train/", threshold)
        self.val_metrics = _binary_metrics("val/", threshold)
        self.test_metrics = _binary_metrics("test/", threshold)
        # The val/test loss as a torchmetrics mean over photos, synchronised as float sums.
        # Lightning's own epoch mean of self.log(..., sync_dist=True) averages the ranks'
        # photo counts as integers, so ranks scoring 5 and 4 photos divide by 4, not 4.5
        # (Lightning-AI/pytorch-lightning#21859, open in Lightning 2.6-2.7).
        # nan_strategy "disable": a NaN loss stays NaN, as self.log kept it, never dropped.
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self._train_outputs: list[tuple[Tensor, Tensor, Tensor]] = []  # (p_cat, label, loss) per step

    def forward(self, images: Tensor) -> Tensor:
        """uint8 images (B, 3, H, W) -> logits z (B,); flip-averaged in eval mode when tta_flip is on."""
        return flip_averaged_logits(
            self.network, self.normalize(images), self.hparams.tta_flip and not self.training
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.p_cat(images)

    def configure_optimizers(self) -> dict[str, Any]:
        # No weight decay on biases and norm parameters: decaying them only hurts.
        decay = [p for p in self.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay, "name": "weights"},
                {"params": no_decay, "weight_decay": 0.0, "name": "biases"},
            ],
            lr=self.hparams.lr,
            # One fused kernel over all parameters instead of ~10 passes per tensor: on 2 CPU
            # cores the default loop spent ~40 ms a step on 6.4M weights, the fused one ~6 ms
            # (benchmarks/perf.py, section 2). Same update rule, same state in the checkpoint.
            fused=all(p.device.type in FUSED_ADAMW_DEVICES for p in self.parameters()),
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total_steps / max(1, self.trainer.max_epochs or 1)
        warmup_steps = int(self.hparams.warmup_epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _WarmupCosine(warmup_steps, total_steps, self.hparams.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and getattr(datamodule, "channel_mean", None) is not None:
            self.channel_mean.copy_(torch.as_tensor(datamodule.channel_mean))
            # A constant channel would divide by zero; 1e-3 of the pixel range is "no spread".
            self.channel_std.copy_(torch.as_tensor(datamodule.channel_std).clamp_min(1e-3))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain data only (loads with weights_only=True): what produced this file and
        # what an image must go through before the network sees it.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        checkpoint["catsdogs"] = {
            "format": CHECKPOINT_FORMAT,
            "project_version": PROJECT_VERSION,
            "model": self.hparams.network,
            "hyper_parameters": {k: v for k, v in self.hparams.items() if not k.startswith("_")},
            "preprocessing": {
                "image_size": int(self.hparams.image_size),
                "input": "RGB uint8, shorter side resized to image_size, centre crop",
                "input_norm": self.hparams.input_norm,
                "channel_mean": self.channel_mean.tolist(),
                "channel_std": self.channel_std.tolist(),
            },
            "data_manifest_sha256": getattr(datamodule, "manifest_hash", None),
        }

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float x, as `input_norm` says (models.preprocess)."""
        return normalize_images(images, self.channel_mean, self.channel_std, self.hparams.input_norm)

    def p_cat(self, images: Tensor) -> Tensor:
        """The article's output: p_cat = sigmoid(z); p_cat >= threshold means cat."""
        return torch.sigmoid(self(images))

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        targets = labels.float()
        if stage == "train" and self.hparams.mixup_alpha > 0:
            logits, targets = self._mixup_forward(images, targets)
        else:
            logits = self(images)
        if stage == "train" and self.hparams.label_smoothing > 0:
            targets = targets * (1 - self.hparams.label_smoothing) + 0.5 * self.hparams.label_smoothing
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        if stage == "train":
            # Kept, and handed to the metrics once at the epoch's end: three metric updates
            # per step (input checks included) cost ~0.5 ms of a ~30 ms step.
            self._train_outputs.append((torch.sigmoid(logits.detach()), labels.long(), loss.detach()))
            if self._writes_step_metrics():
                self.log("train/loss_step", loss, prog_bar=True)
        else:
            getattr(self, f"{stage}_metrics").update(torch.sigmoid(logits.detach()), labels.long())
            # The batch's mean once per photo, so the epoch's mean is over photos. (Not
            # `weight=len(labels)`: with nan_strategy "disable" torchmetrics 1.9 ignores weights,
            # Lightning-AI/torchmetrics#3434.)
            getattr(self, f"{stage}_loss").update(loss.detach().expand(len(labels)))
        return loss

    def _writes_step_metrics(self) -> bool:
        """Whether Lightning writes step metrics after this training step: every
        `trainer.log_every_n_steps` optimizer steps, every step of a fast_dev_run, and the
        step a stop was asked for (Lightning's own rule, in public trainer state). self.log
        costs ~0.6 ms of a ~30 ms step on 2 cores, so train/loss_step is handed over only
        when it is written."""
        trainer, every = self.trainer, self.trainer.log_every_n_steps
        on_cadence = every > 0 and (trainer.global_step + 1) % every == 0
        return on_cadence or bool(trainer.fast_dev_run) or trainer.should_stop

    def on_train_epoch_start(self) -> None:
        self._train_outputs.clear()  # nothing left from an epoch that was interrupted

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _log_epoch_metrics(self, stage: str) -> None:
        # Computed (and synchronised across ranks) once per epoch: handing the metric objects
        # to self.log_dict on every step cost ~5 ms a training step in Lightning's bookkeeping.
        metrics = getattr(self, f"{stage}_metrics")
        if stage == "train" and self._train_outputs:
            probabilities, labels, losses = zip(*self._train_outputs, strict=True)
            metrics.update(torch.cat(probabilities), torch.cat(labels))
            # The mean over images, as Lightning's own on_epoch mean weighted by batch size.
            losses = torch.stack(losses).float()  # (steps,), on the model's device
            sizes = torch.tensor([len(batch) for batch in labels], dtype=torch.float32, device=losses.device)
            epoch_loss = (losses * sizes).sum() / sizes.sum()
            # Synchronised: under DDP every rank trains on as many images (the sampler pads to
            # even), so the mean of the ranks' means is the mean over all of them.
            self.log("train/loss_epoch", epoch_loss, prog_bar=True, sync_dist=True)
            self._train_outputs.clear()
        if any(metric.update_called for metric in metrics.values()):  # none before the first batch
            self.log_dict(metrics.compute(), prog_bar=stage != "train")
        mean_loss = getattr(self, f"{stage}_loss", None)  # val and test; train's is above
        if mean_loss is not None:
            if mean_loss.update_called:
                self.log(f"{stage}/loss", mean_loss.compute(), prog_bar=True)
            mean_loss.reset()
        metrics.reset()

    def _mixup_forward(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup (Zhang et al., 2018): the network sees blended photos and blended answers."""
        alpha = self.hparams.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        partner = torch.randperm(len(targets), device=targets.device)
        x = self.normalize(images)  # blend normalised inputs: (B, 3, H, W)
        logits = self.network(lam * x + (1 - lam) * x[partner])
        return logits, lam * targets + (1 - lam) * targets[partner]


def _binary_metrics(prefix: str, threshold: float) -> MetricCollection:
    return MetricCollection(
        {
            "acc": BinaryAccuracy(threshold=threshold),
            "auroc": BinaryAUROC(),
            "f1": BinaryF1Score(threshold=threshold),
        },
        prefix=prefix,
    )


class _WarmupCosine:
    """Learning-rate factor: linear warmup, then cosine decay to `min_ratio`.

    A class (not a lambda) so the scheduler state in a checkpoint stays plain data.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
