"""Mixed precision through the real train.py: bf16-mixed on CPU trains, and its checkpoint predicts.

bf16 autocast is the one mixed precision a CPU runs; on a GPU the same flag (or 16-mixed)
is a config change, not a code change. The weights stay float32 (autocast casts per op),
so the checkpoint is the same kind of file as a 32-true run's.
"""

import math
import platform
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets import decode_many, find_image_files
from inference import load_model
from tests.conftest import ARTICLE_CONFIG, TINY, run_script
from tests.image_factory import make_layout
from training.precision import choose_precision, cpu_has_bf16_matmul

# TINY (float32) with batches of 8 for 2 epochs: enough steps on 24 photos to see it learn.
ARGS = [*TINY, "--data.batch_size", "8", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu"]


def test_bf16_mixed_trains_on_cpu_and_its_checkpoint_predicts(tmp_path):
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=12)
    result = run_script(
        "train.py",
        "--config",
        ARTICLE_CONFIG,
        "--data.root",
        pets,
        *ARGS,
        "--trainer.precision",
        "bf16-mixed",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using bfloat16 Automatic Mixed Precision" in result.stderr  # autocast really was on

    run_dir = tmp_path / "runs" / "mlp_article" / "version_0"
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    losses = [point.value for point in events.Scalars("val/loss")]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)

    classifier = load_model(run_dir / "checkpoints" / "best.ckpt")
    assert all(p.dtype == torch.float32 for p in classifier.parameters())  # float32 master weights
    files = find_image_files([str(pets)])
    images = torch.stack([image for _, image, _ in decode_many(files, 16, workers=1)])  # (24, 3, 16, 16)
    with torch.inference_mode():
        p_cat = classifier(images)  # (24,)
    assert p_cat.shape == (24,)
    assert torch.isfinite(p_cat).all() and ((p_cat >= 0) & (p_cat <= 1)).all()
    labels = torch.tensor([1.0 if "/Cat/" in path else 0.0 for path in files])
    assert ((p_cat >= 0.5).float() == labels).float().mean() >= 0.75  # it learned: the classes are easy


def test_precision_null_is_decided_by_the_chip_the_same_every_time(tmp_path):
    """The default (trainer.precision: null) is a fact of the CPU, never a timing: asked twenty
    times it answers once, and it is bf16-mixed exactly when the CPU lists bf16 matrix instructions."""
    answers = {choose_precision("cpu") for _ in range(20)}
    assert len(answers) == 1
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    has_bf16 = platform.machine() == "x86_64" and bool({"avx512_bf16", "amx_bf16"} & set(flags))
    assert answers == {"bf16-mixed" if has_bf16 else "32-true"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 amx_bf16 amx_tile", True), ("fpu avx2 fma", False)],
)
def test_the_cpu_rule_reads_the_flags_line(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    if platform.machine() != "x86_64":
        expected = False  # the rule is measured on x86 only
    assert cpu_has_bf16_matmul(cpuinfo) is expected


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_a_gpu_without_native_bf16_trains_in_16_mixed(monkeypatch, native_bf16, expected):
    """A T4 or V100 emulates bf16: torch's default answer counts emulation, the chooser must not."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation  # what torch answers on a compute capability 7.x GPU

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert choose_precision("auto") == choose_precision("gpu") == expected
    assert choose_precision("cpu") in ("bf16-mixed", "32-true")  # asked for the CPU, the GPU is not read


def test_the_chosen_precision_is_written_into_the_run_and_a_resume_keeps_it(tmp_path):
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=4)
    unpinned = [*TINY, "--trainer.precision", "null", "--trainer.accelerator", "cpu"]
    first = run_script(
        "train.py", "--config", ARTICLE_CONFIG, "--data.root", pets, *unpinned,
        "--trainer.max_epochs", "1", cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    chosen = next(line for line in first.stderr.splitlines() if line.startswith("trainer.precision: "))
    precision = chosen.split()[1].rstrip(",")
    assert precision == choose_precision("cpu")
    run = tmp_path / "runs" / "mlp_article" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["precision"] == precision
    resumed = run_script(
        "train.py",
        "--config",
        ARTICLE_CONFIG,
        "--ckpt_path",
        "last",
        "--trainer.max_epochs",
        "2",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "trainer.precision: " not in resumed.stderr  # nothing chosen again: the run's value holds
    assert yaml.safe_load((run / "config.resume-1.yaml").read_text())["trainer"]["precision"] == precision
