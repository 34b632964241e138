"""Trained weights in the Hugging Face Hub's folder layout -> an eval-mode PCatModel.

A weights folder holds `config.json` (PCatModel's arguments, the project version and the
sha256 of the weights), `model.safetensors` (its state_dict) and a `README.md` model card:
what `PyTorchModelHubMixin.save_pretrained` writes (`inference.hub` does the writing and
the pushing). Reading it needs only torch, safetensors and json, never unpickling, so
`create_model(name, pretrained=True)` works without Lightning and without importing
huggingface_hub, which is imported only to fetch a Hub repo id.

The zoo's own folders are `weights/<name>/`; `weights/SHA256SUMS` (the format of
`sha256sum`, so `cd weights && sha256sum -c SHA256SUMS` checks it too) records every file
of every shipped folder. Each folder's config.json also records its weights' sha256, so a
folder copied anywhere, or pulled from the Hub, is still checked.
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from models.pcat_model import PCatModel
from models.registry import ModelConfigError

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
INDEX_NAME = "SHA256SUMS"
WEIGHTS_FORMAT = 1  # the config.json layout below; bump when older code would misread a folder
WEIGHTS_ENV = "CATSDOGS_WEIGHTS"  # another folder of shipped weights than the repository's weights/
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # a Hub repo id: owner/name
# safetensors' names of the dtypes a network can hold (its header names them, the data is not read).
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
DTYPES |= {"I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
# PCatModel's own arguments; every other key of config.json is metadata.
MODEL_ARGUMENTS = ("network", "network_kwargs", "image_size", "input_norm", "tta_flip", "threshold")


class ModelFileError(Exception):
    """A file or folder that cannot be used as a model; str() is one line: what it is, what to do."""


def weights_dir() -> Path:
    """The folder of shipped weights: $CATSDOGS_WEIGHTS, else the repository's weights/."""
    return Path(os.environ.get(WEIGHTS_ENV) or Path(__file__).resolve().parents[1] / "weights")


def list_pretrained() -> list[str]:
    """Names that ship: the folders of weights_dir() that hold a config.json."""
    folder = weights_dir()
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if is_weights_folder(entry))


def is_weights_folder(entry: Path) -> bool:
    # A hidden folder is one being written (publish_weights.py's .<name>.new), never shipped.
    return not entry.name.startswith(".") and (entry / CONFIG_NAME).is_file()


def load_pretrained(
    name_or_path: str | os.PathLike, revision: str | None = None, **hub_options: Any
) -> PCatModel:
    """A weights folder, a shipped name (`mlp_article`) or a Hub repo id (`owner/name`).

    `create_model(name, pretrained=True)` comes here; `inference.load_model` takes these
    and checkpoints and exports too. Every file is checked against its recorded sha256
    before anything is read from it. `revision` and `hub_options` (cache_dir, token,
    local_files_only, force_download) are huggingface_hub.snapshot_download's, for a repo id.
    """
    text = os.fspath(name_or_path)
    if Path(text).is_dir():
        return load_folder(Path(text))
    if text in list_pretrained():
        index = read_index(weights_dir())
        return load_folder(weights_dir() / text, index_entries(index, text))
    if REPO_ID.match(text) and not text.startswith("."):
        return load_folder(download(text, revision, **hub_options))
    shipped = ", ".join(list_pretrained()) or f"none yet in {weights_dir()}"
    raise ModelConfigError(
        f"unknown pretrained model '{text}'; shipped: {shipped} (or pass a folder written by "
        "save_pretrained, or a Hugging Face Hub repo id owner/name)"
    )


def load_folder(folder: Path, expected: dict[str, str] | None = None) -> PCatModel:
    """The PCatModel in a weights folder, in eval mode.

    `expected` maps file names to sha256 (weights/SHA256SUMS for a shipped folder); the
    weights are always checked against the sha256 in config.json.
    """
    for name, digest in (expected or {}).items():
        check_sha256(folder / name, digest, f"{INDEX_NAME} records")
    config = read_config(folder)
    check_sha256(folder / WEIGHTS_NAME, config["model_sha256"], f"its {CONFIG_NAME} records")
    arguments = {key: config[key] for key in MODEL_ARGUMENTS if key in config}
    return build_model(arguments, folder / WEIGHTS_NAME, folder)


def build_model(config: dict, weights: Path | dict[str, Tensor], source: str | os.PathLike) -> PCatModel:
    """PCatModel(**config) holding `weights` (a safetensors file or a state_dict), in eval mode.

    The one place a trained model is put together. The network is first built on the meta
    device, which allocates nothing, and every parameter's and buffer's shape and dtype is
    compared with the weights' (for a safetensors file, with its header alone): a config
    that asks for a network the weights do not hold is refused in one line before a byte is
    allocated for it. The weights' own tensors then become the model's (`assign=True`), so
    they load byte for byte and no random initialisation is computed.
    """
    try:
        with torch.device("meta"):
            model = PCatModel(**config)
    except (TypeError, ValueError) as error:  # ModelConfigError is a ValueError
        raise ModelFileError(
            f"'{source}' does not match this version's models: {first_line(error)}"
        ) from None
    needed = {name: (tuple(t.shape), t.dtype) for name, t in model.state_dict().items()}
    if isinstance(weights, dict):
        found = {  # a checkpoint's state_dict holds tensors, unless it was made by hand
            name: (tuple(t.shape), t.dtype) if isinstance(t, Tensor) else ((), type(t).__name__)
            for name, t in weights.items()
        }
        _check(needed, found, source)
        state = weights
    else:
        try:
            with safe_open(str(weights), framework="pt") as file:
                header = {name: file.get_slice(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
                found = {
                    k: (tuple(s.get_shape()), DTYPES.get(s.get_dtype(), s.get_dtype()))
                    for k, s in header.items()
                }
                _check(needed, found, source)
                state = {name: file.get_tensor(name) for name in header}
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"'{weights}' is a damaged safetensors file ({error})") from None
    model.load_state_dict(state, assign=True)
    return model.eval()


def _check(needed: dict[str, tuple], found: dict[str, tuple], source: str | os.PathLike) -> None:
    """Refuse, in one line, the tensors whose name, shape or dtype the network and weights disagree on."""
    differences = [
        f"{name} is {list(found[name][0])} {found[name][1]} in the weights but {list(shape)} {dtype} in the "
        "network its config describes"
        for name, (shape, dtype) in needed.items()
        if name in found and found[name] != (shape, dtype)
    ]
    differences += [f"the weights lack {name}" for name in sorted(needed.keys() - found.keys())]
    differences += [f"the network has no {name}" for name in sorted(found.keys() - needed.keys())]
    if differences:
        raise ModelFileError(
            f"'{source}' does not match this version's models: {differences[0]}"
            + (f" (and {len(differences) - 1} more)" if len(differences) > 1 else "")
            + "; the config and the weights are not one model: get them again"
        )


def first_line(error: BaseException, limit: int | None = 160) -> str:
    """An error's message cut to its first line (and to `limit` characters), for one-line reports."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def read_config(folder: Path) -> dict:
    """config.json of a weights folder, checked for what load_folder needs."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ModelFileError(
            f"'{folder}' has no {CONFIG_NAME}: not a weights folder (write one with save_pretrained, "
            "`python export.py --format hub`)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise ModelFileError(f"'{path}' is not readable JSON ({error}); get the folder again") from None
    if not isinstance(config, dict) or "model_sha256" not in config:
        raise ModelFileError(
            f"'{path}' records no model_sha256: it was not written by this project's save_pretrained"
        )
    if config.get("weights_format") != WEIGHTS_FORMAT:
        raise ModelFileError(
            f"'{path}' is weights format {config.get('weights_format')} (catsdogs-zoo "
            f"{config.get('project_version', '?')}); this version reads format {WEIGHTS_FORMAT}"
        )
    return config


def check_sha256(path: Path, expected: str, recorded_by: str) -> None:
    if not path.is_file():
        raise ModelFileError(f"'{path}' is missing; get the weights folder again")
    if file_sha256(path) != expected:
        raise ModelFileError(
            f"'{path}' ({path.stat().st_size:,} bytes) does not match the sha256 {recorded_by}: it is "
            "truncated or changed; get it again (a clone: `git lfs pull` or `git checkout -- weights/`)"
        )


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB blocks so an 800 MB archive never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_index(folder: Path) -> dict[str, str]:
    """weights/SHA256SUMS as {"<name>/<file>": sha256}; absent means nothing is recorded."""
    path = folder / INDEX_NAME
    if not path.is_file():
        return {}
    index = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            index[name.lstrip("*")] = digest  # sha256sum marks binary mode with a leading *
    return index


def index_entries(index: dict[str, str], name: str) -> dict[str, str]:
    """The files of one shipped folder in the index; a folder missing from it is refused."""
    prefix = f"{name}/"
    entries = {key.removeprefix(prefix): digest for key, digest in index.items() if key.startswith(prefix)}
    if WEIGHTS_NAME not in entries:
        raise ModelFileError(
            f"'{weights_dir() / name}' is not recorded in {weights_dir() / INDEX_NAME}: "
            "publish it with benchmarks/publish_weights.py"
        )
    return entries


def write_index(folder: Path) -> Path:
    """Record the sha256 of every file of every weights folder in `folder`/SHA256SUMS."""
    lines = [
        f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}"
        for entry in sorted(folder.iterdir())
        if is_weights_folder(entry)
        for path in sorted(entry.iterdir())
        if path.is_file()
    ]
    index = folder / INDEX_NAME
    index.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return index


def download(repo_id: str, revision: str | None = None, **hub_options: Any) -> Path:
    """A Hub repo's weights folder, from huggingface_hub's cache or the Hub; one line when it cannot."""
    # Imported here: it costs ~0.3 s, and only a repo id needs it.
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    files = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=files, **hub_options))
    except EntryNotFoundError:  # LocalEntryNotFoundError: offline or unreachable, and not in the cache
        offline = " (offline: HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise ModelFileError(
            f"could not reach the Hugging Face Hub for '{repo_id}'{offline} and it is not in the local "
            "cache; connect and retry, or pass a local folder"
        ) from None
    except HfHubHTTPError as error:  # the Hub answered: no such repo, gated, no such revision
        raise ModelFileError(f"the Hugging Face Hub has no usable '{repo_id}': {first_line(error)}") from None
