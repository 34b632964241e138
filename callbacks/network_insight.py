"""The callback that shows in TensorBoard what the network learns, layer by layer.

Every layer of a zoo model computes Z = W x + b, then A = g(Z). This callback logs W, b,
Z, A and dL/dW of every layer, using only the models' one interface
(`linear_layers()` and `forward_with_intermediates(x)`), so it works on every family.
"""

import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter

from callbacks import scalar_layout, snapshot
from callbacks.event_checksums import use_fast_event_checksums
from callbacks.hparams import run_hparams, write_experiment
from callbacks.layer_motion import LayerMotion
from callbacks.layer_stats import activation_names, histogram
from callbacks.predictions import PredictionRecorder
from callbacks.probe import Probe, take_probe, validation_batches

SNAPSHOTS_PER_RUN = 8  # every_n_epochs=None: about this many snapshots, so long runs stay cheap
BEST_VAL_ACC, TEST_ACC = "hp/best_val_acc", "hp/test_acc"  # the HParams tab's metric columns


class NetworkInsight(Callback):
    """Logs to TensorBoard what every layer learns: its W, b, Z, A and gradients.

    On a fixed probe batch (the first validation images, the same every epoch) it logs
    histograms `<layer>/W`, `<layer>/b`, `<layer>/Z`, `<layer>/A`, `<layer>/grad_W`; the
    scalars `<layer>/weight_norm`, `grad_norm`, `update_ratio`, `dead_fraction` and
    `saturated_fraction`, grouped per layer in the Custom Scalars tab; the first layer's
    weight rows as images; the probe images with their p_cat; confusion matrices and
    precision-recall curves for validation and test; the hyperparameters with the best
    val/acc and the test/acc; and the model graph once.

    It does nothing without a TensorBoardLogger (e.g. `--trainer.logger false` or a CSV
    logger), and only rank 0 writes.

    Args:
        enabled: Set to false to switch all of it off while keeping the callback in the config.
        every_n_epochs: Log histograms, images, dead/saturated units and curves every this
            many epochs, and once before training. None: every epoch for runs of up to 15
            epochs, else every `max_epochs // 8` (keeps logging under 10% of training time).
        probe_size: How many of the first validation images form the fixed probe batch.
        histograms: Log the W, b, Z, A and grad_W histograms.
        layer_scalars: Log weight and gradient norms of every layer every
            `trainer.log_every_n_steps` steps, and the update/weight ratio on the last step of
            every epoch that logs histograms (see every_n_epochs).
        images: Log the first layer's weight templates and the probe images with p_cat.
        curves: Log confusion matrices and precision-recall curves for validation and test.
        hparams: Log the hyperparameters with the best val/acc and the test/acc.
        graph: Log the model graph once (a failure to trace it only warns).
        num_templates: How many of the first layer's units to show as weight templates.
        histogram_bins: Equal-width buckets per histogram.
    """

    def __init__(
        self,
        enabled: bool = True,
        every_n_epochs: int | None = None,
        probe_size: int = 64,
        histograms: bool = True,
        layer_scalars: bool = True,
        images: bool = True,
        curves: bool = True,
        hparams: bool = True,
        graph: bool = True,
        num_templates: int = 64,
        histogram_bins: int = 64,
    ) -> None:
        if (
            (every_n_epochs is not None and every_n_epochs < 1)
            or probe_size < 1
            or num_templates < 0
            or histogram_bins < 1
        ):
            raise ValueError(
                "every_n_epochs, probe_size and histogram_bins must be >= 1 and num_templates >= 0; "
                f"got {every_n_epochs}, {probe_size}, {histogram_bins} and {num_templates}"
            )
        self.enabled = enabled
        self.every_n_epochs = every_n_epochs
        self.probe_size = probe_size
        self.histograms = histograms
        self.layer_scalars = layer_scalars
        self.images = images
        self.curves = curves
        self.hparams = hparams
        self.graph = graph
        self.num_templates = num_templates
        self.histogram_bins = histogram_bins
        self._logger: TensorBoardLogger | None = None
        self._probe: Probe | None = None
        self._recorder = PredictionRecorder()
        self._every_n_epochs = every_n_epochs or 1  # resolved from max_epochs in setup when None
        self._motion = LayerMotion()  # gradient norms and update ratios around optimizer steps
        self._grad_histograms: dict = {}  # dL/dW histograms of the epoch's last step
        self._best_val_acc: float | None = None
        self._hparams_written = False
        self._graph_logged = False
        self._warned: set[str] = set()

    # ---- wiring: find the TensorBoard writer, or stay a no-op -----------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        self._logger = loggers[0] if (self.enabled and loggers) else None
        if self._logger is not None:
            use_fast_event_checksums()  # or the writer thread's checksums stall training (event_checksums)
        if self.every_n_epochs is None:
            self._every_n_epochs = default_every_n_epochs(trainer.max_epochs)
        if self._logger is not None and self.curves:
            self._recorder.attach(pl_module)  # on every rank: DDP gathers predictions from all

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._recorder.detach()

    def _writer(self, trainer: pl.Trainer) -> SummaryWriter | None:
        """The SummaryWriter on rank 0 with a TensorBoardLogger; None everywhere else."""
        if self._logger is None or not trainer.is_global_zero:
            return None
        writer = self._logger.experiment
        if not isinstance(writer, SummaryWriter):  # tensorboardX's writer has no add_histogram_raw
            self._warn_once("writer", f"NetworkInsight needs torch's SummaryWriter, got {type(writer)}")
            return None
        return writer

    # ---- training: layer scalars on logging steps, snapshots at epoch ends ----------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = self._writer(trainer)
        network = self._network(pl_module)
        if writer is None or network is None:
            return
        writer.add_custom_scalars(scalar_layout.custom_scalar_layout(activation_names(network)))
        self._snapshot(trainer, pl_module, writer)  # the untrained network, to compare against
        probe = self._probe_batch(trainer, pl_module)
        if self.graph and not self._graph_logged and probe is not None:
            self._log_graph(writer, network, self._network_input(pl_module, probe.images))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not (self.layer_scalars or self.histograms) or self._writer(trainer) is None:
            return
        last_step = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        logging_step = trainer.global_step % trainer.log_every_n_steps == 0
        if not (last_step or (self.layer_scalars and logging_step)):
            return  # most steps: nothing to measure, so no per-step walk over the layers
        if (network := self._network(pl_module)) is None:
            return
        with_grad = {
            name: linear for name, linear in network.linear_layers().items() if linear.weight.grad is not None
        }
        snapshot_step = last_step and self._logs_this_epoch(trainer)
        if self.layer_scalars:
            # ||W|| and the update ratio need a copy of W (25 MB for the article MLP's first
            # layer): taken on snapshot epochs only, like the histograms, not on every epoch.
            self._motion.before_step(with_grad, grad_norms=logging_step or last_step, weights=snapshot_step)
        if self.histograms and snapshot_step:
            for name, linear in with_grad.items():
                self._grad_histograms[name] = histogram(linear.weight.grad, self.histogram_bins)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        if self._motion.pending and (writer := self._writer(trainer)) is not None:
            # after the optimizer step, like Lightning's own train/loss_step
            self._motion.after_step(writer, self._network(pl_module).linear_layers(), trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is not None and self._logs_this_epoch(trainer):
            self._snapshot(trainer, pl_module, writer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._best_val_acc is not None:
            self._log_hparams(trainer, pl_module, BEST_VAL_ACC, self._best_val_acc)

    # ---- validation and test: curves from the epoch's own predictions ----------------------

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._logger is not None and not trainer.sanity_checking and self._logs_this_epoch(trainer):
            self._recorder.start()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: object,
        batch: tuple[Tensor, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._recorder.add_labels(batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._recorder.recording:
            self._log_curves(trainer, pl_module, "val")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        accuracy = trainer.callback_metrics.get("val/acc")
        if not trainer.sanity_checking and accuracy is not None:
            self._best_val_acc = max(float(accuracy), self._best_val_acc or float("-inf"))

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._logger is not None:
            self._recorder.start()

    on_test_batch_end = on_validation_batch_end  # the same: keep each batch's labels for the curves

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._recorder.recording:
            self._log_curves(trainer, pl_module, "test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        accuracy = trainer.callback_metrics.get("test/acc")
        if accuracy is not None:
            self._log_hparams(trainer, pl_module, TEST_ACC, float(accuracy))

    # ---- what gets written ----------------------------------------------------------------

    def _snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule, writer: SummaryWriter) -> None:
        """Histograms, dead/saturated units and pictures of every layer on the probe batch."""
        network = self._network(pl_module)
        probe = self._probe_batch(trainer, pl_module)
        if network is None or probe is None:
            return
        step = trainer.global_step
        traces = snapshot.probe_traces(network, self._network_input(pl_module, probe.images))
        if self.histograms:
            snapshot.log_histograms(writer, network, traces, self._grad_histograms, self.histogram_bins, step)
        self._grad_histograms = {}
        snapshot.log_unit_health(writer, network, traces, step)
        if self.images:
            snapshot.log_pictures(
                writer, network, traces, probe, _threshold(pl_module), self.num_templates, step
            )

    def _log_curves(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        predictions = self._recorder.finish(trainer)
        writer = self._writer(trainer)
        if predictions is not None and writer is not None:
            p_cat, labels = predictions
            snapshot.log_curves(writer, stage, p_cat, labels, _threshold(pl_module), trainer.global_step)

    def _log_hparams(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, tag: str, value: float
    ) -> None:
        """Declares the HParams row once (both metric columns), then logs `value` under `tag`."""
        if not self.hparams or (writer := self._writer(trainer)) is None:
            return
        if not self._hparams_written:
            write_experiment(writer, run_hparams(trainer, pl_module), (BEST_VAL_ACC, TEST_ACC))
            self._hparams_written = True
        writer.add_scalar(tag, value, trainer.global_step)

    def _log_graph(self, writer: SummaryWriter, network: nn.Module, x: Tensor) -> None:
        self._graph_logged = True
        if (error := snapshot.log_graph(writer, network, x)) is not None:
            self._warn_once("graph", f"NetworkInsight could not trace the model graph: {error}")

    # ---- helpers -----------------------------------------------------------------------------

    def _logs_this_epoch(self, trainer: pl.Trainer) -> bool:
        return (trainer.current_epoch + 1) % self._every_n_epochs == 0

    def _network(self, pl_module: pl.LightningModule) -> nn.Module | None:
        """The zoo model: `pl_module.network` (or the module itself) with the layer interface."""
        network = getattr(pl_module, "network", pl_module)
        if hasattr(network, "forward_with_intermediates") and hasattr(network, "linear_layers"):
            return network
        self._warn_once(
            "network", "NetworkInsight: the model has no forward_with_intermediates/linear_layers"
        )
        return None

    def _network_input(self, pl_module: pl.LightningModule, images: Tensor) -> Tensor:
        """uint8 images -> the network's input, the way the LightningModule's forward prepares them."""
        normalize = getattr(pl_module, "normalize", None)
        return normalize(images) if normalize is not None else images.float()

    def _probe_batch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Probe | None:
        if self._probe is None:
            batches = validation_batches(trainer)
            self._probe = take_probe(batches, self.probe_size) if batches is not None else None
        if self._probe is None:
            return None
        return Probe(self._probe.images.to(pl_module.device), self._probe.labels.to(pl_module.device))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=2)


def default_every_n_epochs(max_epochs: int | None) -> int:
    """Every epoch for runs of up to 15 epochs, else about SNAPSHOTS_PER_RUN snapshots per run."""
    return max(1, (max_epochs or 1) // SNAPSHOTS_PER_RUN)


def _threshold(pl_module: pl.LightningModule) -> float:
    """The p_cat at or above which the model calls a cat (its `threshold` hyperparameter, else 0.5)."""
    return float(getattr(pl_module.hparams, "threshold", 0.5))
