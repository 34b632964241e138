"""What train.py adds to Lightning's own checkpoints and resume: atomic files, one line for a
full disk, last.ckpt at exit, a failed session's config removed, and the random state."""

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it and renames it into place.

    Ours because: Lightning's own save stages the file in the system's temp folder and then
    moves it; where that folder is another filesystem (often a tmpfs), the move is a copy onto
    the checkpoint itself, and a kill or a full disk during it leaves a truncated checkpoint.
    A rename within one folder is atomic: the old file stays whole until the new one is.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # "x": created new, umask's mode
        # One a killed process of the same PID left (a restarted container's PID is often the
        # same each time): nothing else writes this name, and "x" would refuse to open it.
        temporary.unlink(missing_ok=True)
        try:
            with open(temporary, "xb") as file:
                torch.save(checkpoint, file)
            # No fsync: it would double the cost of a save (~0.1 s for 25 MB on this class of
            # machine). A process that dies (Ctrl-C, kill -9, out of memory, a full disk) never
            # leaves a half-written checkpoint; for a power cut, ext4 (auto_da_alloc, its
            # default) flushes a file's data before a rename replaces an existing one.
            os.replace(temporary, path)
        except (OSError, RuntimeError) as error:
            # A full disk reaches us from torch.save as a RuntimeError raised while handling it.
            if not any(getattr(e, "errno", None) == errno.ENOSPC for e in (error, error.__context__)):
                raise
            raise DiskFull(path.parent, tensor_bytes(checkpoint)) from None
        finally:
            temporary.unlink(missing_ok=True)


class DiskFull(Exception):
    """No room for a checkpoint; str() is one line with the folder and the space it needs."""

    def __init__(self, folder: Path, needed: int) -> None:
        free = shutil.disk_usage(folder).free
        super().__init__(
            f"no space left in {folder}: a checkpoint needs about {needed / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB are free; free some space, then resume with --ckpt_path last"
        )


def tensor_bytes(value: Any) -> int:
    """The bytes of every tensor in a checkpoint: most of its size on disk."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        value = list(value.values())
    return sum(map(tensor_bytes, value)) if isinstance(value, (list, tuple)) else 0


class SaveLastAtExit(pl.Callback):
    """Write last.ckpt, the whole state, when training ends: finished, Ctrl-C or SIGTERM.

    Ours because: between these, Lightning's `last_checkpoint` ModelCheckpoint saves
    last.ckpt only once a minute (a save costs 10-15% of a small network's epoch), and
    Lightning's OnExceptionCheckpoint needs its folder before the run has one and deletes
    its file when a later run ends well. So `--ckpt_path last` goes on from exactly where
    a run stopped; only a hard kill loses the training since the last minute's save.
    After Ctrl-C Lightning exits with status 1; SIGTERM raises SIGTERMException, which
    train.py turns into 143 (128 + SIGTERM).
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        if interrupted and trainer.state.fn == "fit" and (path := self._save(trainer)):
            rank_zero_info(f"saved {path}; resume with --ckpt_path last")

    def _save(self, trainer: pl.Trainer) -> Path | None:
        if trainer.checkpoint_callback is None:  # --trainer.enable_checkpointing false
            return None
        path = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)  # on every rank: it synchronises them
        return path


class SaveSessionConfig(SaveConfigCallback):
    """Lightning's config saving; a resumed session's config.resume-<k>.yaml goes again if the
    session fails (a full disk, a bad photo folder), though not if it is interrupted.

    Ours because: the next resume takes the newest config.resume-<k>.yaml as the run's config,
    so a failed session's would pass on values the run never trained with, and the retry of
    the same command would then report "nothing changed".
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.path = Path(trainer.log_dir) / self.config_filename  # log_dir: every rank asks

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        interrupted = isinstance(exception, (KeyboardInterrupt, SIGTERMException))
        resumed = self.config_filename != "config.yaml"
        if resumed and not interrupted and trainer.is_global_zero and hasattr(self, "path"):
            self.path.unlink(missing_ok=True)


class ResumeRandomState(pl.Callback):
    """Carries the global torch RNG (dropout, random flips and crops, mixup) in every full
    checkpoint and puts it back when a resumed run starts training.

    Ours because: Lightning restores weights, optimiser, schedule, loops and the data order,
    not the RNG, so a resumed run would draw other dropout masks and flips than the run it
    continues, and end up elsewhere. Put last among the callbacks: others may draw from the
    RNG in their on_train_start (NetworkInsight reads its probe photos through a DataLoader).
    """

    def __init__(self) -> None:
        self.saved: dict[str, torch.Tensor] | None = None  # from the checkpoint, until training starts

    def state_dict(self) -> dict[str, Any]:
        state = {"torch_cpu_rng": torch.get_rng_state()}  # a uint8 tensor: loads with weights_only
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda_rng"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saved = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.saved is None:
            return
        torch.set_rng_state(self.saved["torch_cpu_rng"])
        if "torch_cuda_rng" in self.saved and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.saved["torch_cuda_rng"])
        self.saved = None
