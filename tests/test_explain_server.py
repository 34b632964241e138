"""explain.py --serve's JSON API: the page's numbers are the forward pass's, before and after a change.

The oracle is the model loaded in the test and changed by hand on a copy (a bias zeroed,
a W scaled, a unit switched off as a zeroed column of the next layer's W), then run through
predict.py and forward_with_intermediates. Bad uploads and requests that try to name a file
get a 4xx answer with a message.
"""

import copy
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import explain
import predict
from datasets import decode_image
from explanation.ablation import Ablation
from explanation.live import MISTAKE_COUNT, Samples
from explanation.server import LiveExplainer, create_app
from explanation.walk import Stats
from inference import load_model
from models import PCatModel, list_models
from tests.live_server import fetch, post_photo, running

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def model(trained_run) -> PCatModel:
    return load_model(trained_run.best)


@pytest.fixture(scope="module")
def base(trained_run, model) -> str:
    explainer = LiveExplainer(model, samples=Samples(model, trained_run.pets))
    with running(create_app(explainer)) as url:
        yield url


@pytest.fixture(scope="module")
def photos(trained_run) -> list[Path]:
    return [trained_run.pets / "Cat" / "3.jpg", trained_run.pets / "Dog" / "5.jpg"]


def explain_page(base: str, photo: str, ablation: dict | None = None) -> dict:
    status, data = fetch(f"{base}/api/explain", {"photo": photo, "ablation": ablation or {}})
    assert status == 200, data
    return data


def forward(model: PCatModel, image: torch.Tensor) -> tuple[float, dict]:
    with torch.inference_mode():
        p_cat = model(image.unsqueeze(0))[0].item()
        _, traces = model.forward_with_intermediates(image.unsqueeze(0))
    return p_cat, traces


def assert_layers_match(page: dict, traces: dict, skip_a: tuple[str, ...] = ()) -> None:
    assert [layer["name"] for layer in page["layers"]] == list(traces)
    for layer in page["layers"]:
        trace = traces[layer["name"]]
        assert layer["z_stats"] == pytest.approx(asdict(Stats.of(trace.z[0])), abs=TOLERANCE), layer["name"]
        if layer["name"] not in skip_a:
            assert layer["a_stats"] == pytest.approx(asdict(Stats.of(trace.a[0])), abs=TOLERANCE), layer[
                "name"
            ]


def test_p_cat_and_every_layers_z_are_predict_pys_and_the_forward_pass(
    base, model, trained_run, photos, capsys
):
    assert predict.main(["--ckpt", str(trained_run.best), "--format", "json", *map(str, photos)]) == 0
    predicted = {row["path"]: row["p_cat"] for row in json.loads(capsys.readouterr().out)}
    for photo in photos:
        page = explain_page(base, post_photo(base, photo.read_bytes()))
        assert abs(page["p_cat"] - predicted[str(photo)]) <= TOLERANCE, photo
        _, traces = forward(model, decode_image(photo, model.image_size))
        assert_layers_match(page, traces)
        for layer in page["layers"][:-1]:  # the bars are the units' own Z and A
            assert layer["z_per_unit"] == pytest.approx(traces[layer["name"]].z[0].tolist(), abs=TOLERANCE)
        assert page["input"]["original_size"] is not None and page["x_image"].startswith("data:image/png")


def test_an_ablation_matches_the_same_change_made_by_hand(base, model, trained_run, photos):
    checkpoint_bytes = hashlib.sha256(trained_run.best.read_bytes()).hexdigest()
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    photo = post_photo(base, photos[0].read_bytes())
    image = decode_image(photos[0], model.image_size)
    _, traces = forward(model, image)
    unit = int(traces["layer3"].a[0].argmax())  # the last hidden layer's strongest unit
    ablation = {
        "units_off": {"layer3": [unit]},
        "zero_bias": ["layer1"],
        "weight_scale": {"layer2": 0.5},
        "flip": True,
    }
    page = explain_page(base, photo, ablation)

    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        by_hand.network.hidden["layer1"].linear.bias.zero_()
        by_hand.network.hidden["layer2"].linear.weight.mul_(0.5)
        by_hand.network.head.weight[:, unit] = 0  # A3[unit] = 0 is what the head then sees
    p_cat, traces = forward(by_hand, image.flip(-1))
    assert abs(page["p_cat"] - p_cat) <= TOLERANCE
    assert_layers_match(page, traces, skip_a=("layer3",))
    a3 = traces["layer3"].a[0].clone()
    a3[unit] = 0
    layer3 = page["layers"][2]
    assert layer3["a_stats"] == pytest.approx(asdict(Stats.of(a3)), abs=TOLERANCE)
    assert layer3["a_per_unit"][unit] == 0 and layer3["z_per_unit"][unit] != 0  # Z as computed, A cut

    # Reset is the empty ablation: the trained network again; neither the model nor its file changed.
    assert abs(explain_page(base, photo)["p_cat"] - forward(model, image)[0]) <= TOLERANCE
    assert all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())
    assert hashlib.sha256(trained_run.best.read_bytes()).hexdigest() == checkpoint_bytes


def test_a_units_terms_add_up_to_its_z_and_samples_rank_by_its_a(base, model, trained_run, photos):
    photo = post_photo(base, photos[1].read_bytes())
    image = decode_image(photos[1], model.image_size)
    _, traces = forward(model, image)
    unit = int(traces["layer1"].a[0].argmax())
    status, data = fetch(f"{base}/api/unit", {"photo": photo, "layer": "layer1", "unit": unit})
    assert status == 200, data
    assert data["z"] == pytest.approx(traces["layer1"].z[0, unit].item(), abs=TOLERANCE)
    assert data["terms_up"] + data["terms_down"] + data["bias"] == pytest.approx(data["z"], abs=1e-4)
    weight = model.network.hidden["layer1"].linear.weight[unit]
    x = model.normalize(image.unsqueeze(0)).flatten()
    for term in data["terms"]:
        assert term["term"] == pytest.approx(weight[term["j"]].item() * x[term["j"]].item(), abs=1e-5)
    assert data["template"].startswith("data:image/png")  # the first layer's row, as a 16x16 picture
    samples = Samples(model, trained_run.pets)
    a = torch.stack([forward(model, s.image)[1]["layer1"].a[0, unit] for s in samples.photos])
    assert [s["id"] for s in data["samples"]] == [f"s{k}" for k in a.argsort(descending=True)[:4].tolist()]


@pytest.mark.parametrize("network", list_models())
def test_every_family_is_served_from_its_own_forward_pass(network, trained_run):
    torch.manual_seed(0)
    model = PCatModel(network, image_size=16).eval()
    photo_file = trained_run.pets / "Cat" / "1.jpg"
    image = decode_image(photo_file, 16)
    linears = model.network.linear_layers()
    switchable = list(model.network.dense_layers())
    ablation = {"zero_bias": [next(iter(linears))], "weight_scale": {"head": 1.5}}
    if switchable:
        ablation["units_off"] = {switchable[-1]: [0]}
    with running(create_app(LiveExplainer(model))) as base:
        photo = post_photo(base, photo_file.read_bytes())
        page = explain_page(base, photo)
        changed = explain_page(base, photo, ablation)
        status, unit = fetch(
            f"{base}/api/unit", {"photo": photo, "layer": switchable[0] if switchable else "head", "unit": 0}
        )
    p_cat, traces = forward(model, image)
    assert abs(page["p_cat"] - p_cat) <= TOLERANCE
    assert_layers_match(page, traces)
    by_hand = Ablation.from_dict(ablation, model).apply(model)
    assert abs(changed["p_cat"] - forward(by_hand, image)[0]) <= TOLERANCE
    with torch.no_grad():  # the same bias and scale, by hand: the network before any unit is off
        plain = copy.deepcopy(model)
        linears = plain.network.linear_layers()
        next(iter(linears.values())).bias.zero_()
        linears["head"].weight.mul_(1.5)
    assert changed["layers"][0]["z_stats"] == pytest.approx(
        asdict(Stats.of(forward(plain, image)[1][next(iter(linears))].z[0])), abs=TOLERANCE
    )
    if switchable:
        assert changed["layers"][list(linears).index(switchable[-1])]["a_per_unit"][0] == 0
    assert status == 200, unit
    if network in ("mixer", "shift_mlp"):  # patch embedding: the weight row is one patch's picture
        assert unit["template"].startswith("data:image/png") and unit["a_grid"] is not None


def test_bad_uploads_get_a_message_not_a_500(model, base):
    raw = {"Content-Type": "application/octet-stream"}
    status, answer = fetch(f"{base}/api/photos", b"these are not the pixels you are looking for", raw)
    assert status == 415 and "not a photo" in answer["error"], answer
    status, answer = fetch(f"{base}/api/photos", b"", raw)
    assert status == 400 and "empty" in answer["error"], answer
    small = LiveExplainer(model, max_upload_bytes=64 * 1024)
    with running(create_app(small)) as small_base:
        status, answer = fetch(f"{small_base}/api/photos", b"\xff\xd8" + bytes(100 * 1024), raw)
    assert status == 413 and "64 KiB" in answer["error"], answer


def test_no_request_reaches_a_file_or_another_model(base):
    for path in (
        "/assets/../explain.py",
        "/assets/%2e%2e/%2e%2e/pyproject.toml",
        "/assets/..%2F..%2Fexplain.py",
        "/assets/index.html/../../server.py",
        "/assets/server.py",
        "/../../pyproject.toml",
    ):
        status, content = fetch(base + path)
        assert status == 404, path
        assert b"import" not in (content if isinstance(content, bytes) else json.dumps(content).encode())
    status, script = fetch(f"{base}/assets/app.js")
    assert status == 200 and b"forward_with_intermediates" in script
    for query, message in (
        ({"photo": "s0", "ckpt": "/tmp/other.ckpt"}, "unknown field 'ckpt'"),
        ({"photo": "../../etc/passwd"}, "no such photo"),
        ({"photo": "s9999"}, "no such photo"),
        ({"photo": "s0", "ablation": {"units_off": {"head": [0]}}}, "no units to switch off"),
        ({"photo": "s0", "ablation": {"weight_scale": {"layer1": 1e9}}}, "from -10 to 10"),
    ):
        status, answer = fetch(f"{base}/api/explain", query)
        assert status in (400, 404) and message in answer["error"], (query, answer)
    status, _ = fetch(f"{base}/api/model", headers={"Host": "attacker.example"})  # DNS rebinding
    assert status == 400


def test_the_page_is_served_with_a_policy_that_fetches_nothing_elsewhere(base):
    status, page = fetch(base + "/")
    assert status == 200 and b"/assets/app.js" in page
    assert b"http://" not in page and b"https://" not in page


def test_explain_py_serve_arguments_fail_in_one_line(trained_run, tmp_path, capsys):
    for argv in (
        ["--ckpt", str(trained_run.best)],  # neither a photo nor --serve
        ["--ckpt", str(trained_run.best), "--serve", "photo.jpg"],
        ["--ckpt", str(trained_run.best), "photo.jpg", "--port", "8001"],
    ):
        with pytest.raises(SystemExit) as exited:
            explain.main(argv)
        assert exited.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    status = explain.main(["--ckpt", str(trained_run.best), "--serve", "--samples", str(tmp_path / "none")])
    assert status == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--samples" in line and "none" in line


def test_the_samples_list_the_networks_surest_mistakes_and_each_opens(model, mislabelled):
    """A labelled --samples folder: its mistakes, by hand, listed after the samples with their label
    and p_cat; opening one explains that very photo."""
    by_hand = []  # (|p_cat - label|, name, label, p_cat) of the wrong calls
    for path in sorted(mislabelled.rglob("*.jpg")):
        if path.name != "notes.jpg":
            p_cat, _ = forward(model, decode_image(path, model.image_size))
            label = int(path.parent.name == "cats")
            if (p_cat >= model.threshold) != label:
                by_hand.append((abs(p_cat - label), path.relative_to(mislabelled).as_posix(), label, p_cat))
    expected = sorted(by_hand, reverse=True)[:MISTAKE_COUNT]
    assert expected, "the tiny network called every photo as filed"
    with running(create_app(LiveExplainer(model, samples=Samples(model, mislabelled)))) as url:
        status, info = fetch(f"{url}/api/model")
        assert status == 200, info
        listed = [sample for sample in info["samples"] if sample["mistake"]]
        assert [sample["name"] for sample in listed] == [name for _, name, _, _ in expected]
        for sample, (_, _, label, p_cat) in zip(listed, expected, strict=True):
            assert sample["mistake"] == f"mistake: {('dog', 'cat')[label]}, p_cat {p_cat:.2f}"
        assert explain_page(url, listed[0]["id"])["p_cat"] == pytest.approx(expected[0][3], abs=TOLERANCE)
        assert all(sample["mistake"] is None for sample in info["samples"][: -len(listed)])
    assert all(
        sample["mistake"] is None for sample in Samples(model, mislabelled / "cats").listing()
    )  # no labels
