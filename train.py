"""Train a zoo model on cats vs dogs, test its best checkpoint, and say where everything is.

    python train.py --config configs/mlp_article.yaml [--trainer.max_epochs 3] [--model.lr 1e-3]

Every option is a LightningCLI option: `--help`, `--print_config`, dotted overrides.
"""

import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from datasets import CatsDogsDataModule, DataError
from models.checkpoint import CheckpointError
from models.classifier import CatsDogsClassifier
from models.registry import ModelConfigError

# The training data is a memory-mapped uint8 array already in RAM: worker processes
# would only compete with the matrix multiplications for the same cores.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


class CatsDogsCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The model's input size is a fact of the data: typed once, under data.
        parser.link_arguments("data.image_size", "model.image_size")
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume training from this checkpoint file",
        )


def main(args: list[str] | None = None) -> int:
    try:
        cli = CatsDogsCLI(
            CatsDogsClassifier,
            CatsDogsDataModule,
            run=False,
            save_config_kwargs={"overwrite": True},
            args=args,
        )
    except (DataError, ModelConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    try:
        trainer.fit(model, datamodule=data, ckpt_path=cli.config.get("ckpt_path"), weights_only=True)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint else ""
        results = trainer.test(model, datamodule=data, ckpt_path=best or None, weights_only=True)
    except (DataError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if trainer.is_global_zero:
        print(data.summary())
        print(summary(trainer, results[0] if results else {}, best))
    return 0


def summary(trainer, test_metrics: dict[str, float], best_path: str) -> str:
    checkpoint = trainer.checkpoint_callback
    run_dir = Path(trainer.log_dir) if trainer.log_dir else Path(best_path).parent.parent
    logdir = Path(trainer.logger.save_dir) if trainer.logger else run_dir
    lines = ["", "Training finished."]
    if test_metrics:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(test_metrics.items()))
        lines.append(f"  test:            {shown}")
    lines.append(f"  run folder:      {run_dir}")
    if best_path:
        score = checkpoint.best_model_score
        monitor = f" ({checkpoint.monitor} {float(score):.4f})" if score is not None else ""
        lines.append(f"  best checkpoint: {best_path}{monitor}")
        lines.append(f"  predict:         python predict.py --ckpt {best_path} PHOTO_OR_FOLDER")
    lines.append(f"  view it:         tensorboard --logdir {logdir}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
