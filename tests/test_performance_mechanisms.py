"""The mechanisms behind benchmarks/perf.py's figures, without timing anything (timings flake).

Decode once: a second run reads the cache and never calls the decoder. Share the cache:
a dataset sent to a worker is a file name, reopened as the same read-only memory map, so
N workers do not hold N copies. Start fast: decoding and predicting do not import
Lightning. Step fast: the optimiser is the fused AdamW, the progress bar redraws every few steps.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import CatsDogsDataModule
from datasets import cache as cache_module
from tests.image_factory import make_layout

REPO = Path(__file__).resolve().parents[1]
SIZE = 16


@pytest.fixture
def pets(tmp_path):
    return make_layout(tmp_path / "pets", "class_folders", n_per_class=12)


def set_up(root: Path, cache_dir: Path, monkeypatch) -> tuple[CatsDogsDataModule, list[str]]:
    """A datamodule through prepare_data and setup, with a spy on the decoder the cache uses."""
    decoded: list[str] = []
    original = cache_module.decode_many

    def spy(paths, *args, **kwargs):
        decoded.extend(paths)
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_many", spy)
    data = CatsDogsDataModule(str(root), image_size=SIZE, batch_size=8, cache_dir=str(cache_dir))
    data.prepare_data()
    data.setup("fit")
    return data, decoded


def test_a_run_after_the_cache_exists_decodes_no_image(pets, tmp_path, monkeypatch):
    first, decoded_first = set_up(pets, tmp_path / "cache", monkeypatch)
    assert len(decoded_first) == 24  # every photo, once, while building
    second, decoded_second = set_up(pets, tmp_path / "cache", monkeypatch)  # a new run: a new datamodule
    assert decoded_second == []
    assert second.cache_info.decoded == 0
    assert np.array_equal(second.cache_info.images, first.cache_info.images)


def test_the_cache_is_a_read_only_memory_map(pets, tmp_path, monkeypatch):
    data, _ = set_up(pets, tmp_path / "cache", monkeypatch)
    images = data.train_dataloader().dataset.images
    assert isinstance(images, np.memmap) and images.mode == "r"
    assert not images.flags.writeable  # nothing can turn it into a private copy by writing
    assert Path(images.filename) == data.cache_info.directory / "images.npy"


def test_a_dataset_sent_to_a_worker_reopens_the_same_file(pets, tmp_path, monkeypatch):
    data, _ = set_up(pets, tmp_path / "cache", monkeypatch)
    dataset = data.train_dataloader().dataset
    blob = pickle.dumps(dataset)
    # The file name and the index list travel, never the pixels: the size does not grow with them.
    assert len(blob) < 2_000 + 16 * len(dataset.indices)
    assert dataset.images.tobytes()[:256] not in blob
    restored = pickle.loads(blob)
    assert isinstance(restored.images, np.memmap) and restored.images.mode == "r"
    assert os.path.samefile(restored.images.filename, dataset.images.filename)
    batch = list(range(len(dataset)))
    assert torch.equal(restored.__getitems__(batch)[0], dataset.__getitems__(batch)[0])


def test_decoding_and_predicting_do_not_import_lightning():
    # Lightning costs seconds of start-up on 2 cores; predicting a folder never needs it.
    code = (
        "import sys; from datasets import DataError, decode_many, find_image_files; "
        "import models; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchvision')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_datamodule_is_still_importable_from_the_package():
    import datasets
    from datasets.datamodule import CatsDogsDataModule as direct

    assert datasets.CatsDogsDataModule is direct
    with pytest.raises(AttributeError):
        datasets.NoSuchThing  # noqa: B018


def test_training_uses_the_fused_adamw_on_cpu(pets, tmp_path):
    from lightning import Trainer

    from models.classifier import CatsDogsClassifier

    model = CatsDogsClassifier("mlp", {"hidden_dims": [8]}, image_size=SIZE)
    data = CatsDogsDataModule(str(pets), image_size=SIZE, batch_size=8, cache_dir=str(tmp_path / "cache"))
    trainer = Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=data)
    (optimizer,) = trainer.optimizers
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


@pytest.mark.parametrize("enabled", [True, False])
def test_train_py_redraws_its_progress_bar_every_few_steps_not_every_step(enabled, pets):
    from lightning.pytorch.callbacks import ProgressBar

    from models.classifier import CatsDogsClassifier
    from train import PROGRESS_BAR_REFRESH_STEPS, CatsDogsCLI

    args = ["--config", str(REPO / "configs" / "mlp_article.yaml"), "--data.root", str(pets),
            "--trainer.logger", "false", "--trainer.enable_progress_bar", str(enabled).lower()]  # fmt: skip
    cli = CatsDogsCLI(CatsDogsClassifier, CatsDogsDataModule, args=args, run=False)
    bars = [callback for callback in cli.trainer.callbacks if isinstance(callback, ProgressBar)]
    if enabled:
        assert [bar.refresh_rate for bar in bars] == [PROGRESS_BAR_REFRESH_STEPS]
        assert PROGRESS_BAR_REFRESH_STEPS > 1
    else:
        assert bars == []  # and Lightning did not refuse a bar it was told not to draw
