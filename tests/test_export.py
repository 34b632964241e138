"""export.py: every format it offers gives the checkpoint's own p_cat, read back by load_model.

The checkpoint is the trained run's best.ckpt (a copy, so files written beside it stay out
of the run folder); the photos are the run's own, decoded as training decoded them. ONNX is
also run by hand, as someone with only the .onnx file and onnxruntime would run it.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import export
import predict
from datasets import decode_many, find_image_files
from inference import ExportedModel, PCatModel, load_model
from inference.export import FORMATS, _example_photos, export_model
from inference.loading import file_kind
from tests.conftest import run_script


@pytest.fixture(scope="module")
def checkpoint(trained_run, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("run") / "best.ckpt"
    shutil.copyfile(trained_run.best, copy)
    return copy


@pytest.fixture(scope="module")
def photos(trained_run, checkpoint) -> tuple[list[str], torch.Tensor]:
    """The readable photos' paths and pixels, uint8 (N, 3, S, S), as predict.py decodes them."""
    decoded = decode_many(
        find_image_files([str(trained_run.pets)]), load_model(checkpoint).image_size, workers=1
    )
    readable = [(path, image) for path, image, _ in decoded if image is not None]
    return [path for path, _ in readable], torch.stack([image for _, image in readable])


@pytest.fixture(scope="module")
def expected(checkpoint, photos) -> torch.Tensor:
    with torch.inference_mode():
        return load_model(checkpoint)(photos[1])  # (N,)


@pytest.fixture(scope="module")
def onnx_from_cli(checkpoint, tmp_path_factory):
    """`python export.py --ckpt .../best.ckpt --format onnx`, typed in another folder."""
    result = run_script(
        "export.py", "--ckpt", checkpoint, "--format", "onnx", cwd=tmp_path_factory.mktemp("cwd")
    )
    return result, checkpoint.with_suffix(".onnx")


@pytest.fixture(scope="module")
def predicted(trained_run, checkpoint, tmp_path_factory) -> dict[str, float]:
    """predict.py's p_cat per photo for the checkpoint (JSON, full precision)."""
    output = tmp_path_factory.mktemp("predicted") / "checkpoint.json"
    args = ["--ckpt", str(checkpoint), "--format", "json", "--output", str(output), "--workers", "1"]
    assert predict.main([*args, str(trained_run.pets)]) == 0
    return {row["path"]: row["p_cat"] for row in json.loads(output.read_text())}


def test_export_py_writes_onnx_beside_the_checkpoint(onnx_from_cli):
    result, path = onnx_from_cli
    assert result.returncode == 0, result.stderr[-2000:]
    assert path.is_file() and str(path) in result.stdout
    assert result.stderr == ""
    assert not list(path.parent.glob("*.partial"))


@pytest.mark.parametrize("export_format", list(FORMATS))
def test_every_format_loads_back_with_the_checkpoints_p_cat(
    export_format, checkpoint, photos, expected, onnx_from_cli, tmp_path, capsys
):
    if export_format == "onnx":
        path = onnx_from_cli[1]
        assert onnx_from_cli[0].returncode == 0, onnx_from_cli[0].stderr[-2000:]
    else:
        path = tmp_path / "exports" / f"model{FORMATS[export_format]}"
        status = export.main(["--ckpt", str(checkpoint), "--format", export_format, "--output", str(path)])
        assert status == 0, capsys.readouterr().err
        assert str(path) in capsys.readouterr().out
    assert file_kind(path) == export_format  # recognised by content, whatever the name
    exported = load_model(path)
    source = load_model(checkpoint)
    if export_format == "safetensors":  # tensors and config only: rebuilt as the full model
        assert isinstance(exported, PCatModel) and not exported.training
    else:
        assert isinstance(exported, ExportedModel) and exported.kind == export_format
    assert (exported.image_size, exported.threshold) == (source.image_size, source.threshold)
    images = photos[1]
    with torch.inference_mode():
        for batch in (images, images[:1], images[5:8]):  # traced with 2 photos: any batch size
            p_cat = exported(batch)
            assert p_cat.shape == (len(batch),) and p_cat.dtype == torch.float32
        p_cat = exported(images)
    torch.testing.assert_close(p_cat, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(exported(images[5:8]), expected[5:8], rtol=0, atol=1e-5)
    assert expected.max() - expected.min() > 0.05  # photos that the model tells apart


@pytest.mark.parametrize("export_format", list(FORMATS))
def test_predict_py_gives_the_same_p_cat_for_the_export(
    export_format, checkpoint, predicted, trained_run, tmp_path
):
    path = export_model(load_model(checkpoint), export_format, tmp_path / f"model{FORMATS[export_format]}")
    output = tmp_path / "export.json"
    args = ["--ckpt", str(path), "--format", "json", "--output", str(output), "--workers", "1"]
    assert predict.main([*args, str(trained_run.pets)]) == 0
    rows = {row["path"]: row for row in json.loads(output.read_text())}
    assert rows.keys() == predicted.keys()
    for photo, row in rows.items():
        assert row["p_cat"] == pytest.approx(predicted[photo], abs=1e-5)
        assert row["label"] == ("cat" if row["p_cat"] >= 0.5 else "dog")  # the model's threshold


def decode_by_hand(path: str, size: int) -> np.ndarray | None:
    """The README's preprocessing, written by a user who has only PIL and the .onnx file:
    EXIF-rotated RGB, the central square resized to size x size (bilinear), uint8 (3, S, S).
    JPEGs are read at the smallest 1/2, 1/4 or 1/8 scale not below `size` (PIL's draft),
    as the project decodes them; without that step p_cat differs by up to ~3e-3."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image).convert("RGB")
    except OSError:  # not an image: a user's script skips it
        return None
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def test_onnx_by_hand_in_onnxruntime_reproduces_predict_py(onnx_from_cli, predicted, trained_run):
    import onnxruntime

    assert onnx_from_cli[0].returncode == 0, onnx_from_cli[0].stderr[-2000:]
    session = onnxruntime.InferenceSession(str(onnx_from_cli[1]), providers=["CPUExecutionProvider"])
    (images,) = session.get_inputs()
    batch, channels, height, width = images.shape
    assert images.type == "tensor(uint8)" and isinstance(batch, str)  # raw pixels, any batch size
    assert channels == 3 and height == width
    config = json.loads(session.get_modelmeta().custom_metadata_map["config"])
    assert config["image_size"] == height

    paths = find_image_files([str(trained_run.pets)])
    pixels = {path: decode_by_hand(path, height) for path in paths}
    readable = [path for path in paths if pixels[path] is not None]
    assert sorted(readable) == sorted(predicted)  # the same photo is the unreadable one
    (p_cat,) = session.run(None, {images.name: np.stack([pixels[path] for path in readable])})
    assert p_cat.shape == (len(readable),)
    for path, value in zip(readable, p_cat.tolist(), strict=True):
        assert value == pytest.approx(predicted[path], abs=1e-4), path


def test_export_never_overwrites_the_checkpoint_it_reads(checkpoint, tmp_path, capsys):
    named_pt = tmp_path / "model.pt"  # a checkpoint named .pt: TorchScript's default name
    shutil.copyfile(checkpoint, named_pt)
    assert export.main(["--ckpt", str(named_pt), "--format", "torchscript"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "model.pt" in line and "--output" in line
    assert named_pt.read_bytes() == checkpoint.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize("export_format", list(FORMATS))
def test_flip_averaging_and_per_image_normalisation_travel_into_every_format(export_format, photos, tmp_path):
    # A Mixer (LayerNorm, patches) with both options on; untrained weights are enough.
    torch.manual_seed(0)
    tiny = {"patch_size": 4, "width": 8, "depth": 1, "token_hidden": 8, "channel_hidden": 8}
    model = PCatModel(
        "mixer", tiny, image_size=photos[1].shape[-1], input_norm="per_image", tta_flip=True
    ).eval()
    exported = load_model(export_model(model, export_format, tmp_path / f"mixer{FORMATS[export_format]}"))
    images = photos[1]
    with torch.inference_mode():
        x = images.float()
        x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
        z_photo, z_mirror = model.network(x), model.network(x.flip(-1))
        by_hand = torch.sigmoid((z_photo + z_mirror) / 2)
        torch.testing.assert_close(exported(images), by_hand, rtol=0, atol=1e-5)
    assert (torch.sigmoid(z_photo) - by_hand).abs().max() > 1e-4  # the mirror pass does change p_cat
    assert exported.config["tta_flip"] is True and exported.config["input_norm"] == "per_image"


def test_the_example_photos_are_made_where_the_weights_are():
    """Tracing a model on a GPU needs its example photos there too; "meta" stands in for the GPU."""
    model = PCatModel("logreg", None, 8).to("meta")
    photos = _example_photos(model)
    assert photos.device.type == "meta" and photos.shape == (2, 3, 8, 8) and photos.dtype == torch.uint8
