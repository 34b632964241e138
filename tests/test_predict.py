"""predict.py and CatsDogsPredictor on the trained run's checkpoint and its photo folder.

The oracle for p_cat is inference.load_model on the photos decoded as training decoded
them; the photo folder holds one file that only pretends to be a JPEG (broken.jpg), which
must be reported, never silently dropped.
"""

import csv
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import predict
from datasets import decode_image, find_image_files
from inference import CatsDogsPredictor, load_model
from tests.conftest import REPO, run_script

HEADER = "path,p_cat,label"


@pytest.fixture(scope="module")
def reference(trained_run) -> dict[Path, float]:
    """Resolved path -> p_cat from load_model, for every readable photo of the folder."""
    model = load_model(trained_run.best)
    readable = [Path(p) for p in find_image_files([str(trained_run.pets)]) if Path(p).name != "broken.jpg"]
    images = torch.stack([decode_image(path, model.image_size) for path in readable])
    with torch.inference_mode():
        p_cat = model(images).tolist()
    return {path.resolve(): p for path, p in zip(readable, p_cat, strict=True)}


def every_file(folder: Path) -> list[Path]:
    return sorted(path.resolve() for path in folder.rglob("*") if path.is_file())


def assert_rows_match(rows: list[dict], reference: dict[Path, float], cwd: Path, threshold: float) -> None:
    """One row per readable photo, each with the reference p_cat and the label it implies."""
    paths = [(cwd / row["path"]).resolve() for row in rows]
    assert sorted(paths) == sorted(reference)  # every readable photo once, nothing else
    for path, row in zip(paths, rows, strict=True):
        p_cat = float(row["p_cat"])
        assert p_cat == pytest.approx(reference[path], abs=1e-6), path  # CSV: 6 decimals
        assert row["label"] == ("cat" if p_cat >= threshold else "dog")
    assert {row["label"] for row in rows} == {"cat", "dog"}


def test_predict_py_from_another_folder_prints_one_line_per_photo(trained_run, reference, tmp_path):
    cwd = tmp_path / "somewhere" / "else"
    cwd.mkdir(parents=True)
    checkpoint, photos = os.path.relpath(trained_run.best, cwd), os.path.relpath(trained_run.pets, cwd)
    result = run_script("predict.py", "--ckpt", checkpoint, photos, cwd=cwd)  # python /abs/predict.py
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 1 + len(reference)
    assert_rows_match(list(csv.DictReader(io.StringIO(result.stdout))), reference, cwd, threshold=0.5)
    # broken.jpg is reported, by name, with why; nothing else goes to stderr
    assert len(every_file(trained_run.pets)) == len(reference) + 1
    (skipped,) = result.stderr.strip().splitlines()
    assert skipped.startswith("skipped ") and "broken.jpg" in skipped


def test_output_into_a_folder_that_does_not_exist_creates_it(trained_run, reference, tmp_path):
    output = Path("predictions") / "today" / "pets.json"
    args = ["--ckpt", trained_run.best, "--format", "json", "--output", output, trained_run.pets]
    result = run_script("predict.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""  # the predictions went to the file
    rows = json.loads((tmp_path / output).read_text(encoding="utf-8"))
    assert_rows_match(rows, reference, tmp_path, threshold=0.5)
    assert "broken.jpg" in result.stderr


def test_threshold_out_of_range_is_refused_in_one_line(trained_run, tmp_path):
    result = run_script(
        "predict.py", "--ckpt", trained_run.best, "--threshold", "7", trained_run.pets, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "--threshold" in line and "7" in line and "[0, 1]" in line


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "inf", "half"])
def test_other_thresholds_out_of_range_are_refused_in_one_line(value, trained_run, capsys):
    with pytest.raises(SystemExit) as stopped:
        predict.main(["--ckpt", str(trained_run.best), "--threshold", value, str(trained_run.pets)])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert "--threshold" in line and value in line


def test_threshold_decides_the_label(trained_run, reference, tmp_path, capsys):
    # Between two photos' p_cat near the median, well clear of both: half the photos each side.
    ranked = sorted(reference.values())
    middle = min(
        range(1, len(ranked)), key=lambda k: (ranked[k] - ranked[k - 1] < 1e-4, abs(k - len(ranked) // 2))
    )
    threshold = (ranked[middle - 1] + ranked[middle]) / 2
    output = tmp_path / "out.csv"
    args = ["--ckpt", str(trained_run.best), "--threshold", str(threshold), "--output", str(output)]
    assert predict.main([*args, "--workers", "1", str(trained_run.pets)]) == 0
    rows = list(csv.DictReader(output.open(encoding="utf-8")))
    for row in rows:
        p_cat = reference[Path(row["path"]).resolve()]
        assert row["label"] == ("cat" if p_cat >= threshold else "dog")
    assert sum(row["label"] == "cat" for row in rows) == sum(p >= threshold for p in reference.values())
    capsys.readouterr()


def test_predict_files_reports_the_unreadable_file(trained_run, reference):
    files = find_image_files([str(trained_run.pets)])
    runs = {}
    for batch_size in (256, 5):  # 5: batches end before, at and after the unreadable file
        predictor = CatsDogsPredictor.from_pretrained(trained_run.best, batch_size=batch_size, workers=1)
        runs[batch_size] = list(predictor.predict_files([trained_run.pets]))
    for predictions in runs.values():
        assert [prediction.path for prediction in predictions] == files  # every file, in order
        failed = [prediction for prediction in predictions if prediction.error is not None]
        assert [Path(prediction.path).name for prediction in failed] == ["broken.jpg"]
        assert failed[0].p_cat is None and failed[0].label is None and failed[0].error.strip()
        for prediction in predictions:
            if prediction.error is None:
                expected = reference[Path(prediction.path).resolve()]
                assert prediction.p_cat == pytest.approx(expected, abs=1e-6)
                assert prediction.label == ("cat" if prediction.p_cat >= 0.5 else "dog")


def test_missing_paths_are_reported_and_nothing_readable_is_exit_1(trained_run, tmp_path, capsys):
    missing = tmp_path / "no_such_photo.jpg"
    broken = trained_run.pets / "Cat" / "broken.jpg"
    status = predict.main(["--ckpt", str(trained_run.best), "--workers", "1", str(missing), str(broken)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out.splitlines() == [HEADER]
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3, lines
    assert "no_such_photo.jpg" in lines[0] and "broken.jpg" in lines[1]
    assert lines[2] == "error: no photo could be predicted"


def test_predict_py_into_head_ends_without_a_traceback(trained_run, tmp_path):
    # More rows than a pipe and head's one read can hold: predict.py is still writing when
    # head exits after its first line, so it meets the closed pipe.
    photos = " ".join([shlex.quote(str(trained_run.pets))] * 24)
    predict_py = " ".join(shlex.quote(str(part)) for part in (sys.executable, REPO / "predict.py"))
    command = (
        f"{predict_py} --ckpt {shlex.quote(str(trained_run.best))} {photos} | head -1;"
        ' echo "predict.py exit status ${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    *errors, status = result.stderr.strip().splitlines()
    assert result.stdout == HEADER + "\n"
    assert status == "predict.py exit status 141"  # 128 + SIGPIPE, as for any Unix tool
    assert all(line.startswith("skipped ") for line in errors), result.stderr[-2000:]
