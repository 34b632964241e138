"""Mixed precision through the real train.py: bf16-mixed on CPU trains, and its checkpoint predicts.

bf16 autocast is the one mixed precision a CPU runs; on a GPU the same flag (or 16-mixed)
is a config change, not a code change. The weights stay float32 (autocast casts per op),
so the checkpoint is the same kind of file as a 32-true run's.
"""

import math

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets import decode_many, find_image_files
from inference import load_model
from tests.conftest import ARTICLE_CONFIG, TINY, run_script
from tests.image_factory import make_layout

# TINY with batches of 8 for 2 epochs: enough steps on 24 photos to see it learn.
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


def test_precision_null_is_chosen_at_start_up_and_said_in_the_log(tmp_path):
    """The default (trainer.precision: null) becomes what pays here, and train.py says which."""
    from training.precision import MIN_CPU_SPEEDUP, choose_precision, cpu_bf16_speedup

    speedup = cpu_bf16_speedup()
    assert math.isfinite(speedup) and speedup > 0
    assert choose_precision("cpu", processes=2) == "32-true"  # every DDP rank must agree: no measuring
    pets = make_layout(tmp_path / "pets", "class_folders", n_per_class=4)
    result = run_script(
        "train.py", "--config", ARTICLE_CONFIG, "--data.root", pets, *TINY,
        "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = next(line for line in result.stderr.splitlines() if line.startswith("trainer.precision: "))
    precision = chosen.split()[1].rstrip(",")
    assert precision in ("32-true", "bf16-mixed")
    # A chip with bf16 kernels well above the bar trains in bf16; one well below, in fp32.
    if speedup > 2 * MIN_CPU_SPEEDUP or speedup < MIN_CPU_SPEEDUP / 2:
        assert precision == ("bf16-mixed" if speedup > 1 else "32-true")
