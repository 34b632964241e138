"""The callback that shows in TensorBoard what the network learns, layer by layer.

Every layer of a zoo network computes Z = W x + b, then A = g(Z). On a fixed probe batch
(validation photos, half cats, half dogs, the same every time, so snapshots compare) this
logs, per layer, histograms of W, b, Z, A and dL/dW, the share of dead or saturated units,
the first layer's weight rows as pictures and the probe photos with their p_cat; per
validation snapshot and after testing, the confusion matrix and the PR curve; after
testing, the hyperparameters with the best val/acc and the test/acc; after training, the
Projector's two views of the validation photos at the best epoch: x, the pixels the first
layer sees, and the last hidden layer's A. The model graph is Lightning's own
(`log_graph: true` and the classifier's example_input_array).
Everything goes through SummaryWriter's public add_* methods, on rank 0 only.
"""

import lightning.pytorch as pl
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torch.nn.functional import interpolate
from torch.utils.data import DataLoader, Subset
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.utilities.distributed import gather_all_tensors

from models.labels import CAT, CLASS_NAMES
from training.tensorboard_pictures import confusion_matrix_figure, probe_grid, weight_templates

SNAPSHOTS_PER_RUN = 5  # every_n_epochs None: about this many, ~0.4 s each: under 10% of a run
RELU_LIKE = ("relu", "leaky_relu", "gelu", "silu")  # dead: A <= 0 for every probe photo, so no gradient
SATURATION = {"sigmoid": (0.01, 0.99), "tanh": (-0.99, 0.99)}  # stuck in a flat tail for every probe photo
SPRITE_SIDE = 32  # Projector thumbnails: 500 photos make a 736-pixel square sprite


class NetworkInsight(pl.Callback):
    """Logs to TensorBoard what every layer learns: its W, b, Z, A and gradients.

    Does nothing without a TensorBoardLogger (e.g. `--trainer.logger false`).

    Args:
        every_n_epochs: Log a snapshot (histograms, unit health, pictures, validation curves)
            every this many epochs, and once before training. None: about 5 snapshots a run.
        probe_size: How many validation photos, half cats, half dogs, form the fixed probe batch.
        num_templates: How many of the first layer's units to show as weight templates.
        projector_photos: How many validation photos (half cats, half dogs) the Projector
            shows; 0: no Projector. Writing 500 takes about 4 s (docs/tensorboard.md).
    """

    def __init__(
        self,
        every_n_epochs: PositiveInt | None = None,
        probe_size: PositiveInt = 64,
        num_templates: NonNegativeInt = 32,
        projector_photos: NonNegativeInt = 500,
    ) -> None:
        # The types are the checks: LightningCLI refuses a 0 or a -1 before any photo is read.
        self.every_n_epochs, self.probe_size, self.num_templates = every_n_epochs, probe_size, num_templates
        self.projector_photos = projector_photos
        self._photos: tuple[Tensor, Tensor] | None = None  # the probe's and the Projector's, on the CPU
        self._best: tuple[int, str | None, Tensor, Tensor] | None = None  # step, layer, its A, p_cat
        self._outputs: list[tuple[Tensor, Tensor]] | None = None  # (p_cat, labels) of the batches of a stage

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._snapshot(trainer, pl_module)  # the untrained network, to compare against

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The epoch's last step, before Lightning frees the gradients for validation: .grad is
        # still dL/dW of this step, and W is what validation will see.
        if batch_idx == trainer.num_training_batches - 1 and self._snapshot_epoch(trainer):
            self._snapshot(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        collect = not trainer.sanity_checking and self._snapshot_epoch(trainer)
        self._outputs = [] if collect and self._logger(trainer) else None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._outputs = [] if self._logger(trainer) else None  # on every rank: they gather together

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        # ||dL/dW|| per layer, on Lightning's logging steps: which layers learn, which have stalled.
        # Written straight to TensorBoard: nothing to average over steps, and under DDP
        # the gradients are already averaged, so rank 0's are every rank's.
        writer, step = self._writer(trainer), trainer.global_step
        if writer is not None and (step + 1) % trainer.log_every_n_steps == 0:
            layers = pl_module.model.network.linear_layers().items()
            grads = {name: linear.weight.grad for name, linear in layers if linear.weight.grad is not None}
            if grads:
                # One copy to the CPU for all layers: a tensor passed to add_scalar would make the
                # CPU wait for the GPU once per layer.
                norms = torch.stack([torch.linalg.vector_norm(grad) for grad in grads.values()])
                for name, norm in zip(grads, norms.tolist(), strict=True):
                    writer.add_scalar(f"{name}/grad_norm", norm, step)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self._outputs is not None:
            self._outputs.append((outputs.detach(), batch[1]))  # validation_step returns p_cat

    on_test_batch_end = on_validation_batch_end

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_curves(trainer, pl_module, "val")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # At each new best val/acc, the network best.ckpt is about to hold (ModelCheckpoint runs
        # after every other callback): keep its last hidden A and p_cat of the Projector's photos.
        # One forward pass, ~3% of an epoch; writing them is the dear part (text, several us a
        # number, 12,288 numbers a photo for x at 64 px), so it happens once, in on_train_end.
        checkpoint, metrics = trainer.checkpoint_callback, trainer.callback_metrics
        if not self.projector_photos or trainer.sanity_checking or self._writer(trainer) is None:
            return
        if checkpoint is None or metrics.get(checkpoint.monitor) is None:  # no best.ckpt: no best epoch
            return
        score, best = metrics[checkpoint.monitor], checkpoint.best_model_score
        if best is None or (score > best if checkpoint.mode == "max" else score < best):
            images, _ = self._validation_photos(trainer, self.projector_photos)
            outputs = self._intermediates(pl_module.model, images.to(pl_module.device))
            p_cat = torch.sigmoid(outputs.pop(next(reversed(outputs))).z.float()).cpu()  # the head's z
            name = next(reversed(outputs), None)  # the last hidden layer; None for logreg
            a = outputs[name].a.float().cpu() if name else None  # (photos, units) or (photos, tokens, units)
            # A token network's head reads the mean over its tokens: that, and 1/tokens of the text.
            a = a.mean(1) if a is not None and a.ndim == 3 else a
            self._best = trainer.global_step, name, a, p_cat

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is None or self._best is None:
            return
        step, name, a, p_cat = self._best
        images, labels = self._validation_photos(trainer, self.projector_photos)
        right = (p_cat >= pl_module.model.threshold) == (labels == CAT)
        metadata = [
            [CLASS_NAMES[label], f"{p:.3f}", "right" if ok else "wrong"]
            for label, p, ok in zip(labels.tolist(), p_cat.tolist(), right.tolist(), strict=True)
        ]
        sprite = interpolate(images.float(), size=min(SPRITE_SIDE, images.shape[-1]), mode="area") / 255
        x = pl_module.model.normalize(images.to(pl_module.device)).flatten(1).cpu()  # (photos, 3*S*S)
        # Neighbouring pixel values are ~0.01-0.02 apart in x: 3 decimals keep them apart, in a
        # third of the text of float32's 17 digits.
        embeddings = {"x": x.double().round(decimals=3), f"{name}/A": a}
        for tag, mat in embeddings.items():
            if mat is not None:
                writer.add_embedding(mat, metadata, sprite, step, tag, ["label", "p_cat", "call"])

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_curves(trainer, pl_module, "test")
        logger = self._logger(trainer)
        if logger is not None and trainer.checkpoint_callback is not None:
            # The HParams tab: one row per run, its settings and the two numbers that judge it.
            best = trainer.checkpoint_callback.best_model_score
            metrics = {"hp/test_acc": float(trainer.callback_metrics.get("test/acc", float("nan")))}
            metrics["hp/best_val_acc"] = float(best) if best is not None else float("nan")
            params = {**pl_module.hparams, **(trainer.datamodule.hparams if trainer.datamodule else {})}
            logger.log_hyperparams(params, metrics, step=trainer.global_step)

    def _snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Histograms, unit health and pictures of every layer on the probe batch."""
        writer = self._writer(trainer)
        if writer is None:
            return
        model, step = pl_module.model, trainer.global_step
        images, labels = self._validation_photos(trainer, self.probe_size)
        images = images.to(pl_module.device)
        outputs = self._intermediates(model, images)
        declared = model.network.layers()  # every name of outputs, with its W, b and g
        for name, output in outputs.items():
            linear, dense = declared[name].linear, declared[name].dense
            tensors = {
                "Z": output.z,
                "A": output.a,
                "W": linear.weight,
                "b": linear.bias,
                "grad_W": linear.weight.grad,
            }
            for kind, values in tensors.items():
                if values is None:
                    continue
                values = values.detach().float().cpu()
                # In 16-mixed, a step the loss scaler skips (an overflow) leaves inf gradients,
                # which cannot be binned; that step changed no weight, so there is nothing to show.
                if kind == "grad_W" and not torch.isfinite(values).all():
                    continue
                # 64 even buckets: a third of the time of the default 1,500 uneven ones
                writer.add_histogram(f"{name}/{kind}", values, step, bins=64)
            units = output.a.reshape(-1, output.a.shape[-1])  # (photos * tokens, units)
            g = dense.activation_name if dense is not None else None
            if g in RELU_LIKE:
                writer.add_scalar(f"{name}/dead_fraction", (units <= 0).all(0).float().mean().item(), step)
            if g in SATURATION:
                low, high = SATURATION[g]
                stuck = ((units < low) | (units > high)).all(0).float().mean().item()
                writer.add_scalar(f"{name}/saturated_fraction", stuck, step)
        first_name, first = next(iter(declared.items()))
        if self.num_templates and first.mixes == "pixels":  # W mixes every pixel: each row is a photo
            writer.add_image(
                f"{first_name}/templates",
                weight_templates(first.linear.weight, images.shape[1:], self.num_templates),
                step,
            )
        p_cat = torch.sigmoid(outputs[next(reversed(outputs))].z)  # the head's z
        writer.add_image("probe/p_cat", probe_grid(images, p_cat, labels, model.threshold), step)

    def _log_curves(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._outputs is None:  # the same on every rank, so none waits for the others alone
            return
        p_cat = torch.cat([p for p, _ in self._outputs] or [torch.empty(0, device=pl_module.device)])
        labels = torch.cat(
            [y for _, y in self._outputs] or [torch.empty(0, dtype=torch.long, device=pl_module.device)]
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank's photos; torchmetrics' gather takes the uneven counts ranks have.
            p_cat, labels = (torch.cat(gather_all_tensors(t)) for t in (p_cat, labels))
        self._outputs = None
        writer, step = self._writer(trainer), trainer.global_step
        if writer is not None:
            writer.add_pr_curve(
                f"{stage}/pr_curve", labels.cpu() == 1, p_cat.float().cpu(), step
            )  # cat is positive
            figure = confusion_matrix_figure(
                p_cat.cpu(), labels.cpu(), pl_module.model.threshold, f"{stage}, step {step}"
            )
            writer.add_figure(f"{stage}/confusion_matrix", figure, step)

    def validation_photos(self, datamodule: pl.LightningDataModule, count: int) -> tuple[Tensor, Tensor]:
        """`count` validation photos and labels, cat, dog, cat, dog, ... (the rest of one class
        once the other runs out), the same at every call. Without the datamodule's `val_labels`,
        the first `count` in val_dataloader's order."""
        loader = datamodule.val_dataloader()  # unshuffled, and the same on every rank
        labels = getattr(datamodule, "val_labels", None)
        if labels is None:
            positions = torch.arange(min(count, len(loader.dataset)))
        else:  # photos sort by class (cats/ before dogs/): interleave the i-th cat and the i-th dog
            rank = torch.where(labels == CAT, (labels == CAT).cumsum(0), (labels != CAT).cumsum(0))
            positions = torch.argsort(2 * rank + (labels != CAT), stable=True)[:count]
        chosen = Subset(loader.dataset, positions.tolist())
        return next(iter(DataLoader(chosen, batch_size=len(chosen), collate_fn=loader.collate_fn)))

    def _validation_photos(self, trainer: pl.Trainer, count: int) -> tuple[Tensor, Tensor]:
        if self._photos is None:  # the probe's are the Projector's first ones
            self._photos = self.validation_photos(
                trainer.datamodule, max(self.probe_size, self.projector_photos)
            )
        return self._photos[0][:count], self._photos[1][:count]

    @staticmethod
    def _intermediates(model: torch.nn.Module, images: Tensor) -> dict:
        """Every layer's Z and A from the network's own forward, as it predicts (no dropout)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            _, outputs = model.forward_with_intermediates(images)
        model.train(was_training)
        return outputs

    def _snapshot_epoch(self, trainer: pl.Trainer) -> bool:
        every = self.every_n_epochs or max(1, (trainer.max_epochs or 1) // SNAPSHOTS_PER_RUN)
        return (trainer.current_epoch + 1) % every == 0

    def _logger(self, trainer: pl.Trainer) -> TensorBoardLogger | None:
        if trainer.datamodule is None:  # the probe photos come from the datamodule
            return None
        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def _writer(self, trainer: pl.Trainer) -> SummaryWriter | None:
        """The SummaryWriter on rank 0 (other ranks write nothing), None without a TensorBoardLogger."""
        logger = self._logger(trainer)
        return logger.experiment if logger is not None and trainer.is_global_zero else None
