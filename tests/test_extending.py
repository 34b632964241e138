"""A new family is one file: docs/extending.md's patch MLP, registered by importing its file as
models/__init__.py's import line does, goes through training, TensorBoard, explain.py, the
live page's API and the ONNX export with no change anywhere else."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tests.example_family  # noqa: F401  (the user's one import line: registers patch_mlp)
from datasets import decode_image
from datasets.datamodule import CatsDogsDataModule
from explanation import explain_image, render_text
from explanation.server import LiveExplainer, create_app
from inference import load_model
from inference.export import export_model
from models import list_models
from models.classifier import CatsDogsClassifier
from tests.conftest import REPO
from tests.live_server import fetch, post_photo, running
from training.network_insight import NetworkInsight

SIZE = 16


def test_the_docs_show_the_example_that_runs_here():
    example = (Path(__file__).with_name("example_family.py")).read_text(encoding="utf-8")
    assert f"```python\n{example}```" in (REPO / "docs" / "extending.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(pets, tmp_path_factory) -> tuple[CatsDogsClassifier, Path]:
    """patch_mlp trained one step through the classifier, with NetworkInsight logging."""
    work = tmp_path_factory.mktemp("patch_mlp")
    pl.seed_everything(0)
    data = CatsDogsDataModule(str(pets), image_size=SIZE, batch_size=16, cache_dir=str(work / "cache"))
    model = CatsDogsClassifier("patch_mlp", {"patch_size": 4, "width": 8}, image_size=SIZE)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=TensorBoardLogger(str(work), name="patch_mlp"),
        callbacks=[NetworkInsight(every_n_epochs=1, probe_size=8)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer.fit(model, datamodule=data)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))  # it learnt
    return model.eval(), work


def test_it_is_registered_and_trains_a_step_with_tensorboard_insight(trained):
    _, work = trained
    assert "patch_mlp" in list_models()
    (events,) = work.glob("patch_mlp/version_0/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={"histograms": 0, "images": 0})
    accumulator.Reload()
    histograms = set(accumulator.Tags()["histograms"])
    for layer in ("patch_fc", "head"):  # the names its own file declares
        assert {f"{layer}/{kind}" for kind in ("W", "b", "Z", "A")} <= histograms
    assert "probe/p_cat" in accumulator.Tags()["images"]


def test_explain_walks_a_photo_through_it(trained, pets):
    model = trained[0].model
    image = decode_image(pets / "Cat" / "0.jpg", SIZE)
    text = render_text(explain_image(model, image, threshold=0.5))
    assert "Layer 1 (patch_fc): patch embedding (the same W for every patch)" in text
    assert "For each of the 16 patches" in text and "where x is A averaged over all patches" in text
    with torch.inference_mode():
        assert f"= {model(image[None])[0].item():.4f}\n" in text  # the walk ends at its p_cat


def test_the_live_pages_api_explains_it_and_opens_a_unit(trained, pets):
    model = trained[0].model
    with running(create_app(LiveExplainer(model))) as base:
        photo = post_photo(base, (pets / "Dog" / "1.jpg").read_bytes())
        status, page = fetch(f"{base}/api/explain", {"photo": photo, "ablation": {}})
        assert status == 200 and [layer["name"] for layer in page["layers"]] == ["patch_fc", "head"]
        status, unit = fetch(
            f"{base}/api/unit", {"photo": photo, "ablation": {}, "layer": "patch_fc", "unit": 3}
        )
        assert status == 200 and unit["row_name"] == "patch" and len(unit["a_grid"]) == 4  # 4x4 patches
        # its Z is every term w_j x_j plus b: those towards a larger Z, those towards a smaller one
        assert unit["z"] == pytest.approx(unit["terms_up"] + unit["terms_down"] + unit["bias"], abs=1e-5)


def test_it_exports_to_onnx_with_the_same_p_cat(trained, pets, tmp_path):
    model = trained[0].model
    images = torch.stack([decode_image(pets / kind / "2.jpg", SIZE) for kind in ("Cat", "Dog")])
    onnx = load_model(export_model(model, "onnx", tmp_path / "patch_mlp.onnx"))
    with torch.inference_mode():
        torch.testing.assert_close(onnx(images), model(images), rtol=0, atol=1e-5)
