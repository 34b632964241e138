"""Resuming a run: which checkpoint, which run folder, and what may differ from how it began.

Ours because: Lightning resumes the weights, optimiser, schedule, loops and data order
from a checkpoint, but it trains with whatever config the command line gives; a run's
own config.yaml is what says how it was trained, so a resume starts from that file, and
a value typed differently is refused, or (where it cannot change what the run learns)
recorded in a config file of its own beside the original.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from inference import ModelFileError

# Values a resumed run may change: how long it goes on, where files are, how it is shown.
CHANGEABLE = (
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.accelerator",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.root",
    "data.num_workers",
    "data.cache_dir",
    "data.download_dir",
)
IGNORED = ("config", "ckpt_path")  # how this command was typed, not how the run trains
_VERSION = re.compile(r"^version_(\d+)$")


@dataclass(frozen=True)
class Run:
    """What a resume continues: `checkpoint`, and the run folder it lies in (None outside one)."""

    checkpoint: Path
    folder: Path | None
    version: int | None

    @property
    def config_file(self) -> Path | None:
        """The config the run last trained with: its newest config.resume-<k>.yaml, else config.yaml.

        The newest, so a value an earlier resume changed (a longer max_epochs) holds until it is
        typed again; the values a resume may not change are config.yaml's in every one of them.
        """
        if self.folder is None:
            return None
        k = self._sessions()
        config = self.folder / (f"config.resume-{k}.yaml" if k else "config.yaml")
        return config if config.is_file() else None

    def next_config_file(self) -> Path:
        """config.resume-<k>.yaml: this session's full config, never over an earlier one."""
        return self.folder / f"config.resume-{self._sessions() + 1}.yaml"

    def _sessions(self) -> int:
        """How many resumes wrote their config: k of the newest config.resume-<k>.yaml, else 0."""
        k = 0
        while (self.folder / f"config.resume-{k + 1}.yaml").exists():
            k += 1
        return k


def claim_run_folder(runs: Path) -> Path:
    """A new runs/<name>/version_<n>, claimed by creating it.

    Lightning's loggers pick n by listing the folder, which two runs started together do at
    the same moment: both take version_0. mkdir either creates a folder or fails if it exists,
    atomically, so of two runs one gets version_<n> and the other moves on to the next n.
    """
    runs.mkdir(parents=True, exist_ok=True)
    taken = [int(match.group(1)) for folder in runs.iterdir() if (match := _VERSION.match(folder.name))]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (runs / f"version_{version}").mkdir()
            return runs / f"version_{version}"
        except FileExistsError:
            version += 1


def find_run(ckpt_path: str, runs: Path) -> Run:
    """`last` (the newest run in `runs`, runs/<name>), a run folder, or a checkpoint file."""
    if ckpt_path == "last":
        found = sorted(
            (int(match.group(1)), folder)
            for folder in runs.glob("version_*")
            if (match := _VERSION.match(folder.name)) and (folder / "checkpoints" / "last.ckpt").is_file()
        )
        if not found:
            raise ModelFileError(
                f"--ckpt_path last: no {runs}/version_*/checkpoints/last.ckpt to resume; train once "
                "without --ckpt_path, or pass a run folder or a checkpoint file"
            )
        ckpt_path = str(found[-1][1])
    path = Path(ckpt_path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ModelFileError(f"--ckpt_path {ckpt_path}: the folder has no checkpoints/last.ckpt")
    folder = path.parent.parent if path.parent.name == "checkpoints" else None
    match = _VERSION.match(folder.name) if folder is not None else None
    return Run(path, folder, int(match.group(1)) if match else None)


def config_changes(saved: dict, resumed: dict) -> dict[str, tuple[object, object]]:
    """{dotted key: (saved value, resumed value)} for every value that differs."""
    old, new = _flatten(saved), _flatten(resumed)
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and key not in IGNORED
    }


def refused_changes(changes: dict[str, tuple[object, object]], edited: dict[str, str]) -> str | None:
    """One line naming every change a resume may not make, with both values; None if all may.

    `edited`: {key: config file} for the changes an edited --config file makes, named as such.
    """
    refused = [
        (f"{key} {_short(new)} in {edited[key]}" if key in edited else f"--{key} {_short(new)}")
        + f" (the run has {_short(old)})"
        for key, (old, new) in changes.items()
        if not key.startswith(CHANGEABLE)
    ]
    if not refused:
        return None
    fix = "drop this option" if len(refused) == 1 else "drop these options"
    if any(" in " in item for item in refused):
        fix = "put the run's values back in the config file or drop the options"
    return (
        f"a resumed run keeps the config it was trained with; {', '.join(refused)}: {fix}, "
        "or start a new run without --ckpt_path"
    )


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
