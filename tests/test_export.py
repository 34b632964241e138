"""export.py and deploy/: every format gives the checkpoint's own p_cat from uint8 pixels.

The oracle is the checkpoint: `load_classifier(ckpt).p_cat(x)` on the same uint8 batch.
ONNX runs in onnxruntime, TorchScript in torch.jit, safetensors is rebuilt from the zoo.
"""

import csv
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import lightning
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deploy import ExportError, load_exported
from deploy.exporters import FORMATS, export_model
from inference.predictor import is_export_file
from models import list_models
from models.checkpoint import load_classifier
from models.classifier import CatsDogsClassifier
from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 16
THRESHOLD = 0.4  # not the default, so the metadata check can tell it was recorded
TINY_KWARGS = {  # each family small enough to train for an epoch in well under a second
    "mlp": {"hidden_dims": [16, 8], "norm": "batch", "dropout": 0.2},  # eval-mode BN and dropout
    "mixer": {"patch_size": 4, "width": 8, "depth": 1, "token_hidden": 8, "channel_hidden": 8},
    "resmlp": {"width": 16, "depth": 1},
}
HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAS_ONNX, reason="onnx and onnxruntime are not installed (pip install onnx onnxruntime)"
)
FORMAT_PARAMS = [pytest.param("onnx", marks=needs_onnx), "torchscript", "safetensors"]


def uint8_images(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8, generator=generator)


def train_checkpoint(path: Path, network: str, **options: object) -> Path:
    """One real Lightning epoch on random uint8 images, saved the way train.py saves."""
    torch.manual_seed(0)
    model = CatsDogsClassifier(
        network=network,
        image_size=IMAGE_SIZE,
        network_kwargs=TINY_KWARGS.get(network, {}),
        lr=1e-2,
        threshold=THRESHOLD,
        **options,
    )
    # Statistics a datamodule would measure; not 0.5/0.25, so a dropped normalisation shows.
    model.channel_mean.copy_(torch.tensor([0.55, 0.45, 0.35]))
    model.channel_std.copy_(torch.tensor([0.20, 0.25, 0.30]))
    images, labels = uint8_images(32), (torch.arange(32) % 2).float()
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {name: train_checkpoint(folder / f"{name}.ckpt", name) for name in list_models()}


@pytest.mark.parametrize("network", list_models())
@pytest.mark.parametrize("export_format", FORMAT_PARAMS)
def test_exported_model_gives_the_checkpoints_p_cat(checkpoints, tmp_path, network, export_format):
    checkpoint = checkpoints[network]
    exported = load_exported(export_model(checkpoint, export_format, tmp_path / f"model.{export_format}"))
    assert exported.format == export_format
    classifier = load_classifier(checkpoint)
    for batch_size in (1, 5):  # traced with 2 images: the batch axis must stay dynamic
        images = uint8_images(batch_size, seed=batch_size)
        with torch.inference_mode():
            expected = classifier.p_cat(images)  # (B,)
        p_cat = exported.p_cat(images)
        assert p_cat.shape == (batch_size,) and p_cat.dtype == torch.float32
        torch.testing.assert_close(p_cat, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, torch.full_like(expected, expected[0].item()))  # not degenerate


@pytest.mark.parametrize("export_format", FORMAT_PARAMS)
def test_flip_averaging_travels_into_every_format(tmp_path, export_format):
    checkpoint = train_checkpoint(tmp_path / "tta.ckpt", "mixer", tta_flip=True)
    exported = load_exported(export_model(checkpoint, export_format, tmp_path / f"model.{export_format}"))
    assert exported.metadata["tta_flip"] == "true"
    classifier = load_classifier(checkpoint)
    images = uint8_images(5, seed=7)
    with torch.inference_mode():
        z_photo = classifier.network(classifier.normalize(images))
        z_mirror = classifier.network(classifier.normalize(images.flip(-1)))
    expected = torch.sigmoid((z_photo + z_mirror) / 2)
    torch.testing.assert_close(exported.p_cat(images), expected, rtol=0, atol=1e-5)
    assert (torch.sigmoid(z_photo) - expected).abs().max() > 1e-4  # the mirror pass changed p_cat


@pytest.mark.parametrize("export_format", FORMAT_PARAMS)
def test_per_image_normalisation_travels_into_every_format(tmp_path, export_format):
    checkpoint = train_checkpoint(tmp_path / "per_image.ckpt", "mlp", input_norm="per_image")
    exported = load_exported(export_model(checkpoint, export_format, tmp_path / f"model.{export_format}"))
    assert exported.metadata["input_norm"] == "per_image"
    classifier = load_classifier(checkpoint)
    images = uint8_images(5, seed=8)
    images[0] = images[0] // 4  # a dark photo: per_image scales it up, the dataset statistics would not
    with torch.inference_mode():
        x = images.float()
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
        expected = torch.sigmoid(classifier.network(x))
    torch.testing.assert_close(exported.p_cat(images), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(classifier.p_cat(images), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("export_format", FORMAT_PARAMS)
def test_every_format_records_image_size_and_threshold(checkpoints, tmp_path, export_format):
    path = export_model(checkpoints["mlp"], export_format, tmp_path / f"model.{export_format}")
    metadata = raw_metadata(path, export_format)  # read with the format's own tools
    assert metadata["image_size"] == str(IMAGE_SIZE)
    assert float(metadata["threshold"]) == THRESHOLD
    assert metadata["network"] == "mlp"
    assert json.loads(metadata["network_kwargs"]) == TINY_KWARGS["mlp"]
    exported = load_exported(path)
    assert (exported.image_size, exported.threshold) == (IMAGE_SIZE, THRESHOLD)


def raw_metadata(path: Path, export_format: str) -> dict[str, str]:
    if export_format == "onnx":
        import onnx

        return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    if export_format == "torchscript":
        with zipfile.ZipFile(path) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith("extra/catsdogs.json")]
            return json.loads(archive.read(name))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return file.metadata()


@needs_onnx
def test_onnx_has_a_dynamic_batch_axis_and_opset_17(checkpoints, tmp_path):
    import onnx

    model = onnx.load(str(export_model(checkpoints["mixer"], "onnx", tmp_path / "mixer.onnx")))
    assert max(opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")) >= 17
    (images,) = model.graph.input
    batch, *rest = images.type.tensor_type.shape.dim
    assert batch.dim_param == "batch" and [d.dim_value for d in rest] == [3, IMAGE_SIZE, IMAGE_SIZE]
    assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8  # preprocessing is inside


def test_predict_py_gives_the_same_p_cat_for_checkpoint_and_exports(checkpoints, tmp_path):
    import predict

    photos = make_layout(tmp_path / "photos", "class_folders", n_per_class=6)
    models = {"checkpoint": checkpoints["mlp"]}
    for export_format in FORMATS if HAS_ONNX else ("torchscript", "safetensors"):
        models[export_format] = export_model(
            checkpoints["mlp"], export_format, tmp_path / f"m.{export_format}"
        )
    predictions = {}
    for name, path in models.items():
        out = tmp_path / f"{name}.csv"
        assert predict.main(["--ckpt", str(path), "--output", str(out), "--workers", "1", str(photos)]) == 0
        predictions[name] = {row["path"]: row for row in csv.DictReader(out.open())}
    reference = predictions.pop("checkpoint")
    assert len(reference) == 12
    for name, rows in predictions.items():
        assert rows.keys() == reference.keys(), name
        for path, row in rows.items():
            assert float(row["p_cat"]) == pytest.approx(float(reference[path]["p_cat"]), abs=1e-5), name
            # No --threshold: the model's own (0.4) decides, recorded in every format.
            assert row["label"] == ("cat" if float(row["p_cat"]) >= THRESHOLD else "dog")
            assert row["label"] == reference[path]["label"], name


def test_deploy_loader_runs_without_importing_lightning(checkpoints, tmp_path):
    paths = [
        export_model(checkpoints["mlp"], f, tmp_path / f"m.{f}") for f in FORMATS if HAS_ONNX or f != "onnx"
    ]
    script = f"""
import sys, torch
from deploy import load_exported
for path in {[str(p) for p in paths]!r}:
    p_cat = load_exported(path).p_cat(torch.zeros(2, 3, {IMAGE_SIZE}, {IMAGE_SIZE}, dtype=torch.uint8))
    assert p_cat.shape == (2,)
training = ("lightning", "pytorch_lightning", "torchmetrics")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in training)
print("training modules:", loaded)
assert not loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


@pytest.mark.parametrize("kind", ["safetensors", "checkpoint"])
def test_predict_py_imports_no_lightning(checkpoints, tmp_path, kind):
    # Neither an export nor a training checkpoint needs the trainer to predict (start-up time).
    if kind == "checkpoint":
        path = checkpoints["mlp"]
    else:
        path = export_model(checkpoints["mlp"], "safetensors", tmp_path / "m.safetensors")
    photos = make_layout(tmp_path / "photos", "class_folders", n_per_class=1)
    script = f"""
import runpy, sys
sys.argv = ["predict.py", "--ckpt", {str(path)!r}, "--workers", "1", {str(photos)!r}]
try:
    runpy.run_path("predict.py", run_name="__main__")
except SystemExit as stop:
    assert stop.code == 0, stop.code
assert "lightning" not in sys.modules, "predict.py imported Lightning"
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_export_cli_writes_beside_the_checkpoint_and_reports_bad_input(checkpoints, tmp_path):
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(checkpoints["logreg"].read_bytes())
    result = subprocess.run(
        [sys.executable, str(REPO / "export.py"), "--ckpt", str(checkpoint), "--format", "safetensors"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "best.safetensors").is_file() and "best.safetensors" in result.stdout
    assert not list(tmp_path.glob("*.partial"))

    fake = tmp_path / "fake.ckpt"
    fake.write_bytes(b"not a checkpoint")
    bad = subprocess.run(
        [sys.executable, str(REPO / "export.py"), "--ckpt", str(fake), "--format", "torchscript"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "fake.ckpt" in bad.stderr and "Traceback" not in bad.stderr


def test_checkpoints_and_damaged_files_are_not_taken_for_exports(checkpoints, tmp_path):
    checkpoint = checkpoints["mlp"]
    assert not is_export_file(checkpoint)
    renamed = tmp_path / "weights.pt"  # a torch.save checkpoint named .pt is still a checkpoint
    renamed.write_bytes(checkpoint.read_bytes())
    assert not is_export_file(renamed)
    with pytest.raises(ExportError, match="not an exported model"):
        load_exported(checkpoint)
    for name in ("model.onnx", "model.safetensors"):
        (tmp_path / name).write_bytes(b"\x08\x07garbage")
        assert is_export_file(tmp_path / name)
        with pytest.raises(ExportError, match=name):
            load_exported(tmp_path / name)
