"""inference.load_model / read_checkpoint and the three scripts on files that are not checkpoints.

Every file a user can end up holding instead of a checkpoint (an empty or cut-short copy,
a download's error page, a Git LFS pointer, an export given to a tool that needs the
checkpoint, ...) is named for what it is in one line, and exit status 2 from the scripts.
A torch file that would call code when unpickled is refused without calling it.
"""

import io
import json
import pickle
import random
import subprocess
import sys
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import explain
import export
import predict
from datasets import decode_many, find_image_files
from inference import ExportedModel, ModelFileError, PCatModel, load_model, read_checkpoint
from inference.export import export_model
from tests.conftest import REPO

UNSAFE_ADVICE = "weights_only=False"  # torch's own advice, which must never reach the user


def make_onnx(folder: Path, checkpoint: Path) -> Path:
    return export_model(load_model(checkpoint), "onnx", folder / "model.onnx")


def git_lfs_pointer(_folder: Path, checkpoint: Path) -> bytes:
    size = checkpoint.stat().st_size
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{'ab' * 32}\nsize {size}\n".encode()


def random_bytes(_folder: Path, _checkpoint: Path) -> bytes:
    data = random.Random(7).randbytes(4096)
    # Seeded, and not by chance the first byte of a format this loader tries (zip, pickle, ONNX).
    assert data[:1] not in (b"P", b"\x80", b"\x08", b"{", b"[", b"<")
    return data


def zip_of_text(_folder: Path, _checkpoint: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "photos of cats\n")
    return buffer.getvalue()


def truncated(_folder: Path, checkpoint: Path) -> bytes:
    data = checkpoint.read_bytes()
    return data[: len(data) // 2]


# kind -> (file name, its bytes or a function making the file, what the one line must call it)
NOT_CHECKPOINTS = {
    "empty": ("empty.ckpt", lambda *_: b"", "empty"),
    "text": ("x.ckpt", lambda *_: b"the checkpoint will be uploaded tomorrow\n", "text file"),
    "html": (
        "best.ckpt",
        lambda *_: b"<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>",
        "HTML",
    ),
    "json": ("best.ckpt", lambda *_: json.dumps({"error": "Not Found", "status": 404}).encode(), "JSON"),
    "random": ("weights.ckpt", random_bytes, "not a PyTorch checkpoint"),
    "git_lfs": ("best.ckpt", git_lfs_pointer, "Git LFS pointer"),
    "onnx": ("model.onnx", None, "ONNX"),  # a real export, given where the checkpoint is needed
    "zip": ("archive.ckpt", zip_of_text, "zip archive"),
    "truncated": ("best.ckpt", truncated, "truncated"),
}


def write_not_checkpoint(kind: str, folder: Path, checkpoint: Path) -> Path:
    name, content, _ = NOT_CHECKPOINTS[kind]
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "onnx":
        return make_onnx(folder, checkpoint)
    path = folder / name
    path.write_bytes(content(folder, checkpoint))
    return path


class KeptInTheCheckpoint:
    """A class defined by this test, which a checkpoint must not be able to make torch import."""

    def __init__(self) -> None:
        self.weights = torch.ones(3)


class CreatesMarker:
    """Pickles as a call to open(marker, "w"): unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_unsafe(kind: str, folder: Path, marker: Path) -> Path:
    """A real torch (or pickle) file whose unpickling would call something outside plain data."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}.ckpt"
    payload = {"state_dict": {"model.network.head.weight": torch.zeros(1, 4)}}
    if kind == "class_defined_here":
        torch.save({**payload, "extra": KeptInTheCheckpoint()}, path)
    elif kind == "reduce_zip":
        torch.save({**payload, "extra": CreatesMarker(marker)}, path)
    elif kind == "reduce_legacy":  # torch.save's pre-1.6 format: a bare pickle stream
        torch.save({**payload, "extra": CreatesMarker(marker)}, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle.dump, named .ckpt
        path.write_bytes(pickle.dumps({**payload, "extra": CreatesMarker(marker)}))
    return path


UNSAFE = ["class_defined_here", "reduce_zip", "reduce_legacy", "plain_pickle"]


def assert_one_line_about(message: str, path: Path, keyword: str) -> None:
    lines = message.strip().splitlines()
    assert len(lines) == 1, message
    assert path.name in lines[0] and keyword.lower() in lines[0].lower(), lines[0]
    assert UNSAFE_ADVICE not in message and "Traceback" not in message


@pytest.fixture(scope="module")
def checkpoint(trained_run) -> Path:
    return trained_run.best


@pytest.fixture(scope="module")
def photo(trained_run) -> Path:
    return trained_run.pets / "Cat" / "0.jpg"


@pytest.fixture(scope="module")
def pets_batch(trained_run, checkpoint) -> torch.Tensor:
    """Every readable pets photo, decoded as training decoded it: uint8 (N, 3, S, S)."""
    size = read_checkpoint(checkpoint)["catsdogs"]["model_config"]["image_size"]
    files = find_image_files([str(trained_run.pets)])
    return torch.stack([image for _, image, _ in decode_many(files, size, workers=1) if image is not None])


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_api_names_what_the_file_is_in_one_line(kind, checkpoint, tmp_path):
    path = write_not_checkpoint(kind, tmp_path, checkpoint)
    keyword = NOT_CHECKPOINTS[kind][2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ModelFileError) as refused:
            read_checkpoint(path)
        assert_one_line_about(str(refused.value), path, keyword)
        if kind == "onnx":  # an export is a model: load_model takes it, only read_checkpoint refuses
            assert isinstance(load_model(path), ExportedModel)
        else:
            with pytest.raises(ModelFileError) as refused:
                load_model(path)
            assert_one_line_about(str(refused.value), path, keyword)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("kind", list(NOT_CHECKPOINTS))
def test_scripts_exit_2_with_one_line_naming_the_file(kind, checkpoint, photo, tmp_path, capsys):
    path = write_not_checkpoint(kind, tmp_path, checkpoint)
    keyword = NOT_CHECKPOINTS[kind][2]
    output = tmp_path / "out" / "model.safetensors"
    runs = {
        "explain.py": lambda: explain.main(["--ckpt", str(path), str(photo)]),
        "export.py": lambda: export.main(
            ["--ckpt", str(path), "--format", "safetensors", "--output", str(output)]
        ),
    }
    if kind != "onnx":  # predict.py takes an ONNX export as it is
        runs["predict.py"] = lambda: predict.main(["--ckpt", str(path), "--workers", "1", str(photo)])
    for script, run in runs.items():
        status = run()
        captured = capsys.readouterr()
        assert status == 2, (script, captured.err)
        assert captured.out == "", script
        assert_one_line_about(captured.err, path, keyword)
    assert not output.exists()


@pytest.mark.parametrize("kind", UNSAFE)
def test_a_file_that_would_call_code_is_refused_and_nothing_runs(kind, tmp_path):
    marker = tmp_path / "marker"
    path = write_unsafe(kind, tmp_path / "files", marker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for load in (read_checkpoint, load_model):
            with pytest.raises(ModelFileError) as refused:
                load(path)
            message = str(refused.value)
            assert_one_line_about(message, path, "refusing to load")
            assert "could run any code" in message
            if kind == "class_defined_here":  # the one line names what it would have imported
                assert f"{KeptInTheCheckpoint.__module__}.{KeptInTheCheckpoint.__qualname__}" in message
    assert not marker.exists()
    assert [str(w.message) for w in caught] == []


def test_the_payload_really_creates_its_marker_when_unpickled_unsafely(tmp_path):
    # The guard for the test above: the same payload, loaded the unsafe way, does run.
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(CreatesMarker(marker))).close()
    assert marker.exists()


# Each script once as a user types it, side by side (each run pays torch's import); the
# in-process tests above cover every kind of file for each script.
SCRIPT_CASES = {
    "predict_reduce_zip": ("predict.py", None, "reduce_zip"),
    "explain_plain_pickle": ("explain.py", None, "plain_pickle"),  # torch also warns on this one
    "export_truncated": ("export.py", "truncated", None),
}


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory, checkpoint, photo) -> dict:
    work = tmp_path_factory.mktemp("scripts")
    jobs = {}
    for case, (script, kind, unsafe) in SCRIPT_CASES.items():
        folder, marker = work / case, work / case / "marker"
        if kind is not None:
            path, keyword = write_not_checkpoint(kind, folder, checkpoint), NOT_CHECKPOINTS[kind][2]
        else:
            path, keyword = write_unsafe(unsafe, folder, marker), "refusing to load"
        args = {
            "predict.py": ["--ckpt", path, str(photo)],
            "explain.py": ["--ckpt", path, str(photo)],
            "export.py": ["--ckpt", path, "--format", "torchscript", "--output", folder / "out.pt"],
        }[script]
        jobs[case] = (path, keyword, marker, [sys.executable, str(REPO / script), *map(str, args)], folder)

    def run(job):
        *_, command, folder = job
        return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=180)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(run, jobs.values()), strict=True))
    return {case: (jobs[case], results[case]) for case in jobs}


@pytest.mark.parametrize("case", list(SCRIPT_CASES))
def test_script_as_typed_exits_2_with_one_line(case, script_runs):
    (path, keyword, marker, _, folder), result = script_runs[case]
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    assert_one_line_about(result.stderr, path, keyword)
    assert not marker.exists()
    assert not (folder / "out.pt").exists()


def test_load_model_returns_an_eval_mode_model(checkpoint, pets_batch, tmp_path):
    # The same trained weights with dropout in the network, which only train mode applies:
    # dropout has no weights, so the checkpoint differs only in its recorded config.
    data = read_checkpoint(checkpoint)
    data["catsdogs"]["model_config"]["network_kwargs"]["dropout"] = 0.5
    data["hyper_parameters"]["network_kwargs"] = {
        **data["hyper_parameters"]["network_kwargs"],
        "dropout": 0.5,
    }
    with_dropout = tmp_path / "dropout.ckpt"
    torch.save(data, with_dropout)
    for path in (checkpoint, with_dropout):
        model = load_model(path)
        assert isinstance(model, PCatModel)
        assert not model.training and not any(module.training for module in model.modules())
        with torch.inference_mode():
            first, second = model(pets_batch), model(pets_batch)
        assert first.shape == (len(pets_batch),)
        assert torch.equal(first, second)
    model.train()  # the guard: in train mode this model's dropout does change p_cat
    with torch.inference_mode():
        assert not torch.equal(model(pets_batch), model(pets_batch))


def test_lightnings_documented_load_agrees_with_load_model(checkpoint, pets_batch):
    from models.classifier import CatsDogsClassifier

    classifier = CatsDogsClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    model = load_model(checkpoint)
    with torch.inference_mode():
        documented = torch.sigmoid(classifier(pets_batch))  # forward gives z; p_cat = sigmoid(z)
        loaded = model(pets_batch)
    torch.testing.assert_close(loaded, documented, rtol=0, atol=1e-7)
    assert loaded.min() < 0.5 < loaded.max()  # a trained model, not a constant
