"""What predict.py, explain.py and export.py share on the command line."""

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

if TYPE_CHECKING:  # the scripts' --help need not wait for torch
    from inference.loading import ExportedModel
    from models import PCatModel


class ArgumentParser(argparse.ArgumentParser):
    """argparse, where a bad option is one line on stderr and exit status 2 (--help shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def probability(text: str) -> float:
    """argparse type for a p_cat threshold: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a p_cat: pass a number in [0, 1], e.g. 0.5")
    return value


def add_model_source(parser: argparse.ArgumentParser, ckpt_help: str) -> None:
    """--ckpt FILE or --pretrained NAME: exactly one (predict.py, explain.py and export.py)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", metavar="FILE", help=ckpt_help)
    source.add_argument(
        "--pretrained",
        metavar="NAME",
        help="trained weights that ship with the project, by name (python -c 'import models; "
        "print(models.list_models(pretrained=True))'), a folder written by save_pretrained "
        "(export.py --format hub), or a Hugging Face Hub repo id owner/name",
    )


def load_model_source(args: argparse.Namespace, needs_layers: str = "") -> "PCatModel | ExportedModel":
    """The model that --ckpt or --pretrained names, by the one loader (inference.load_model), which
    takes either; ModelFileError (one line) when there is none. With `needs_layers` (what the script
    does with them: "explain", "export"), an ONNX or TorchScript export, which hides them, is refused."""
    from inference.loading import EXPORT_NAMES, load_model
    from models import ModelFileError, PCatModel

    model = load_model(model_source(args))
    if needs_layers and not isinstance(model, PCatModel):
        raise ModelFileError(
            f"'{model_source(args)}' is {EXPORT_NAMES[model.kind]} export, which hides its layers; "
            f"{needs_layers} the checkpoint it came from"
        )
    return model


def model_source(args: argparse.Namespace) -> str:
    """What --ckpt or --pretrained named."""
    return args.ckpt if args.ckpt is not None else args.pretrained


@contextmanager
def output_file(path: Path | None) -> Iterator[TextIO]:
    """stdout, or `path` opened for writing, its folder created if it does not exist yet."""
    if path is None:
        yield sys.stdout
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        yield file


def run_cli(main: Callable[[], int]) -> int:
    """main(), where a reader that stops early (`| head`) ends the output quietly, as for any Unix tool."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again while flushing stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what the shell reports for a tool stopped this way
    return status
