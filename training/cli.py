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
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from datasets.datamodule import CatsDogsDataModule
from inference import read_checkpoint
from models import ModelConfigError
from models.classifier import CatsDogsClassifier
from models.pretrained import first_line
from training.checkpointing import AtomicCheckpointIO, ResumeRandomState, SaveLastAtExit, SaveSessionConfig
from training.network_insight import NetworkInsight
from training.precision import choose_precision
from training.resume import claim_run_folder, config_changes, find_run, refused_changes

DEFAULTS = Path(__file__).resolve().parent.parent / "configs" / "defaults.yaml"


class ConfigError(Exception):
    """A config or command-line value that cannot be used; str() is one line."""


class CatsDogsCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None) -> None:
        self.resume_note: str | None = None
        self.run_folder: Path | None = None  # runs/<name>/version_<n>: resumed, or claimed for a new run
        try:
            super().__init__(
                CatsDogsClassifier,
                CatsDogsDataModule,
                run=False,
                args=args,
                save_config_callback=SaveSessionConfig,
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
            raise ConfigError(first_line(error, limit=None).replace("`", "")) from None

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
        run = find_run(ckpt_path, self.runs_folder())
        checkpoint = read_checkpoint(run.checkpoint)  # one line for anything that is not a checkpoint
        if "optimizer_states" not in checkpoint:
            raise ConfigError(
                f"--ckpt_path {run.checkpoint} holds the weights only (for testing and predicting), "
                "not a run's whole state; resume from the run folder or its checkpoints/last.ckpt"
            )
        self.config.ckpt_path = str(run.checkpoint)
        if run.config_file is None:
            return  # a checkpoint from elsewhere: it continues with the config given here
        if run.version is not None:
            self.run_folder = run.folder  # same folder, same TensorBoard run
        typed = drop_config_option(sys.argv[1:] if args is None else list(args))
        # A --config file saved after the run's own config has been edited since the run began:
        # its values count as typed. An older one is how the run began, typed options and all.
        edited = [
            str(file)
            for file in self.config.get("config") or []
            if Path(str(file)).stat().st_mtime_ns > run.config_file.stat().st_mtime_ns
        ]
        saved = parser.parse_args(["--config", str(run.config_file)])
        as_typed = parser.parse_args(["--config", str(run.config_file), *typed])
        resumed = as_typed
        if edited:
            edits = [option for file in edited for option in ("--config", file)]
            resumed = parser.parse_args(["--config", str(run.config_file), *edits, *typed])
        changes = config_changes(saved.as_dict(), resumed.as_dict())
        from_file = set(changes) - set(config_changes(saved.as_dict(), as_typed.as_dict()))
        if refused := refused_changes(changes, {key: edited[-1] for key in from_file}):
            raise ConfigError(refused)
        if "trainer.accelerator" in changes:
            # The run's precision was chosen for the chip it trained on (training.precision): a
            # GPU run resumed on a CPU would keep bf16-mixed, which an AVX2 CPU only emulates.
            resumed["trainer.precision"] = choose_precision(str(resumed.get("trainer.accelerator")))
            changes = config_changes(saved.as_dict(), resumed.as_dict())
        resumed.ckpt_path = str(run.checkpoint)
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

    def runs_folder(self) -> Path:
        """runs/<name>, where this config's version_<n> folders are, with or without a logger."""
        logger_args = self.config.get("trainer.logger.init_args")
        if logger_args is not None and "save_dir" in logger_args:
            return Path(logger_args.get("save_dir") or "runs") / (logger_args.get("name") or "")
        # --trainer.logger false: the config file's name, which is every zoo config's run name.
        files = self.config.get("config") or []
        return Path("runs") / (Path(str(files[-1])).stem if files else "default")

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
        # The run folder is claimed only now, after the model and data have refused any bad
        # value, so a refused run leaves none behind; on DDP's other ranks Lightning broadcasts
        # rank 0's folder to everything that writes. Another kind of logger keeps its own rules.
        logger = trainer.get("logger")
        ours = logger in (False, None) or hasattr(logger, "root_dir")  # TensorBoard's, CSV's
        if ours and self.run_folder is None and rank_zero_only.rank == 0:
            self.run_folder = claim_run_folder(self.runs_folder())
        if self.run_folder is not None and logger in (False, None):
            kwargs["default_root_dir"] = str(self.run_folder)  # config.yaml and checkpoints/ go there
        elif self.run_folder is not None and hasattr(logger, "root_dir"):
            # Built by the parser before the folder was claimed: again, for the claimed version.
            version = int(self.run_folder.name.removeprefix("version_"))
            init_args = self.config["trainer.logger.init_args"].as_dict()
            kwargs["logger"] = type(logger)(**{**init_args, "version": version})
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
