"""Collects p_cat and labels of a validation or test epoch, for confusion matrices and PR curves.

It listens to the LightningModule's own forward (a forward hook), so the predictions are
the ones the metrics saw, at no extra forward pass.
"""

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle
from torchmetrics.utilities.distributed import gather_all_tensors


class PredictionRecorder:
    def __init__(self) -> None:
        self.recording = False
        self._handle: RemovableHandle | None = None
        self._logits: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._pending: Tensor | None = None  # the logits of the batch being evaluated

    def attach(self, pl_module: pl.LightningModule) -> None:
        if self._handle is None:
            self._handle = pl_module.register_forward_hook(self._on_forward)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def start(self) -> None:
        self.recording = True
        self._logits, self._labels, self._pending = [], [], None

    def add_labels(self, batch: tuple[Tensor, Tensor]) -> None:
        """Pairs the labels of `batch` with the logits its forward pass produced."""
        if self.recording and self._pending is not None:
            self._logits.append(self._pending)
            self._labels.append(batch[1].detach().reshape(-1))
        self._pending = None

    def finish(self, trainer: pl.Trainer) -> tuple[Tensor, Tensor] | None:
        """(p_cat, labels) of the epoch from every rank, or None when the sizes do not pair up.

        Every rank must call this: under DDP it gathers, and each rank holds its own shard.
        """
        self.recording = False
        if not self._logits:
            return None
        logits, labels = torch.cat(self._logits), torch.cat(self._labels)  # (N,), (N,)
        self._logits, self._labels = [], []
        if logits.shape != labels.shape:
            return None  # forward did not return one logit per image: nothing to pair
        if trainer.world_size > 1:
            # The ranks' shares of a split can differ by a photo (datasets.datamodule): the
            # torchmetrics gather pads each to the longest and trims it back.
            logits = torch.cat(gather_all_tensors(logits))  # (N over all ranks,)
            labels = torch.cat(gather_all_tensors(labels))
        return torch.sigmoid(logits.float()), labels.float()

    def _on_forward(self, module: torch.nn.Module, inputs: tuple, output: object) -> None:
        if self.recording and isinstance(output, Tensor):
            self._pending = output.detach().reshape(-1)  # (B,) logits z
