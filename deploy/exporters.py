"""Checkpoint -> deployable file: ONNX, TorchScript or safetensors, each computing p_cat from uint8.

All three export the same PCatPipeline (normalisation, network, sigmoid), so p_cat comes
straight out, and carry the same metadata (see deploy.exported_model). The checkpoint is
read with models.checkpoint.load_classifier: weights_only, never pickled code.
"""

import copy
import json
import os
import warnings
from pathlib import Path

import torch

from deploy.exported_model import EXPORT_SUFFIXES, EXPORT_VERSION, METADATA_FILE
from deploy.pipeline import PCatPipeline
from models.checkpoint import load_classifier
from models.classifier import PROJECT_VERSION, CatsDogsClassifier

FORMATS = tuple(EXPORT_SUFFIXES.values())  # onnx, torchscript, safetensors
ONNX_OPSET = 17  # LayerNormalization is a single op from 17 on (the mixer and resmlp use it)
EXAMPLE_BATCH = 2  # trace with more than one image so no shape is specialised to a batch of 1


def export_model(checkpoint: str | Path, export_format: str, output: str | Path | None = None) -> Path:
    """Write `checkpoint` as a deployable `export_format` file; returns its path.

    Without `output` the file goes next to the checkpoint: best.ckpt -> best.onnx, best.pt
    or best.safetensors.
    """
    if export_format not in FORMATS:
        raise ValueError(f"unknown export format '{export_format}'; choose one of {', '.join(FORMATS)}")
    classifier = load_classifier(checkpoint)
    suffix = next(s for s, f in EXPORT_SUFFIXES.items() if f == export_format)
    output = Path(output) if output is not None else Path(checkpoint).with_suffix(suffix)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(classifier)
    metadata = export_metadata(classifier, Path(checkpoint).name)
    writer = {"onnx": write_onnx, "torchscript": write_torchscript, "safetensors": write_safetensors}
    # Written beside the target and renamed when whole: a crash never leaves half a model.
    partial = output.with_name(output.name + ".partial")
    try:
        writer[export_format](pipeline, metadata, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return output


def build_pipeline(classifier: CatsDogsClassifier) -> PCatPipeline:
    """The classifier's network and channel statistics in a Lightning-free module, in eval mode."""
    network = copy.deepcopy(classifier.network)
    hparams = classifier.hparams
    return PCatPipeline(
        network,
        classifier.channel_mean,
        classifier.channel_std,
        tta_flip=bool(hparams.get("tta_flip", False)),
        input_norm=hparams.get("input_norm", "dataset"),
    ).eval()


def export_metadata(classifier: CatsDogsClassifier, source: str) -> dict[str, str]:
    """Everything a deployment needs besides the weights, as strings (all three formats take strings)."""
    hparams = classifier.hparams
    return {
        "catsdogs_export": str(EXPORT_VERSION),
        "project_version": PROJECT_VERSION,
        "network": str(hparams.network),
        "network_kwargs": json.dumps(dict(hparams.network_kwargs or {}), sort_keys=True),
        "image_size": str(int(hparams.image_size)),
        "threshold": str(float(hparams.threshold)),
        "tta_flip": json.dumps(bool(hparams.get("tta_flip", False))),
        "input_norm": str(hparams.get("input_norm", "dataset")),
        "input": "images: uint8 (batch, 3, image_size, image_size), RGB, shorter side resized, centre crop",
        "output": "p_cat: float32 (batch,), sigmoid(z); p_cat >= threshold means cat",
        "source_checkpoint": source,
    }


def example_images(image_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    shape = (EXAMPLE_BATCH, 3, image_size, image_size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)  # (2, 3, S, S)


def write_onnx(pipeline: PCatPipeline, metadata: dict[str, str], output: Path) -> None:
    import onnx  # only needed for this format

    images = example_images(int(metadata["image_size"]))
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo=True, which needs
        # onnxscript and re-traces through torch.export; this one is stable for these plain
        # nn.Linear models and gives a dynamic batch axis directly.
        legacy = r".*legacy TorchScript-based ONNX"
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=legacy)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\._internal\.")
        torch.onnx.export(
            pipeline,
            (images,),
            str(output),
            dynamo=False,
            input_names=["images"],
            output_names=["p_cat"],
            dynamic_axes={"images": {0: "batch"}, "p_cat": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )
    model = onnx.load(str(output))
    onnx.helper.set_model_props(model, metadata)  # -> metadata_props, read by onnxruntime
    onnx.checker.check_model(model)
    onnx.save(model, str(output))


def write_torchscript(pipeline: PCatPipeline, metadata: dict[str, str], output: Path) -> None:
    images = example_images(int(metadata["image_size"]))
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export but still traces and loads
        # everywhere LibTorch runs; this silences only that notice.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*")
        traced = torch.jit.trace(pipeline, (images,))
        torch.jit.save(traced, str(output), _extra_files={METADATA_FILE: json.dumps(metadata)})


def write_safetensors(pipeline: PCatPipeline, metadata: dict[str, str], output: Path) -> None:
    from safetensors.torch import save_file  # only needed for this format

    tensors = {name: tensor.detach().contiguous() for name, tensor in pipeline.state_dict().items()}
    save_file(tensors, str(output), metadata=metadata)
