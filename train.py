"""Train a zoo network on cats vs dogs, test its best checkpoint, and say where everything is.

    python train.py --config configs/mlp_article.yaml [--data.root DIR] [--trainer.max_epochs 3]
    python train.py --config configs/mlp_article.yaml --ckpt_path last   # resume the newest run

Every option is a LightningCLI option: `--help`, `--print_config`, dotted overrides.
Ctrl-C or SIGTERM saves last.ckpt and exits non-zero; `--ckpt_path last` goes on from it.
"""

import errno
import logging
import os
import shutil
import signal
import sys
import warnings

import torch.distributed
from lightning.pytorch.utilities.exceptions import SIGTERMException

from datasets import DataError
from inference import ModelFileError
from models import ModelConfigError
from models.classifier import TrainingDiverged
from training.checkpointing import DiskFull
from training.cli import CatsDogsCLI, ConfigError

USER_ERRORS = (ConfigError, DataError, DiskFull, ModelConfigError, ModelFileError)


class HideAdvert(logging.Filter):
    """Lightning prints a tip about its cloud logger at every start; this project logs locally."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def main(args: list[str] | None = None) -> int:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(HideAdvert())
    # Two notices from below this project, true of torch and Lightning, not of a run: TensorBoard
    # draws the model graph with torch.jit.trace (deprecated, still right), and Lightning 2.6
    # uses a torch pytree check that torch 2.14 deprecates.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        cli = CatsDogsCLI(args)
        trainer, model, data = cli.trainer, cli.model, cli.datamodule
        trainer.fit(model, datamodule=data, ckpt_path=cli.config.get("ckpt_path"), weights_only=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(model, datamodule=data, ckpt_path=best or None, weights_only=True)
        run_dir = trainer.log_dir  # under DDP a broadcast from rank 0: every rank asks, before the group goes
    except USER_ERRORS as error:
        return fail(error)
    except TrainingDiverged as error:
        return fail(error, status=3)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        return fail(disk_full(error))
    except SIGTERMException:
        return 128 + signal.SIGTERM  # last.ckpt is saved (training.checkpointing.SaveLastAtExit)
    finally:
        # Lightning leaves a gloo process group to interpreter shutdown, which sometimes
        # aborts a finished run; every rank gets here, so destroying it now is safe.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if trainer.is_global_zero:
        print(data.summary())
        print(summary(trainer, results[0] if results else {}, best, run_dir))
    return 0


def fail(error: Exception, status: int = 2) -> int:
    print(f"error: {error}", file=sys.stderr)
    return status


def disk_full(error: OSError) -> str:
    """A full disk anywhere but a checkpoint (TensorBoard events, the photo cache), in one line."""
    folder = os.path.dirname(os.path.abspath(error.filename)) if error.filename else os.getcwd()
    free = shutil.disk_usage(folder).free if os.path.isdir(folder) else 0
    return (
        f"no space left in {folder} ({free / 1e6:.0f} MB free); free some space, then run the "
        "same command again (add --ckpt_path last if training had begun)"
    )


def summary(trainer, test_metrics: dict[str, float], best_path: str, run_dir: str | None) -> str:
    lines = ["", "Training finished."]
    if test_metrics:
        lines.append(
            "  test:            " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))
        )
    if run_dir:
        lines.append(f"  run folder:      {run_dir}")
    if best_path:
        score = trainer.checkpoint_callback.best_model_score
        lines.append(
            f"  best checkpoint: {best_path}"
            + (f" (val/acc {float(score):.4f})" if score is not None else "")
        )
        lines.append(f"  predict:         python predict.py --ckpt {best_path} PHOTO_OR_FOLDER")
    if getattr(trainer.logger, "save_dir", None):
        lines.append(f"  view it:         tensorboard --logdir {trainer.logger.save_dir}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
