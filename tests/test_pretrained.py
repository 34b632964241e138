"""Pretrained weights: Hub-layout folders (config.json, model.safetensors, README.md), loaded by
name or folder, sha256-checked, never unpickled, without Lightning.

The trained run's best.ckpt is the oracle: every folder made from it, by export.py --format
hub or by benchmarks/publish_weights.py, must give its p_cat to 1e-6. A zoo of one entry is
published into tmp_path and made the shipped weights with $CATSDOGS_WEIGHTS; the weights that
really ship (weights/) are loaded and checked against their cards where they exist.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import explain
import export
import predict
from benchmarks import publish_weights
from benchmarks.publish_weights import publish
from datasets import decode_image, decode_many, find_image_files
from inference import CatsDogsPredictor, PCatModel, load_model, read_checkpoint
from inference.export import export_model
from inference.hub import PCatHubModel
from models import ModelConfigError, ModelFileError, create_model, list_models
from models.pretrained import (
    CONFIG_NAME,
    INDEX_NAME,
    WEIGHTS_ENV,
    WEIGHTS_NAME,
    file_sha256,
    read_index,
    weights_dir,
    write_index,
)
from tests.conftest import REPO, SHARED_DATA, run_script

ENTRY = "tiny_article"  # the zoo entry published from the trained run
# What weights/ holds in this checkout; until the weights are published, one case that says so.
SHIPPED = list_models(pretrained=True) or [
    pytest.param(
        None, marks=pytest.mark.skip(reason="no weights ship in weights/ yet (benchmarks/publish_weights.py)")
    )
]
TEST_FOLDER = SHARED_DATA / "cats_and_dogs_filtered" / "validation"


@pytest.fixture(scope="module")
def photos(trained_run) -> tuple[list[str], torch.Tensor]:
    """The run's readable photos and their pixels, uint8 (N, 3, S, S), decoded as predict.py does."""
    decoded = decode_many(find_image_files([str(trained_run.pets)]), 16, workers=1)
    readable = [(path, image) for path, image, _ in decoded if image is not None]
    return [path for path, _ in readable], torch.stack([image for _, image in readable])


@pytest.fixture(scope="module")
def expected(trained_run, photos) -> torch.Tensor:
    with torch.inference_mode():
        return load_model(trained_run.best)(photos[1])  # (N,)


@pytest.fixture(scope="module")
def hub_folder(trained_run, tmp_path_factory) -> Path:
    """`python export.py --ckpt best.ckpt --format hub --output DIR`, as a user saves their own."""
    folder = tmp_path_factory.mktemp("saved") / "my_model"
    result = run_script(
        "export.py", "--ckpt", trained_run.best, "--format", "hub", "--output", folder, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert f"python predict.py --pretrained {folder}" in result.stdout
    return folder


@pytest.fixture(scope="module")
def results(trained_run) -> list[dict]:
    """Two seeds of one config as benchmarks/zoo.py reports them: seed 1 (best.ckpt) validates better."""
    run = {
        "config": ENTRY,
        "params": 12345,
        "epochs": 3,
        "fit_seconds": 4.2,
        "images_per_second": 100.0,
        "command": "python train.py --config configs/mlp_article.yaml "
        "--data.root ../shared/data/dogs-vs-cats --seed_everything 1",
        "precision": "bf16-mixed",
    }
    worse = {
        "seed": 0,
        "best_val_acc": 0.60,
        "test_acc": 0.5,
        "test_auroc": 0.5,
        "best_ckpt": str(trained_run.last),
    }
    better = {"seed": 1, "best_val_acc": 0.75, "test_acc": 0.719, "test_auroc": 0.8125}
    return [{**run, **worse}, {**run, **better, "best_ckpt": str(trained_run.best)}]


@pytest.fixture(scope="module")
def zoo(results, trained_run, tmp_path_factory) -> Path:
    weights = tmp_path_factory.mktemp("weights")
    publish(results, weights, photos=trained_run.pets)
    return weights


@pytest.fixture
def shipped_zoo(zoo, monkeypatch) -> Path:
    """The published zoo as the shipped weights, for this test."""
    monkeypatch.setenv(WEIGHTS_ENV, str(zoo))
    return zoo


def p_cat_of(model, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images)


def one_error_line(captured) -> str:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_save_pretrained_round_trip_gives_the_checkpoints_p_cat(hub_folder, trained_run, photos, expected):
    assert sorted(path.name for path in hub_folder.iterdir()) == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((hub_folder / CONFIG_NAME).read_text())
    assert {k: config[k] for k in load_model(trained_run.best).config} == load_model(trained_run.best).config
    assert config["model_sha256"] == file_sha256(hub_folder / WEIGHTS_NAME)
    for model in (load_model(hub_folder), PCatHubModel.from_pretrained(hub_folder)):
        assert isinstance(model, PCatModel) and not model.training
        torch.testing.assert_close(p_cat_of(model, photos[1]), expected, rtol=0, atol=1e-6)
    predictions = CatsDogsPredictor.from_pretrained(hub_folder).predict_files([str(trained_run.pets)])
    assert [p.p_cat for p in predictions if p.error is None] == pytest.approx(expected.tolist(), abs=1e-6)


def test_publish_picks_the_best_validation_seed_and_states_its_test_figures(zoo):
    assert sorted(path.name for path in zoo.iterdir()) == [INDEX_NAME, ENTRY]  # no partial folder left
    index = read_index(zoo)
    assert sorted(index) == [f"{ENTRY}/{name}" for name in ("README.md", CONFIG_NAME, WEIGHTS_NAME)]
    assert all(file_sha256(zoo / name) == digest for name, digest in index.items())
    card = (zoo / ENTRY / "README.md").read_text()
    assert "Seed 1:" in card and "--seed_everything 1" in card and "71.9%" in card and "0.812" in card
    assert "non-commercial" in card  # the photos' terms travel with the weights
    assert "`dogs-vs-cats`: 6,999 original training photos" in card and "in bf16-mixed" in card
    results = {
        r.metric_type: r.metric_value for r in ModelCard.load(zoo / ENTRY / "README.md").data.eval_results
    }
    assert results == {"accuracy": 0.719, "roc_auc": 0.8125}


def test_publish_keeps_the_old_folder_when_the_new_one_differs_from_its_checkpoint(
    zoo, results, trained_run, tmp_path, monkeypatch
):
    weights = tmp_path / "weights"
    shutil.copytree(zoo, weights)
    before, load_folder = read_index(weights), publish_weights.load_folder

    def off_by_a_little(folder: Path) -> PCatModel:  # the folder as read back, one bias nudged
        model = load_folder(folder)
        with torch.no_grad():
            model.network.head.bias += 1e-3
        return model

    monkeypatch.setattr(publish_weights, "load_folder", off_by_a_little)
    with pytest.raises(RuntimeError, match="away from its checkpoint"):
        publish_weights.publish(results, weights, photos=trained_run.pets)
    assert sorted(path.name for path in weights.iterdir()) == [INDEX_NAME, ENTRY]  # no .new left
    assert (
        read_index(weights)
        == before
        == {f"{ENTRY}/{path.name}": file_sha256(path) for path in (weights / ENTRY).iterdir()}
    )


def test_create_model_pretrained_loads_shipped_names(shipped_zoo, photos, expected):
    assert list_models(pretrained=True) == [ENTRY]
    model = create_model(ENTRY, pretrained=True)
    assert isinstance(model, PCatModel) and not model.training
    torch.testing.assert_close(p_cat_of(model, photos[1]), expected, rtol=0, atol=1e-6)
    with pytest.raises(ModelConfigError, match="takes no arguments"):
        create_model(ENTRY, pretrained=True, image_size=32)
    with pytest.raises(ModelConfigError, match=f"unknown pretrained model 'nope'; shipped: {ENTRY}"):
        create_model("nope", pretrained=True)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_loads_by_name(name):
    model = create_model(name, pretrained=True)
    assert isinstance(model, PCatModel) and not model.training
    stored, loaded = load_file(weights_dir() / name / WEIGHTS_NAME), model.state_dict()
    assert loaded.keys() == stored.keys()
    for key, tensor in stored.items():  # byte for byte what the file holds, in its dtype
        assert loaded[key].dtype == tensor.dtype and loaded[key].numpy().tobytes() == tensor.numpy().tobytes()
    images = torch.randint(0, 256, (2, 3, model.image_size, model.image_size), dtype=torch.uint8)
    p_cat = p_cat_of(model, images)
    assert p_cat.shape == (2,) and bool(((p_cat >= 0) & (p_cat <= 1)).all())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_reproduces_its_cards_test_figures(name):
    if not TEST_FOLDER.is_dir():
        pytest.skip(f"needs the test photos in {TEST_FOLDER} (absent on this machine)")
    model = create_model(name, pretrained=True)
    card = {r.metric_type: r.metric_value for r in ModelCard.load(model_card(name)).data.eval_results}
    files = [(path, 1) for path in find_image_files([str(TEST_FOLDER / "cats")])]
    files += [(path, 0) for path in find_image_files([str(TEST_FOLDER / "dogs")])]
    images = torch.stack(
        [image for _, image, _ in decode_many([path for path, _ in files], model.image_size)]
    )
    labels = torch.tensor([label for _, label in files])
    p_cat = p_cat_of(model, images)
    accuracy = ((p_cat >= model.threshold).long() == labels).float().mean().item()
    # A few photos either way: a run in bf16-mixed was tested under autocast, and the shipped
    # model predicts in float32, which moves p_cat near 0.5 across the threshold now and then.
    assert accuracy == pytest.approx(card["accuracy"], abs=3.5 / len(files))
    assert auroc(p_cat, labels) == pytest.approx(card["roc_auc"], abs=3e-3)


def test_predict_py_pretrained_starts_without_lightning_or_the_hub(hub_folder, trained_run, photos, expected):
    """The real script on a folder: its rows are the checkpoint's p_cat, and -X importtime shows
    that neither Lightning nor huggingface_hub (nor onnxruntime) was imported on the way."""
    command = [sys.executable, "-X", "importtime", str(REPO / "predict.py"), "--pretrained", str(hub_folder)]
    result = subprocess.run(
        [*command, "--format", "json", str(trained_run.pets)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["path"]: row["p_cat"] for row in json.loads(result.stdout)}
    assert [rows[path] for path in photos[0]] == pytest.approx(expected.tolist(), abs=1e-6)
    imported = {
        line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "torch" in imported and "safetensors" in imported  # the parse sees real imports
    unwanted = (
        "lightning",
        "pytorch_lightning",
        "lightning_fabric",
        "torchmetrics",
        "huggingface_hub",
        "onnxruntime",
    )
    assert not sorted(name for name in imported if name.split(".")[0] in unwanted)


def test_explain_and_export_take_pretrained(hub_folder, shipped_zoo, trained_run, tmp_path, capsys):
    photo = trained_run.pets / "Cat" / "0.jpg"
    for source in (ENTRY, str(hub_folder)):
        assert predict.main(["--pretrained", source, "--format", "json", str(photo)]) == 0
        predicted = json.loads(capsys.readouterr().out)[0]["p_cat"]
        assert explain.main(["--pretrained", source, "--json", str(photo)]) == 0
        assert json.loads(capsys.readouterr().out)["p_cat"] == pytest.approx(predicted, abs=1e-6)
    onnx = tmp_path / "tiny.onnx"
    assert export.main(["--pretrained", ENTRY, "--format", "onnx", "--output", str(onnx)]) == 0
    assert f"--ckpt {onnx}" in capsys.readouterr().out
    images = decode_image(photo, 16)[None]  # (1, 3, 16, 16)
    torch.testing.assert_close(
        p_cat_of(load_model(onnx), images), p_cat_of(load_model(trained_run.best), images), rtol=0, atol=1e-5
    )  # ONNX Runtime sums in its own order


def test_unknown_name_lists_the_shipped_ones_in_one_line(shipped_zoo, trained_run, capsys):
    for script in (predict, explain):
        assert script.main(["--pretrained", "mlp_articel", str(trained_run.pets / "Cat" / "0.jpg")]) == 2
        line = one_error_line(capsys.readouterr())
        assert "unknown pretrained model 'mlp_articel'" in line and f"shipped: {ENTRY}" in line
    assert export.main(["--pretrained", "mlp_articel", "--format", "onnx"]) == 2
    assert f"shipped: {ENTRY}" in one_error_line(capsys.readouterr())


HUGE = [100_000_000, 100_000_000]  # hidden widths: built for real, 4.9 TB asked of the allocator


def with_hidden_dims(config: dict, hidden_dims: list[int]) -> dict:
    return {**config, "network_kwargs": {**config["network_kwargs"], "hidden_dims": hidden_dims}}


@pytest.mark.parametrize("source", ["checkpoint", "safetensors export", "weights folder", "shipped name"])
def test_a_config_asking_for_a_huge_network_is_refused_before_it_is_allocated(
    source, trained_run, zoo, tmp_path, monkeypatch, capsys
):
    weights = tmp_path / "weights"
    if source == "checkpoint":
        data = read_checkpoint(trained_run.best)
        data["catsdogs"]["model_config"] = with_hidden_dims(data["catsdogs"]["model_config"], HUGE)
        option, path = "--ckpt", tmp_path / "huge.ckpt"
        torch.save(data, path)
    elif source == "safetensors export":
        exported = export_model(load_model(trained_run.best), "safetensors", tmp_path / "model.safetensors")
        with safe_open(exported, framework="pt") as file:
            metadata, tensors = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
        metadata["config"] = json.dumps(with_hidden_dims(json.loads(metadata["config"]), HUGE))
        option, path = "--ckpt", tmp_path / "huge.safetensors"
        save_file(tensors, path, metadata=metadata)
    else:
        shutil.copytree(zoo, weights)
        config_file = weights / ENTRY / CONFIG_NAME
        config_file.write_text(json.dumps(with_hidden_dims(json.loads(config_file.read_text()), HUGE)))
        write_index(weights)  # the edit recorded too, as if shipped so: only the shapes can tell
        monkeypatch.setenv(WEIGHTS_ENV, str(weights))
        option, path = "--pretrained", ENTRY if source == "shipped name" else weights / ENTRY
    started = time.perf_counter()
    assert predict.main([option, str(path), str(trained_run.pets / "Cat" / "0.jpg")]) == 2
    line = one_error_line(capsys.readouterr())
    assert "layer1.linear.weight is [32, 768] torch.float32 in the weights but [100000000, 768]" in line, line
    assert f"'{weights / ENTRY if path == ENTRY else path}' does not match" in line  # a name: its folder
    assert time.perf_counter() - started < 30  # no network built: the check reads shapes only


def test_weights_of_another_dtype_are_refused_before_they_are_used(hub_folder, tmp_path, capsys):
    folder = tmp_path / "float64"
    shutil.copytree(hub_folder, folder)
    tensors = load_file(folder / WEIGHTS_NAME)
    name = next(name for name in tensors if name.endswith("layer1.linear.weight"))
    tensors[name] = tensors[name].double()
    save_file(tensors, folder / WEIGHTS_NAME)
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(
        json.dumps({**config, "model_sha256": file_sha256(folder / WEIGHTS_NAME)})
    )
    with pytest.raises(
        ModelFileError,
        match=f"{re.escape(name)} is \\[32, 768\\] torch.float64 in the weights but .*torch.float32",
    ):
        load_model(folder)


def damage(folder: Path, how: str) -> Path:
    if how == "flipped byte":  # same size, one bit changed: only a checksum sees it
        data = bytearray((folder / WEIGHTS_NAME).read_bytes())
        data[len(data) // 2] ^= 1
        (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    elif how == "truncated":
        data = (folder / WEIGHTS_NAME).read_bytes()
        (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 3])
    else:  # a config.json edited by hand: a shipped folder's index still catches it
        config = json.loads((folder / CONFIG_NAME).read_text())
        (folder / CONFIG_NAME).write_text(json.dumps({**config, "threshold": 0.1}))
    return folder / (CONFIG_NAME if how == "edited config" else WEIGHTS_NAME)


@pytest.mark.parametrize("how", ["flipped byte", "truncated", "edited config"])
def test_damaged_weights_fail_in_one_line_with_status_2(zoo, tmp_path, monkeypatch, trained_run, capsys, how):
    weights = tmp_path / "weights"
    shutil.copytree(zoo, weights)
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    damaged = damage(weights / ENTRY, how)
    sources = [ENTRY] if how == "edited config" else [ENTRY, str(weights / ENTRY)]  # by name, as a folder
    for source in sources:
        assert predict.main(["--pretrained", source, str(trained_run.pets / "Cat" / "0.jpg")]) == 2
        line = one_error_line(capsys.readouterr())
        assert f"'{damaged}'" in line and "sha256" in line and "get it again" in line


def test_an_unreachable_repo_id_fails_in_one_line_when_offline(trained_run, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "predict.py"),
            "--pretrained",
            "someone/catsdogs-mlp",
            str(trained_run.pets),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and not result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert "could not reach the Hugging Face Hub for 'someone/catsdogs-mlp' (offline" in result.stderr


def model_card(name: str) -> Path:
    from models.pretrained import weights_dir

    return weights_dir() / name / "README.md"


def auroc(p_cat: torch.Tensor, labels: torch.Tensor) -> float:
    """P(a random cat scores above a random dog), ties counted half: the area under the ROC curve."""
    cats, dogs = p_cat[labels == 1], p_cat[labels == 0]
    above = (cats[:, None] > dogs[None, :]).float() + 0.5 * (cats[:, None] == dogs[None, :]).float()
    return above.mean().item()
