"""PCatModel -> one deployable file that computes p_cat from uint8 photos: ONNX, TorchScript
or safetensors. The normalisation, the network, flip averaging and the sigmoid are inside;
the model's config travels as metadata, read back by inference.load_model.
"""

import json
import os
import warnings
from pathlib import Path

import torch

from inference.loading import EXPORT_FORMAT, TORCHSCRIPT_METADATA
from models import PROJECT_VERSION, PCatModel

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
ONNX_OPSET = 17  # LayerNormalization is a single op from 17 on (the Mixer and the shift MLP use it)


def export_model(model: PCatModel, export_format: str, output: str | Path) -> Path:
    """Write `model` as `output` in `export_format`; the file appears only once it is whole."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "catsdogs_export": str(EXPORT_FORMAT),
        "project_version": PROJECT_VERSION,
        "config": json.dumps(model.config, sort_keys=True),
        "input": "images: uint8 (batch, 3, image_size, image_size), RGB, decoded as datasets.decode_image: "
        "a JPEG read by libjpeg at the smallest 1/2, 1/4 or 1/8 scale not below image_size (PIL's draft), "
        "EXIF orientation applied, the central square resized to image_size (PIL bilinear)",
        "output": "p_cat: float32 (batch,), sigmoid(z); p_cat >= threshold means cat",
    }
    partial = output.with_name(output.name + ".partial")
    model = model.eval()
    try:
        {"onnx": _onnx, "torchscript": _torchscript, "safetensors": _safetensors}[export_format](
            model, metadata, partial
        )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def _example_photos(model: PCatModel) -> torch.Tensor:
    # Two photos, so no shape in the traced graph is specialised to a batch of one; on the
    # weights' device, so a model on a GPU exports too (the files load on any device).
    device = next(model.parameters()).device
    return torch.randint(0, 256, (2, 3, model.image_size, model.image_size), dtype=torch.uint8, device=device)


def _onnx(model: PCatModel, metadata: dict[str, str], output: Path) -> None:
    import onnx

    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs
        # onnxscript; this one is stable for nn.Linear models and gives a dynamic batch axis.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (_example_photos(model),),
            str(output),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=["p_cat"],
            dynamic_axes={"images": {0: "batch"}, "p_cat": {0: "batch"}},
        )
    proto = onnx.load(str(output))
    onnx.helper.set_model_props(proto, metadata)  # metadata_props, read by onnxruntime
    onnx.checker.check_model(proto)
    onnx.save(proto, str(output))


def _torchscript(model: PCatModel, metadata: dict[str, str], output: Path) -> None:
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export but still runs wherever LibTorch does.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        traced = torch.jit.trace(model, (_example_photos(model),))
        torch.jit.save(traced, str(output), _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata)})


def _safetensors(model: PCatModel, metadata: dict[str, str], output: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(output), metadata=metadata)
