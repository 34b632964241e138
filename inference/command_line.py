"""What predict.py, explain.py and export.py share on the command line."""

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TextIO


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
