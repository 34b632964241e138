"""Train a zoo model on cats vs dogs, test its best checkpoint, and say where everything is.

    python train.py --config configs/mlp_article.yaml [--trainer.max_epochs 3] [--model.lr 1e-3]
    python train.py --config configs/mlp_article.yaml --ckpt_path last   # resume the latest run

Every option is a LightningCLI option: `--help`, `--print_config`, dotted overrides.
Ctrl-C or SIGTERM saves `last.ckpt` after the batch in flight and exits with 128 + the
signal number; `--ckpt_path last` then continues in the same run folder.
"""

import errno
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import torch.distributed
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from datasets import CatsDogsDataModule, DataError
from models.checkpoint import CheckpointError, read_checkpoint
from models.classifier import CatsDogsClassifier
from models.registry import ModelConfigError
from training import (
    AtomicCheckpointIO,
    KeepLastCheckpointCurrent,
    MarkResumeInTensorBoard,
    RestoreMonitoredMetrics,
    RestoreRNG,
    SaveOnInterrupt,
    StopOnNonFiniteLoss,
    TrainingDiverged,
    TrainingInterrupted,
    find_last_checkpoint,
    run_version,
)
from training.cpu_precision import emulated_bf16_warning

# The training data is a memory-mapped uint8 array already in RAM: worker processes
# would only compete with the matrix multiplications for the same cores.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")

USER_ERRORS = (DataError, ModelConfigError, CheckpointError)
PROGRESS_BAR_REFRESH_STEPS = 10  # train.py's progress bar redraws every this many steps


class CatsDogsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model's input size is a fact of the data: typed once, under data.
        parser.link_arguments("data.image_size", "model.image_size")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume training: a checkpoint file, or `last` for the latest run of this config "
            "(<logger save_dir>/<name>/version_<n>/checkpoints/last.ckpt, continued in the same folder)",
        )

    def before_instantiate_classes(self) -> None:
        # Checked before anything is built or any data is read, so a bad path fails in seconds.
        ckpt_path = self.config.get("ckpt_path")
        if not ckpt_path:
            return
        logger = _tensorboard_logger_args(self.config.trainer.get("logger"))
        if ckpt_path == "last":
            if logger is None:
                raise CheckpointError("--ckpt_path last needs a trainer.logger with save_dir and name")
            path, version = find_last_checkpoint(logger.save_dir, logger.name)
        else:
            path = Path(ckpt_path)
            version = run_version(path, logger.save_dir, logger.name) if logger is not None else None
        read_checkpoint(path)  # safe load: refuses code, truncation, foreign or newer-format files
        self.config["ckpt_path"] = str(path)
        if version is not None:
            logger.version = version  # same run folder, same TensorBoard run

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # The safety pieces are not optional: added unless the config already has its own.
        config = self._get(self.config_init, "trainer", default={})
        plugins = _as_list(config.get("plugins"))
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        callbacks = _as_list(config.get("callbacks"))
        if config.get("logger") is False:
            # LearningRateMonitor refuses to run without a logger; with logging off it has no job.
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        if config.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            # Lightning's default bar redraws after every step (~0.5 ms of a ~34 ms step of the
            # article MLP on 2 cores); every 10 steps still moves several times a second.
            callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_STEPS))
        for required in (
            SaveOnInterrupt,
            StopOnNonFiniteLoss,
            RestoreRNG,
            RestoreMonitoredMetrics,
            MarkResumeInTensorBoard,
            KeepLastCheckpointCurrent,
        ):
            if not any(isinstance(callback, required) for callback in callbacks):
                callbacks.append(required())
        trainer = super().instantiate_trainer(**{"plugins": plugins, "callbacks": callbacks, **kwargs})
        advice = emulated_bf16_warning(trainer.precision, isinstance(trainer.accelerator, CPUAccelerator))
        if advice:
            rank_zero_warn(advice)
        return trainer


def main(args: list[str] | None = None) -> int:
    try:
        cli = CatsDogsCLI(
            CatsDogsClassifier,
            CatsDogsDataModule,
            run=False,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except USER_ERRORS as error:
        return fail(error)
    try:
        return fit_and_test(cli)
    finally:
        release_process_group()


def fit_and_test(cli: CatsDogsCLI) -> int:
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cli.config.get("ckpt_path"), weights_only=True)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint else ""
        results = trainer.test(model, datamodule=data, ckpt_path=best or None, weights_only=True)
    except USER_ERRORS as error:
        return fail(error)
    except TrainingInterrupted as stop:
        print(f"{signal.Signals(stop.signum).name.lower()}: {stop}", file=sys.stderr)
        return 128 + stop.signum  # the shell's convention for "ended by signal N"
    except TrainingDiverged as error:
        return fail(error, status=3)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # Checkpoints and the cache are written to a temporary name and renamed when whole,
        # so what is on disk is the previous, complete state.
        return fail(f"disk full while writing {error.filename or 'a file'}; files on disk are intact")
    run_dir = trainer.log_dir  # under DDP a broadcast from rank 0: every rank must ask, not rank 0 alone
    if trainer.is_global_zero:
        print(data.summary())
        print(summary(trainer, results[0] if results else {}, best, run_dir))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank tears down the group while another still uses it
    return 0


def release_process_group() -> None:
    """Destroy the DDP process group now, not during interpreter shutdown.

    Lightning only destroys NCCL groups at exit; a gloo group left to the interpreter's
    teardown sometimes aborts the process (`terminate called without an active exception`,
    exit -6) after a run has finished and saved everything.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def fail(error: Exception | str, status: int = 2) -> int:
    print(f"error: {error}", file=sys.stderr)
    return status


def summary(trainer, test_metrics: dict[str, float], best_path: str, run_dir: str | None) -> str:
    checkpoint = trainer.checkpoint_callback
    lines = ["", "Training finished."]
    if test_metrics:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))
        lines.append(f"  test:            {shown}")
    if run_dir:
        lines.append(f"  run folder:      {run_dir}")
    if best_path:
        score = checkpoint.best_model_score
        monitor = f" ({checkpoint.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"  best checkpoint: {best_path}{monitor}")
        lines.append(f"  predict:         python predict.py --ckpt {best_path} PHOTO_OR_FOLDER")
    save_dir = getattr(trainer.logger, "save_dir", None)  # None without a logger or in fast_dev_run
    if save_dir:
        lines.append(f"  view it:         tensorboard --logdir {save_dir}")
    return "\n".join(lines)


def _tensorboard_logger_args(logger: Any) -> Any:
    """init_args of the first configured logger that has save_dir and name, else None."""
    for entry in _as_list(logger):
        init_args = getattr(entry, "init_args", None)
        if init_args is not None and init_args.get("save_dir") and init_args.get("name"):
            return init_args
    return None


def _as_list(value: Any) -> list:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


if __name__ == "__main__":
    sys.exit(main())
