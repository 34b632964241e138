"""Mixed precision through the real train.py: bf16-mixed on CPU trains, and its checkpoint predicts.

bf16 autocast is the one mixed precision a CPU runs; on a GPU the same flag (or 16-mixed)
is a config change, not a code change. The weights stay float32 (autocast casts per op),
so the checkpoint is the same kind of file as a 32-true run's.
"""

import math
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets import CatsDogsDataModule, decode_many, find_image_files
from models.checkpoint import load_classifier
from models.classifier import CatsDogsClassifier
from tests.image_factory import make_layout
from train import CatsDogsCLI

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"
TINY = [
    "--data.image_size", "16",
    "--data.batch_size", "8",
    "--model.network_kwargs", '{"hidden_dims": [32, 16, 8]}',
    "--model.lr", "3e-3",
    "--trainer.max_epochs", "2",
    "--trainer.accelerator", "cpu",
]  # fmt: skip


def test_bf16_mixed_trains_on_cpu_and_its_checkpoint_predicts(tmp_path):
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=12)
    command = [sys.executable, str(REPO / "train.py"), "--config", str(CONFIG), "--data.root", str(pets)]
    result = subprocess.run(
        [*command, *TINY, "--trainer.precision", "bf16-mixed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using bfloat16 Automatic Mixed Precision" in result.stderr  # autocast really was on

    run_dir = tmp_path / "runs" / "mlp_article" / "version_0"
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    losses = [point.value for point in events.Scalars("val/loss")]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    classifier = load_classifier(run_dir / "checkpoints" / "best.ckpt")
    assert all(p.dtype == torch.float32 for p in classifier.parameters())  # float32 master weights
    files = find_image_files([str(pets)])
    images = torch.stack([image for _, image, _ in decode_many(files, 16, workers=1)])  # (24, 3, 16, 16)
    with torch.inference_mode():
        p_cat = classifier.p_cat(images)  # (24,)
    assert p_cat.shape == (24,)
    assert torch.isfinite(p_cat).all() and ((p_cat >= 0) & (p_cat <= 1)).all()
    labels = torch.tensor([1.0 if "/Cat/" in path else 0.0 for path in files])
    assert ((p_cat >= 0.5).float() == labels).float().mean() >= 0.75  # it learned: the classes are easy


@pytest.mark.parametrize(
    ("precision", "native_bf16", "warned"),
    [("bf16-mixed", False, True), ("bf16-mixed", True, False), ("32-true", False, False)],
)
def test_bf16_on_a_cpu_without_bfloat16_instructions_says_to_use_float32(
    tmp_path, monkeypatch, precision, native_bf16, warned
):
    # The CPU's answer is torch's, patched here to stand for a machine with or without the instructions.
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native_bf16, raising=False)
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=2)
    args = ["--config", str(CONFIG), "--data.root", str(pets), *TINY, "--trainer.precision", precision]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = CatsDogsCLI(CatsDogsClassifier, CatsDogsDataModule, args=args, run=False)
    assert cli.trainer.precision == precision
    advice = [str(w.message) for w in caught if "--trainer.precision 32-true" in str(w.message)]
    assert len(advice) == int(warned)
