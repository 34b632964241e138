"""explain.py: the article's Z = W x + b for one photo, from the model's real forward pass.

Each family gets a tiny checkpoint trained for one epoch in-process (the same
LightningModule and Trainer.save_checkpoint as train.py), and a real JPEG photo.
"""

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import explain
import predict
from datasets import decode_image
from explanation.html import PHOTO_SIDE
from models import list_models
from models.checkpoint import load_classifier
from models.classifier import CatsDogsClassifier
from tests.image_factory import CAT_COLOR, write_image

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 16
CHROMIUM = "/usr/bin/chromium"


def train_tiny_checkpoint(network: str, path: Path, **options: object) -> Path:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    labels = (torch.arange(16) % 2).float()  # cat = 1
    images[labels == 1, 0] = images[labels == 1, 0] // 2 + 128  # cats redder: something to learn
    classifier = CatsDogsClassifier(network=network, image_size=IMAGE_SIZE, **options)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    trainer.fit(classifier, train_dataloaders=loader, val_dataloaders=loader)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    # Not square and not 16 px: explain must resize and crop exactly as predict does.
    folder = tmp_path_factory.mktemp("photo")
    return write_image(folder / "cat.jpg", CAT_COLOR, size=(40, 30), noise=25, seed=3)


@pytest.fixture(scope="module", params=list_models())
def checkpoint(request, tmp_path_factory) -> Path:
    return train_tiny_checkpoint(request.param, tmp_path_factory.mktemp(request.param) / "tiny.ckpt")


def run_main(main, argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def explain_json(checkpoint: Path, photo: Path, capsys, *extra: str) -> dict:
    code, out, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(photo), "--json", *extra], capsys)
    assert code == 0, err

    def refuse(constant: str) -> None:
        raise AssertionError(f"explain.py wrote {constant}, which is not JSON")

    return json.loads(out, parse_constant=refuse)


def predict_json(checkpoint: Path, photo: Path, capsys) -> dict:
    """predict.py's own record for the photo: the p_cat explain.py must match."""
    code, out, err = run_main(
        predict.main, ["--ckpt", str(checkpoint), str(photo), "--format", "json"], capsys
    )
    assert code == 0, err
    (predicted,) = json.loads(out)
    return predicted


def model_forward(checkpoint: Path, photo: Path):
    """The oracle: the model's own forward pass on the photo, decoded as predict.py decodes it."""
    classifier = load_classifier(checkpoint)
    image = decode_image(photo, IMAGE_SIZE).unsqueeze(0)  # (1, 3, S, S) uint8
    with torch.inference_mode():
        return classifier, classifier.network.forward_with_intermediates(classifier.normalize(image))


def test_p_cat_equals_predict_py(checkpoint, photo, capsys):
    explained = explain_json(checkpoint, photo, capsys)
    predicted = predict_json(checkpoint, photo, capsys)
    assert abs(explained["p_cat"] - predicted["p_cat"]) <= 1e-6
    assert explained["label"] == predicted["label"]


def test_flip_averaged_p_cat_is_explained_and_equals_predict_py(photo, capsys, tmp_path):
    checkpoint = train_tiny_checkpoint("mlp", tmp_path / "tta.ckpt", tta_flip=True)
    explained = explain_json(checkpoint, photo, capsys)
    predicted = predict_json(checkpoint, photo, capsys)
    assert abs(explained["p_cat"] - predicted["p_cat"]) <= 1e-6
    classifier, (logits, _) = model_forward(checkpoint, photo)
    image = decode_image(photo, IMAGE_SIZE).unsqueeze(0)
    with torch.inference_mode():
        mirrored = classifier.network(classifier.normalize(image.flip(-1)))
    assert explained["z_photo"] == pytest.approx(logits[0].item(), abs=1e-6)
    assert explained["z_mirrored"] == pytest.approx(mirrored[0].item(), abs=1e-6)
    assert explained["z"] == pytest.approx((explained["z_photo"] + explained["z_mirrored"]) / 2, abs=1e-6)
    assert explained["z_photo"] != pytest.approx(explained["z_mirrored"], abs=1e-4)  # the pair differs
    code, text, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(photo)], capsys)
    assert code == 0, err
    assert f"Test-time flip averaging: z = (z of this photo {explained['z_photo']:.4f}" in text


def test_per_image_normalisation_is_explained_and_equals_predict_py(photo, capsys, tmp_path):
    checkpoint = train_tiny_checkpoint("mlp", tmp_path / "per_image.ckpt", input_norm="per_image")
    explained = explain_json(checkpoint, photo, capsys)
    predicted = predict_json(checkpoint, photo, capsys)
    assert abs(explained["p_cat"] - predicted["p_cat"]) <= 1e-6
    assert explained["input"]["input_norm"] == "per_image"
    assert abs(explained["input"]["x_stats"]["mean"]) < 1e-5  # the photo's own mean taken out
    code, text, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(photo)], capsys)
    assert code == 0, err
    assert "standardised with this photo's own mean m and std s" in text


def test_json_layers_are_the_forward_pass(checkpoint, photo, capsys):
    explained = explain_json(checkpoint, photo, capsys)
    classifier, (logits, traces) = model_forward(checkpoint, photo)
    linears = classifier.network.linear_layers()
    assert [layer["name"] for layer in explained["layers"]] == list(traces) == list(linears)
    for layer in explained["layers"]:
        z = traces[layer["name"]].z[0].double()
        expected = {"min": z.min(), "mean": z.mean(), "max": z.max(), "std": z.std(correction=0)}
        for key, value in expected.items():
            assert layer["z_stats"][key] == pytest.approx(value.item(), rel=1e-9, abs=1e-9), layer["name"]
        weight = linears[layer["name"]].weight
        assert layer["weight_shape"] == list(weight.shape)
        assert layer["x_shape"][-1] == weight.shape[1]  # W (out, in) multiplies an x of length in
    assert explained["z"] == pytest.approx(logits[0].item(), abs=1e-9)
    assert explained["p_cat"] == pytest.approx(torch.sigmoid(logits[0]).item(), abs=1e-9)
    # z = (terms towards cat) + (terms towards dog) + b: the explanation adds up
    total = explained["terms_towards_cat"] + explained["terms_towards_dog"] + explained["bias"]
    assert total == pytest.approx(explained["z"], abs=1e-4)
    assert explained["input"]["x_length"] == 3 * IMAGE_SIZE * IMAGE_SIZE
    assert explained["input"]["original_size"] == [40, 30]


def test_active_units_and_top_units_match_the_forward_pass(checkpoint, photo, capsys):
    explained = explain_json(checkpoint, photo, capsys, "--top", "3")
    _, (_, traces) = model_forward(checkpoint, photo)
    for layer in explained["layers"][:-1]:
        a = traces[layer["name"]].a[0]
        if layer["active_when"] == "A > 0":
            assert layer["active"] == int((a > 0).sum())
        assert len(layer["top_units"]) == min(3, a.numel())
        assert layer["top_units"][0]["a"] == pytest.approx(a.max().item())


def test_text_shows_formula_stats_and_decision(checkpoint, photo, capsys):
    code, text, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(photo)], capsys)
    assert code == 0, err
    explained = explain_json(checkpoint, photo, capsys)
    first = explained["layers"][0]
    out, width = first["weight_shape"]
    if first["kind"] == "output":  # logistic regression: the whole model is one z = w x + b
        assert f"z = w (1×{width}) · x ({width}) + b (1)" in text
    else:
        assert f"Z1 = W1 ({out}×{width}) · x ({width}) + b1 ({out})" in text
        stats = first["z_stats"]
        assert f"Z1: min {stats['min']:.4g}, mean {stats['mean']:.4g}, max {stats['max']:.4g}" in text
    assert f"length 3·{IMAGE_SIZE}·{IMAGE_SIZE} = {3 * IMAGE_SIZE**2}" in text
    p_cat = explained["p_cat"]
    sign = ">=" if p_cat >= 0.5 else "<"
    assert f"= {p_cat:.4f}\n  {p_cat:.4f} {sign} 0.5, so: {explained['label']}\n" in text
    if explained["network"] == "mixer":
        assert "token mixing" in text and "channel mixing" in text
        assert "For each of the" in text  # W is applied per patch or per feature
    if explained["network"] == "shift_mlp":
        assert "patch merging" in text and "moved one patch down, up, right and left" in text
        # a token grid reads as rows of patches, and a layer fed by the previous A says so
        assert "For each of the 16 patches" in text and "where x is one row of A" in text


def test_threshold_decides(checkpoint, photo, capsys):
    assert explain_json(checkpoint, photo, capsys, "--threshold", "0")["label"] == "cat"
    assert explain_json(checkpoint, photo, capsys, "--threshold", "1.01")["label"] == "dog"


def test_html_page_is_self_contained(checkpoint, photo, capsys, tmp_path):
    page = tmp_path / "page.html"
    argv = ["--ckpt", str(checkpoint), str(photo), "--html", str(page)]
    code, _, err = run_main(explain.main, argv, capsys)
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    images = text.split('src="data:image/png;base64,')[1:]
    photo_png = Image.open(io.BytesIO(base64.b64decode(images[0].split('"', 1)[0])))
    assert photo_png.size == (PHOTO_SIDE, PHOTO_SIDE)
    network = load_classifier(checkpoint).network
    first = next(iter(network.linear_layers().values()))
    if first.in_features == 3 * IMAGE_SIZE**2:  # the first layer sees the whole image: templates shown
        assert len(images) >= 2 and "What the first layer matched" in text
    else:
        assert len(images) == 1
    assert (
        text.count('aria-label="A of each unit"') == len(network.linear_layers()) - 1
    )  # bars per hidden layer
    assert text.count('aria-label="p_cat = sigmoid(z)"') == 1  # and the sigmoid curve with this photo's z


def test_unreadable_photo_and_bad_checkpoint_exit_2(checkpoint, photo, capsys, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not an image")
    code, out, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(not_a_photo)], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "notes.jpg" in err
    code, _, err = run_main(explain.main, ["--ckpt", str(checkpoint), str(tmp_path / "missing.jpg")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    code, _, err = run_main(explain.main, ["--ckpt", str(broken), str(photo)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "broken.ckpt" in err


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
def test_page_renders_in_headless_chromium(tmp_path):
    checkpoint = train_tiny_checkpoint("mlp", tmp_path / "mlp.ckpt")
    photo = write_image(tmp_path / "cat.jpg", CAT_COLOR, size=(40, 30), noise=25)
    out = tmp_path / "page.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "explain_screenshot.py"), "--ckpt", str(checkpoint),
         "--photo", str(photo), "--out", str(out), "--width", "800", "--height", "900"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    screenshot = Image.open(out).convert("RGB")
    assert screenshot.size == (800, 900)
    # Rendered, not blank: the headline's orange (cat) or blue (dog) covers a good patch of pixels.
    pixels = torch.from_numpy(np.asarray(screenshot, dtype=np.int32)).reshape(-1, 3)  # (H*W, 3)
    for colour in ((224, 102, 47), (47, 111, 224)):
        near = ((pixels - torch.tensor(colour)).abs().max(dim=1).values <= 12).sum()
        if near > 500:
            break
    else:
        raise AssertionError("neither the cat nor the dog colour is on the screenshot")
