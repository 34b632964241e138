"""train.py's command line: LightningCLI over the classifier and the datamodule.

configs/defaults.yaml holds what every run shares; a zoo config says only what differs,
and `--print_config` shows the whole. Always present, and configured under their own
keys: `checkpoint` (Lightning's ModelCheckpoint: best.ckpt by val/acc), `last_checkpoint`
(a second one: last.ckpt, the whole state, once a minute and when training ends) and
`insight` (NetworkInsight, the TensorBoard pictures). `--ckpt_path` resumes a run from its
own config (training/resume.py).
"""

import difflib
import re
import sys
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datasets.datamodule import CatsDogsDataModule
from inference import read_checkpoint
from models import ModelConfigError
from models.classifier import CatsDogsClassifier
from training.checkpointing import AtomicCheckpointIO, ResumeRandomState, SaveLastAtExit
from training.network_insight import NetworkInsight
from training.precision import choose_precision
from training.resume import config_changes, find_run, refused_changes

DEFAULTS = Path(__file__).resolve().parent.parent / "configs" / "defaults.yaml"


class ConfigError(Exception):
    """A config or command-line value that cannot be used; str() is one line."""


class CatsDogsCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None) -> None:
        self.resume_note: str | None = None
        try:
            super().__init__(
                CatsDogsClassifier,
                CatsDogsDataModule,
                run=False,
                args=args,
                auto_configure_optimizers=False,  # the classifier's configure_optimizers decides
                # exit_on_error False: a bad option raises, and train.py prints one line for it
                # instead of the whole usage (which --help prints); allow_abbrev False: a key is
                # typed in full or refused, never taken for the one it is the start of.
                parser_kwargs={
                    "default_config_files": [str(DEFAULTS)],
                    "exit_on_error": False,
                    "allow_abbrev": False,
                },
            )
        except ArgumentError as error:
            raise ConfigError(one_line(error, self.parser)) from None
        except (MisconfigurationException, ValueError) as error:
            if isinstance(error, ModelConfigError):
                raise
            # A value a callback or the Trainer refuses when it is built (e.g. checkpoint.mode).
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ConfigError(first_line.replace("`", "")) from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.image_size", "model.image_size")  # a fact of the data, typed once
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", instantiate=True, fail_untyped=False)
        parser.add_class_arguments(ModelCheckpoint, "last_checkpoint", instantiate=True, fail_untyped=False)
        parser.add_class_arguments(NetworkInsight, "insight", instantiate=True)
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume a run: `last` (the newest run of this config), a run folder "
            "(runs/<name>/version_<n>) or a checkpoint file; the run's own config.yaml is used",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        ckpt_path = self.config.get("ckpt_path")
        if not ckpt_path:
            return
        logger = self.config.get("trainer.logger")
        logger_args = logger.get("init_args") if hasattr(logger, "get") else None
        run = find_run(
            ckpt_path, *(logger_args.get(k) for k in ("save_dir", "name")) if logger_args else (None, None)
        )
        checkpoint = read_checkpoint(run.checkpoint)  # one line for anything that is not a checkpoint
        if "optimizer_states" not in checkpoint:
            raise ConfigError(
                f"--ckpt_path {run.checkpoint} holds the weights only (for testing and predicting), "
                "not a run's whole state; resume from the run folder or its checkpoints/last.ckpt"
            )
        self.config.ckpt_path = str(run.checkpoint)
        if run.config_file is None:
            return  # a checkpoint from elsewhere: it continues with the config given here
        typed = drop_config_option(sys.argv[1:] if args is None else list(args))
        saved = parser.parse_args(["--config", str(run.config_file)])
        resumed = parser.parse_args(["--config", str(run.config_file), *typed])
        changes = config_changes(saved.as_dict(), resumed.as_dict())
        if refused := refused_changes(changes):
            raise ConfigError(refused)
        resumed.ckpt_path = str(run.checkpoint)
        if run.version is not None and resumed.get("trainer.logger.init_args") is not None:
            resumed["trainer.logger.init_args.version"] = run.version  # same folder, same TensorBoard run
        self.config = resumed
        session_config = run.next_config_file()
        self.save_config_kwargs["config_filename"] = session_config.name  # config.yaml stays as it was
        changed = (
            "; ".join(f"{key} {old} -> {new}" for key, (old, new) in changes.items()) or "nothing changed"
        )
        self.resume_note = (
            f"resuming {run.folder} from {run.checkpoint.name} (step {checkpoint.get('global_step')}): "
            f"{changed}; this session's config: {session_config}"
        )

    def before_instantiate_classes(self) -> None:
        if self.resume_note:
            rank_zero_info(self.resume_note)
        if self.config.get("trainer.precision") is None:
            precision = choose_precision(str(self.config.get("trainer.accelerator")))
            self.config["trainer.precision"] = precision
            rank_zero_info(f"trainer.precision: {precision}, what pays on this machine (training.precision)")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = self.config_init["trainer"]
        # SaveLastAtExit first: its on_train_end saves before a callback such as
        # EMAWeightAveraging replaces the raw weights with their average in its own.
        callbacks = [SaveLastAtExit(), *(trainer.get("callbacks") or [])]
        # Options win over the always-present callbacks that contradict them, instead of
        # Lightning refusing the combination.
        if trainer.get("enable_checkpointing") is not False:
            callbacks += [self.config_init["checkpoint"], self.config_init["last_checkpoint"]]
        if trainer.get("logger") not in (False, None):
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        callbacks += [self.config_init["insight"], ResumeRandomState()]
        plugins = list(trainer.get("plugins") or [])
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(callbacks=callbacks, plugins=plugins, **kwargs)


def drop_config_option(args: list[str]) -> list[str]:
    """The command line without its --config FILE (a resumed run reads its own config.yaml)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--config", "-c"):
            skip = True
        elif not arg.startswith("--config="):
            kept.append(arg)
    return kept


def one_line(error: ArgumentError, parser: LightningArgumentParser) -> str:
    """jsonargparse's message in one line, with the closest known key for a mistyped one."""
    message = " ".join(str(error).split())
    unknown = re.search(
        r"unrecognized arguments: --([\w.]+)|does not accept option '(\w+)'|No action for key \"([\w.]+)\"",
        message,
    )
    if unknown:
        typo = next(group for group in unknown.groups() if group)
        keys = list(parser.get_defaults().keys())
        if "." not in typo:  # "Group 'model' does not accept option 'widht'"
            group = re.search(r"Group '([\w.]+)'", message)
            typo = f"{group.group(1)}.{typo}" if group else typo
        close = difflib.get_close_matches(typo, keys, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; python train.py --help lists the keys"
        return f"unknown key {typo}{hint}"
    return message + " (python train.py --help lists every key and its type)"
