"""explain.py: the article's Z = W x + b for one photo, from the model's own forward pass.

The trained run's checkpoint and photos: its p_cat is predict.py's, its JSON holds every
layer's Z and A statistics as the forward pass computed them, and its page is written.
Every network family is explained once more through the Python API, untrained.
"""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import explain
import predict
from datasets import decode_image
from explanation import explain_image, render_text
from explanation.static_page import render_page
from explanation.walk import Stats
from inference import load_model
from inference.export import export_model
from models import PCatModel, list_models
from tests.conftest import REPO

STATS = ("min", "mean", "max", "std")


@pytest.fixture(scope="module")
def photos(trained_run) -> list[Path]:
    """Two cats and two dogs of the trained run's folder."""
    return [trained_run.pets / kind / f"{i}.jpg" for kind in ("Cat", "Dog") for i in (0, 7)]


def explain_json(capsys, *argv: str | Path) -> dict:
    status = explain.main(["--json", *map(str, argv)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_p_cat_is_predict_pys(trained_run, photos, capsys):
    assert (
        predict.main(
            ["--ckpt", str(trained_run.best), "--format", "json", "--workers", "1", *map(str, photos)]
        )
        == 0
    )
    predicted = {row["path"]: row for row in json.loads(capsys.readouterr().out)}
    assert len(predicted) == len(photos)
    for photo in photos:
        explained = explain_json(capsys, "--ckpt", trained_run.best, photo)
        assert abs(explained["p_cat"] - predicted[str(photo)]["p_cat"]) <= 1e-6, photo
        assert explained["label"] == predicted[str(photo)]["label"]
        assert explained["p_cat"] == pytest.approx(
            torch.sigmoid(torch.tensor(explained["z"])).item(), abs=1e-6
        )
    assert {predicted[str(photo)]["label"] for photo in photos} == {"cat", "dog"}


def test_json_has_every_layers_z_and_a_statistics_from_the_forward_pass(trained_run, photos, capsys):
    explained = explain_json(capsys, "--ckpt", trained_run.best, photos[0])
    model = load_model(trained_run.best)
    with torch.inference_mode():
        logits, traces = model.forward_with_intermediates(
            decode_image(photos[0], model.image_size).unsqueeze(0)
        )
    linears = model.network.linear_layers()
    assert [layer["name"] for layer in explained["layers"]] == list(traces) == list(linears)
    for layer in explained["layers"]:
        trace = traces[layer["name"]]
        for key, tensor in (("z_stats", trace.z[0]), ("a_stats", trace.a[0])):
            assert set(layer[key]) == set(STATS), layer["name"]
            values = tensor.double()
            expected = (values.min(), values.mean(), values.max(), values.std(correction=0))
            for name, value in zip(STATS, expected, strict=True):
                assert layer[key][name] == pytest.approx(value.item(), rel=1e-9, abs=1e-9), (
                    layer["name"],
                    key,
                )
        assert layer["weight_shape"] == list(linears[layer["name"]].weight.shape)
    assert explained["z"] == pytest.approx(logits[0].item(), abs=1e-6)
    # z = (terms towards cat) + (terms towards dog) + b: the explanation adds up
    total = explained["terms_towards_cat"] + explained["terms_towards_dog"] + explained["bias"]
    assert total == pytest.approx(explained["z"], abs=1e-4)
    assert explained["input"]["original_size"] == list(Image_size(photos[0]))


def Image_size(path: Path) -> tuple[int, int]:  # noqa: N802 (reads like PIL's Image.size)
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def embedded_data(page: str) -> dict:
    """The server's answers that explain.py --html writes into the live page."""
    return json.loads(re.search(r"window\.EMBEDDED = (.*?);</script>", page).group(1))


def test_html_is_the_live_page_with_the_photos_numbers_in_it(trained_run, photos, tmp_path, capsys):
    page = tmp_path / "pages" / "new" / "cat.html"  # a folder that does not exist yet
    status = explain.main(["--ckpt", str(trained_run.best), str(photos[0]), "--html", str(page)])
    text_out = capsys.readouterr().out
    assert status == 0
    explained = explain_json(capsys, "--ckpt", trained_run.best, photos[0])
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert f"= {explained['p_cat']:.4f}\n" in text_out  # the text ends with p_cat = sigmoid(z) = ...
    # Nothing fetched, so it works offline: the page's CSS and scripts are in the file.
    assert "/assets/" not in html and not re.search(r"(src|href)=\"https?:", html)
    assert "function drawExplanation" in html and "[hidden] { display: none" in html
    data = embedded_data(html)
    assert data["explanation"]["p_cat"] == pytest.approx(explained["p_cat"], abs=1e-6)
    names = [layer["name"] for layer in explained["layers"]]
    assert [layer["name"] for layer in data["explanation"]["layers"]] == names
    assert [layer["name"] for layer in data["model"]["layers"]] == names
    for layer in explained["layers"]:  # each layer's strongest units can be opened on the page
        assert layer["name"] in text_out
        for unit in layer["top_units"]:
            assert f"{layer['name']}/{unit['index'][-1]}" in data["units"]


def test_unreadable_photo_and_an_onnx_export_exit_2_in_one_line(trained_run, tmp_path, capsys):
    broken = trained_run.pets / "Cat" / "broken.jpg"
    onnx = export_model(load_model(trained_run.best), "onnx", tmp_path / "model.onnx")
    for argv, named in (
        (["--ckpt", str(trained_run.best), str(broken)], "broken.jpg"),
        (["--ckpt", str(trained_run.best), str(tmp_path / "missing.jpg")], "missing.jpg"),
        (["--ckpt", str(onnx), str(trained_run.pets / "Cat" / "0.jpg")], "model.onnx"),
    ):
        assert explain.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert named in line


def test_a_safetensors_export_explains_like_its_checkpoint(trained_run, photos, tmp_path, capsys):
    exported = export_model(load_model(trained_run.best), "safetensors", tmp_path / "model.safetensors")
    from_checkpoint = explain_json(capsys, "--ckpt", trained_run.best, photos[2])
    from_export = explain_json(capsys, "--ckpt", exported, photos[2])
    assert from_export["p_cat"] == pytest.approx(from_checkpoint["p_cat"], abs=1e-6)
    for exported, checkpoint in zip(from_export["layers"], from_checkpoint["layers"], strict=True):
        assert exported["z_stats"] == pytest.approx(checkpoint["z_stats"], abs=1e-6), exported["name"]


def test_explain_py_into_head_ends_without_a_traceback(trained_run, photos, tmp_path, capsys):
    full = json.dumps(explain_json(capsys, "--ckpt", trained_run.best, photos[0]), indent=2)
    command = " ".join(
        shlex.quote(str(part))
        for part in (sys.executable, REPO / "explain.py", "--ckpt", trained_run.best, "--json", photos[0])
    )
    # head -c 10 as a user types it, and head -c 0, which is gone before explain.py writes at all
    runs = [
        subprocess.Popen(
            [
                "bash",
                "-c",
                f'{command} | head -c {count}; echo "explain.py exit status ${{PIPESTATUS[0]}}" >&2',
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for count in (10, 0)
    ]
    (out_10, err_10), (out_0, err_0) = (run.communicate(timeout=300) for run in runs)
    assert out_10 == full[:10] and out_0 == ""
    # head may exit before the last write of a long page; either ending is a clean one
    assert err_10.strip().splitlines()[0] in ("explain.py exit status 0", "explain.py exit status 141")
    assert len(err_10.strip().splitlines()) == 1, err_10
    assert err_0.strip().splitlines() == ["explain.py exit status 141"]  # 128 + SIGPIPE, and nothing else


@pytest.mark.parametrize("network", list_models())
def test_every_family_is_explained_from_its_own_forward_pass(network, photos):
    torch.manual_seed(0)
    model = PCatModel(network, image_size=16).eval()
    image = decode_image(photos[0], model.image_size)
    explanation = explain_image(model, image, threshold=0.5, top=3)
    with torch.inference_mode():
        p_cat = model(image.unsqueeze(0))[0].item()
        _, traces = model.forward_with_intermediates(image.unsqueeze(0))
    assert explanation.p_cat == pytest.approx(p_cat, abs=1e-6)
    assert [layer.name for layer in explanation.layers] == list(traces) == list(model.network.linear_layers())
    for layer in explanation.layers:
        assert asdict(layer.z_stats) == pytest.approx(asdict(Stats.of(traces[layer.name].z[0])))
        assert asdict(layer.a_stats) == pytest.approx(asdict(Stats.of(traces[layer.name].a[0])))
    text, page = render_text(explanation), embedded_data(render_page(model, image, 0.5, None))
    assert f"= {explanation.p_cat:.4f}\n" in text and page["explanation"]["p_cat"] == explanation.p_cat
