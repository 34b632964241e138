"""evaluate.py: its accuracy on the test folder is train.py's test/acc for the same checkpoint, its
counts are the ones made by hand from the model's p_cat, its mistakes are the surest wrong calls
(and their explain.py commands walk exactly those photos), and bad input fails in one line."""

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import evaluate
import explain
from datasets import decode_image
from inference import load_model
from tests.browser import chromium, require_browser
from tests.conftest import ARTICLE_CONFIG, TINY, run_script
from tests.image_factory import make_layout


@pytest.fixture(scope="module")
def split_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """(photos, best.ckpt, train.py's stdout) of a tiny run on train/ plus validation/ folders."""
    photos = make_layout(tmp_path_factory.mktemp("split") / "pets", "split_folders", n_per_class=16)
    # Three test photos filed under the other class: the network calls them by their look, so the
    # scores compared are not all 1.
    held_out = photos / "validation"
    for name, other in (("dog.16.jpg", "cats"), ("dog.17.jpg", "cats"), ("cat.16.jpg", "dogs")):
        (held_out / ("dogs" if other == "cats" else "cats") / name).rename(held_out / other / name)
    work = tmp_path_factory.mktemp("split_run")
    args = ["--config", ARTICLE_CONFIG, "--data.root", photos, *TINY, "--trainer.max_epochs", "1"]
    trained = run_script("train.py", *args, cwd=work)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return photos, work / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt", trained.stdout


def evaluate_json(capsys, *args: str) -> dict:
    assert evaluate.main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_accuracy_on_the_test_folder_is_train_pys_test_acc(split_run, capsys):
    photos, best, stdout = split_run
    reported = {name: float(value) for name, value in re.findall(r"test/(acc|auroc|f1) (\d\.\d+)", stdout)}
    for folder in (photos, photos / "validation"):  # the whole layout scores its held-out part
        results = evaluate_json(capsys, "--ckpt", best, folder)
        assert results["photos"] == 16  # validation/: 8 cats, 8 dogs
        for name in ("acc", "auroc", "f1"):
            assert results[name] == pytest.approx(reported[name], abs=5e-5), (name, results, stdout)
    assert reported["acc"] < 1 and reported["auroc"] < 1, reported


def test_counts_and_mistakes_are_the_ones_made_by_hand(trained_run, mislabelled, capsys):
    model = load_model(trained_run.best)
    assert evaluate.main(["--ckpt", str(trained_run.best), str(mislabelled), "--top", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert results["skipped"] == 1 and results["photos"] == 17 and "notes.jpg" in err

    by_hand = []  # (path, label, p_cat) of every photo, one forward pass each
    for path in sorted(mislabelled.rglob("*.jpg")):
        if path.name != "notes.jpg":
            with torch.inference_mode():
                p_cat = model(decode_image(path, model.image_size)[None])[0].item()
            by_hand.append((str(path), int(path.parent.name == "cats"), p_cat))
    matrix = [[0, 0], [0, 0]]  # rows: true dog, cat; columns: called dog, cat
    for _, label, p_cat in by_hand:
        matrix[label][int(p_cat >= model.threshold)] += 1
    assert results["confusion_matrix"] == matrix
    assert results["acc"] == pytest.approx((matrix[0][0] + matrix[1][1]) / len(by_hand), abs=1e-6)

    wrong = [(abs(p_cat - label), path, p_cat) for path, label, p_cat in by_hand if (p_cat >= 0.5) != label]
    assert len(wrong) >= 3, wrong  # the 5 misfiled photos, unless the tiny network fell for them
    surest = sorted(wrong, reverse=True)[:3]
    assert [m["path"] for m in results["mistakes"]] == [path for _, path, _ in surest]
    assert [m["p_cat"] for m in results["mistakes"]] == pytest.approx([p for _, _, p in surest], abs=1e-6)

    # The command the report prints walks that very photo to that very p_cat.
    command = shlex.split(results["mistakes"][0]["explain"])
    assert command[:2] == ["python", "explain.py"]
    assert explain.main([*command[2:], "--json"]) == 0
    walked = json.loads(capsys.readouterr().out)
    assert walked["p_cat"] == pytest.approx(results["mistakes"][0]["p_cat"], abs=1e-6)


def test_the_report_page_shows_k_mistakes_with_p_cat_and_command(trained_run, mislabelled, tmp_path, capsys):
    require_browser()
    results = evaluate_json(
        capsys, "--ckpt", trained_run.best, mislabelled, "--top", "3", "--report", tmp_path
    )
    with Image.open(tmp_path / "mistakes.png") as grid:
        assert grid.width > 96 * 3  # three photos in a row, each at least 96 px wide
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get((tmp_path / "index.html").as_uri())  # a file: nothing behind it to fetch from
        figures = driver.find_elements(By.CSS_SELECTOR, "figure.mistake")
        assert len(figures) == 3
        for figure, mistake in zip(figures, results["mistakes"], strict=True):
            shown = figure.find_element(By.CSS_SELECTOR, ".label").text
            assert shown == f"mistake: {mistake['label']}, p_cat {mistake['p_cat']:.3f}"
            assert figure.find_element(By.TAG_NAME, "code").text == mistake["explain"]
            assert driver.execute_script(
                "return arguments[0].naturalWidth", figure.find_element(By.TAG_NAME, "img")
            )


def test_a_folder_without_labels_and_bad_paths_fail_in_one_line(trained_run, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(trained_run.pets / "Cat" / "0.jpg", plain / "photo.jpg")
    for args, expected in (
        (["--ckpt", trained_run.best, plain], "has no cat or dog labels: it needs a layout"),
        (["--ckpt", trained_run.best, tmp_path / "none"], "does not exist"),
        (["--ckpt", plain / "photo.jpg", trained_run.pets], "photo.jpg"),
        (["--pretrained", "no_such_model", trained_run.pets], "no_such_model"),
    ):
        assert evaluate.main(list(map(str, args))) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
