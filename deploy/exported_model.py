"""Load an exported model (ONNX, TorchScript or safetensors) and get p_cat from uint8 images.

Imports torch, numpy and `models` (the zoo, plain torch) only; onnxruntime and safetensors
are imported when a file of their format is opened. Nothing here imports Lightning or
training code, and a test keeps it that way.

Every format carries the same metadata (strings): `image_size`, `threshold`, `network`,
`network_kwargs` (JSON), `tta_flip` (JSON true/false) and `input_norm` (dataset or
per_image; older exports lack both and mean false and dataset), `project_version`, and
`catsdogs_export` (this layout's version).
"""

import json
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

EXPORT_VERSION = 1  # bump when an export written by this code would be misread by older code
METADATA_FILE = "catsdogs.json"  # the TorchScript archive's extra file holding the metadata
EXPORT_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".safetensors": "safetensors"}


class ExportError(Exception):
    """An exported model that cannot be used; the message names the file and the reason."""


class ExportedModel:
    """A deployable cats-vs-dogs model: `p_cat(uint8 (B, 3, S, S)) -> (B,)`, p_cat >= threshold is cat."""

    def __init__(
        self, path: Path, export_format: str, metadata: dict[str, str], run: Callable[[Tensor], Tensor]
    ) -> None:
        self.path = path
        self.format = export_format
        self.metadata = check_metadata(path, metadata)
        self.image_size = int(metadata["image_size"])
        self.threshold = float(metadata["threshold"])
        self._run = run

    @torch.inference_mode()
    def p_cat(self, images: Tensor) -> Tensor:
        """uint8 images (B, 3, S, S) with S = image_size -> p_cat (B,) float32."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(
                f"expected uint8 images (B, {', '.join(map(str, self.input_shape))}), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        return self._run(images.cpu().contiguous())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    def __repr__(self) -> str:
        return f"ExportedModel({str(self.path)!r}, format={self.format!r}, image_size={self.image_size})"


def load_exported(path: str | Path) -> ExportedModel:
    """Open an exported model of any of the three formats, detected from the file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"exported model '{path}' does not exist or is not a file")
    export_format = detect_format(path)
    if export_format is None:
        raise ExportError(
            f"'{path}' is not an exported model (expected {', '.join(EXPORT_SUFFIXES)} written by export.py)"
        )
    loader = {"onnx": _load_onnx, "torchscript": _load_torchscript, "safetensors": _load_safetensors}
    return loader[export_format](path)


def check_metadata(path: Path, metadata: dict[str, str]) -> dict[str, str]:
    """The metadata, if export.py of this or an older version wrote it; else ExportError."""
    try:
        version = int(metadata.get("catsdogs_export", "0"))
        int(metadata["image_size"]), float(metadata["threshold"]), metadata["network"]
    except (KeyError, ValueError) as error:
        raise ExportError(f"'{path}' lacks the metadata export.py writes ({error!r}); re-export it") from None
    if not 0 < version <= EXPORT_VERSION:
        raise ExportError(
            f"'{path}' is export version {version} written by catsdogs-zoo "
            f"{metadata.get('project_version', '?')}; this code reads versions 1 to {EXPORT_VERSION}: "
            "update the code or re-export"
        )
    return metadata


def is_exported_model(path: str | Path) -> bool:
    return Path(path).is_file() and detect_format(Path(path)) is not None


def detect_format(path: Path) -> str | None:
    """'onnx', 'torchscript' or 'safetensors' by content where it can tell, else by suffix; None otherwise.

    A training checkpoint (.ckpt, also a zip) has no `code/` folder, so it is never taken
    for TorchScript.
    """
    if _is_safetensors(path):
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any("/code/" in name for name in archive.namelist()):
                return "torchscript"
        return None
    return "onnx" if path.suffix.lower() == ".onnx" else None


def _is_safetensors(path: Path) -> bool:
    # The format starts with the header's length (little-endian u64), then a JSON object.
    with open(path, "rb") as file:
        head = file.read(9)
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 8 + header_length <= path.stat().st_size


def _load_onnx(path: Path) -> ExportedModel:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(f"'{path}' is ONNX: running it needs `pip install onnxruntime`") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors for bad files
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"'{path}' is not a readable ONNX model: {first_line}") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    input_name = session.get_inputs()[0].name

    def run(images: Tensor) -> Tensor:
        (p_cat,) = session.run(None, {input_name: images.numpy()})
        return torch.from_numpy(p_cat)

    return ExportedModel(path, "onnx", metadata, run)


def _load_torchscript(path: Path) -> ExportedModel:
    extra_files = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.export, but still loads what it saved.
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
        metadata = json.loads(extra_files[METADATA_FILE] or "{}")
    except (RuntimeError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"'{path}' is not a readable TorchScript model: {first_line}") from None
    module.eval()
    return ExportedModel(path, "torchscript", metadata, module)


def _load_safetensors(path: Path) -> ExportedModel:
    # Tensors and strings only: the network is rebuilt from the zoo by name, never unpickled.
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise ExportError(f"'{path}' is not a readable safetensors file: {error}") from None
    check_metadata(path, metadata)
    pipeline = _build_pipeline(path, metadata, tensors)
    return ExportedModel(path, "safetensors", metadata, pipeline)


def load_checkpoint_pipeline(path: str | Path) -> ExportedModel:
    """A training checkpoint as a deployable model: same network, normalisation and sigmoid.

    Reads the checkpoint safely (weights_only) and rebuilds the network from the zoo with
    plain torch, so predicting from a .ckpt never imports Lightning (~2 s of start-up).
    """
    from models.checkpoint import classifier_hyperparameters, read_checkpoint
    from models.version import PROJECT_VERSION

    path = Path(path)
    checkpoint = read_checkpoint(path)
    hparams = classifier_hyperparameters(checkpoint)
    metadata = {
        "catsdogs_export": str(EXPORT_VERSION),
        "image_size": str(hparams.get("image_size", "")),
        "threshold": str(hparams.get("threshold", 0.5)),
        "network": str(hparams.get("network", "")),
        "network_kwargs": json.dumps(hparams.get("network_kwargs") or {}),
        "tta_flip": json.dumps(bool(hparams.get("tta_flip", False))),
        "input_norm": str(hparams.get("input_norm", "dataset")),
        "project_version": PROJECT_VERSION,
    }
    check_metadata(path, metadata)
    # The classifier's state dict minus its metrics: network.* and the channel statistics.
    state = {
        key: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("network.") or key in ("channel_mean", "channel_std")
    }
    return ExportedModel(path, "checkpoint", metadata, _build_pipeline(path, metadata, state))


def _build_pipeline(path: Path, metadata: dict[str, str], tensors: dict[str, Tensor]) -> torch.nn.Module:
    """The zoo network named in the metadata, wrapped with normalisation and sigmoid, weights loaded."""
    from deploy.pipeline import PCatPipeline
    from models import create_model
    from models.preprocess import INPUT_NORMS

    try:
        network = create_model(
            metadata["network"],
            image_size=int(metadata["image_size"]),
            **json.loads(metadata.get("network_kwargs", "{}")),
        )
        tta_flip = json.loads(metadata.get("tta_flip", "false")) is True
        input_norm = metadata.get("input_norm", "dataset")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm '{input_norm}' is unknown")
        pipeline = PCatPipeline(network, torch.zeros(3), torch.ones(3), tta_flip, input_norm)
        pipeline.load_state_dict(tensors)
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ExportError(f"'{path}' does not match this version's models: {first_line}") from None
    return pipeline.eval()
