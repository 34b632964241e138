"""The one loader: any trained model -> a model that maps uint8 photos (B, 3, S, S) to p_cat (B,).

`load_model` takes a train.py checkpoint, an export.py file, a weights folder, a shipped
name or a Hub repo id; it is what predict.py, explain.py and export.py run for `--ckpt`
and `--pretrained` alike. Checkpoints, safetensors files and weights folders become a
`PCatModel` (plain torch, eval mode, every layer inspectable), built by
`models.pretrained.build_model` only once the weights are checked to be the network's;
ONNX and TorchScript exports become an `ExportedModel` that only predicts. Nothing here
unpickles code: checkpoints load with `weights_only=True`, safetensors files are tensors
plus JSON. What is none of these is named for what it is, in one line (`ModelFileError`).
"""

import json
import os
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from models import CHECKPOINT_FORMAT, PROJECT_VERSION, ModelConfigError, ModelFileError, PCatModel, class_name
from models.pretrained import build_model, first_line, load_pretrained

EXPORT_FORMAT = 2  # the metadata layout export.py writes into every exported file
TORCHSCRIPT_METADATA = "catsdogs.json"  # the TorchScript archive's extra file holding the metadata


class ExportedModel:
    """An ONNX or TorchScript export: `model(images)` -> p_cat, no layers to look into."""

    def __init__(self, path: Path, kind: str, config: dict, run: Callable[[Tensor], Tensor]) -> None:
        self.path, self.kind, self.config, self._run = path, kind, config, run
        self.image_size, self.threshold = int(config["image_size"]), float(config["threshold"])

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 photos (B, 3, S, S), S = image_size -> p_cat (B,) float32."""
        expected = (3, self.image_size, self.image_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"expected uint8 photos (B, 3, {self.image_size}, {self.image_size}), got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        return self._run(images.cpu().contiguous())

    def label(self, p_cat: float) -> str:
        return class_name(p_cat, self.threshold)


def load_model(
    source: str | os.PathLike, revision: str | None = None, **hub_options: Any
) -> PCatModel | ExportedModel:
    """The trained model `source` names, in eval mode: a train.py checkpoint or an export.py
    file; else a weights folder, a shipped name or a Hub repo id (`models.load_pretrained`,
    which `revision` and `hub_options` are for)."""
    path = Path(source)
    if path.is_file() or path.suffix in MODEL_SUFFIXES:  # a file, or one that file_kind says is missing
        kind = file_kind(path)
        if kind == "checkpoint":
            checkpoint = read_checkpoint(path)
            prefix = "model."  # CatsDogsClassifier keeps its PCatModel as self.model
            state = {
                k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
            }
            return build_model(checkpoint["catsdogs"]["model_config"], state, path)
        if kind == "safetensors":
            return build_model(_export_config(path, _safetensors_metadata(path)), path, path)
        if kind == "onnx":
            return _load_onnx(path)
        if kind == "torchscript":
            return _load_torchscript(path)
        raise ModelFileError(f"'{path}' {kind}")
    try:
        return load_pretrained(source, revision, **hub_options)
    except ModelConfigError as error:  # an unknown name: reported as any unusable model
        raise ModelFileError(str(error)) from None


EXPORT_NAMES = {"safetensors": "a safetensors", "onnx": "an ONNX", "torchscript": "a TorchScript"}
MODEL_SUFFIXES = (".ckpt", ".safetensors", ".onnx", ".pt", ".pth")  # never a shipped name or a repo id


def read_checkpoint(path: str | Path) -> dict:
    """A train.py checkpoint as plain data: torch.load(weights_only=True), never code."""
    path = Path(path)
    kind = file_kind(path)
    if kind != "checkpoint":
        raise ModelFileError(
            f"'{path}' {kind}"
            if kind not in EXPORT_NAMES
            else f"'{path}' is {EXPORT_NAMES[kind]} export, not a training checkpoint: predict.py and "
            "inference.load_model take it; training and export need the .ckpt it came from"
        )
    try:
        with warnings.catch_warnings():
            # A pickle of another protocol than torch.save's makes torch warn before it fails:
            # a second stderr line for what is reported below in one.
            warnings.filterwarnings("ignore", category=UserWarning, message=r".*pickle protocol")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # Only a real torch file gets here; its pickle names a class or function to call.
        # torch's own message goes on to suggest weights_only=False: never pass that on.
        named = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"it calls {named.group(1)}" if named else "it holds objects other than tensors and plain data"
        raise ModelFileError(
            f"refusing to load '{path}': {what} when unpickled, which could run any code; only "
            "checkpoints of tensors and plain data load, as train.py writes them"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise ModelFileError(
            f"'{path}' is a damaged PyTorch file, truncated or corrupt ({first_line(error, 120)})"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ModelFileError(f"'{path}' is a PyTorch file but not a checkpoint written by train.py")
    written = checkpoint.get("catsdogs") if isinstance(checkpoint.get("catsdogs"), dict) else {}
    if written.get("format") != CHECKPOINT_FORMAT:
        version, old_format = written.get("project_version", "0.1 or older"), written.get("format", 1)
        raise ModelFileError(
            f"'{path}' was written by catsdogs-zoo {version} in checkpoint format {old_format}; this is "
            f"version {PROJECT_VERSION}, which reads format {CHECKPOINT_FORMAT}: use the version that "
            "wrote it, or retrain"
        )
    return checkpoint


def file_kind(path: Path) -> str:
    """ "checkpoint", "safetensors", "onnx" or "torchscript" when the file is one; otherwise
    the rest of a sentence that starts with the file's name and says what it is instead."""
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a folder, not a model file"
    with open(path, "rb") as file:
        head = file.read(512)
    text = head.lstrip().lower()
    if not head:
        return "is empty (0 bytes): the file was not written or not copied; get it again"
    if head.startswith(b"version https://git-lfs"):
        return "is a Git LFS pointer, not the file itself: run `git lfs pull` to fetch it"
    if text.startswith((b"<!doctype html", b"<html")):
        return "is an HTML page, not a model: the download failed (an error or login page); download it again"
    if text.startswith((b"{", b"[")):
        return "is a JSON text file, not a model: pass the .ckpt written by train.py or a file from export.py"
    if _is_safetensors(path, head):
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any("/code/" in name for name in names):
            return "torchscript"
        if any(name.endswith("data.pkl") for name in names):
            return "checkpoint"
        return "is a zip archive but not a PyTorch file; pass the .ckpt written by train.py"
    if head.startswith(b"PK\x03\x04"):  # a zip's first record, but the directory at its end is gone
        what = "PyTorch checkpoint" if b"data.pkl" in head else "zip archive"
        return f"is a truncated {what} (its end is missing): the copy or download stopped early; get it again"
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":  # ONNX: a protobuf starting with ir_version
        return "onnx"
    if head[:1] == b"\x80":  # a pickle: torch.save's pre-1.6 format
        return "checkpoint"
    if _is_text(head):
        return "is a text file, not a model: pass the .ckpt written by train.py or a file from export.py"
    return "is not a PyTorch checkpoint or an exported model (not a zip, a pickle, ONNX or safetensors)"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut by the 512-byte read is still text
        if error.start < len(head) - 3:
            return False
        text = head[: error.start].decode("utf-8")
    return all(character.isprintable() or character in "\t\n\r\f" for character in text)


def _is_safetensors(path: Path, head: bytes) -> bool:
    # The format starts with the header's length (little-endian u64), then a JSON object.
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + header_length <= path.stat().st_size


def _export_config(path: Path, metadata: dict[str, str]) -> dict:
    try:
        version, config = int(metadata.get("catsdogs_export", "0")), json.loads(metadata["config"])
    except (KeyError, ValueError):
        raise ModelFileError(
            f"'{path}' is not a model written by this project's export.py; re-export it"
        ) from None
    if version != EXPORT_FORMAT:
        raise ModelFileError(
            f"'{path}' is export format {version}; this version reads {EXPORT_FORMAT}: re-export it"
        )
    return config


def _safetensors_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as file:  # the header only: no tensor is read
            return file.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ModelFileError(f"'{path}' is a damaged safetensors file ({error})") from None


def _load_onnx(path: Path) -> ExportedModel:
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(f"'{path}' is ONNX: running it needs `pip install onnxruntime`") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for bad files
        raise ModelFileError(f"'{path}' is not a readable ONNX model ({first_line(error, 120)})") from None
    config = _export_config(path, dict(session.get_modelmeta().custom_metadata_map))
    input_name = session.get_inputs()[0].name
    return ExportedModel(
        path,
        "onnx",
        config,
        lambda images: torch.from_numpy(session.run(None, {input_name: images.numpy()})[0]),
    )


def _load_torchscript(path: Path) -> ExportedModel:
    extra_files = {TORCHSCRIPT_METADATA: ""}
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export, but still loads what it saved.
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
        metadata = json.loads(extra_files[TORCHSCRIPT_METADATA] or "{}")
    except (RuntimeError, ValueError) as error:
        raise ModelFileError(
            f"'{path}' is not a readable TorchScript model ({first_line(error, 120)})"
        ) from None
    return ExportedModel(path, "torchscript", _export_config(path, metadata), module.eval())
