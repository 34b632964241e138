"""Real DDP: two CPU processes (gloo) through train.py give the same validation accuracy as one.

Lightning's `ddp` strategy starts rank 1 by running train.py again with the same arguments
(as it would on a GPU machine), so this checks the real entry point, not a test harness.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchmetrics.functional.classification import binary_accuracy

from datasets.datamodule import CatsDogsDataModule
from inference import load_model, read_checkpoint
from tests.image_factory import write_image

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "mlp_article.yaml"
GLOBAL_BATCH_SIZE = 8
# 34 photos -> 22 train (even: training shares are padded to equal step counts), 9 val
# and 3 test: odd, so the ranks' evaluation shares differ (val: 5 photos in 2 batches of
# 4 on rank 0, 4 in 1 batch on rank 1) and no photo may be counted twice to even them out.
PHOTOS_PER_CLASS = 17
VAL_FRACTION = 0.3
TINY = [
    "--data.image_size", "16",
    "--model.network_kwargs", '{"hidden_dims": [32, 16, 8], "dropout": 0.0}',
    "--model.lr", "0",  # the weights stay at their (seeded, identical) initial values
    "--data.hflip", "false",  # with dropout off too, each image's training loss is fixed
    "--trainer.max_epochs", "1",
    "--trainer.accelerator", "cpu",
    "--trainer.precision", "32-true",  # compared with a float32 oracle: the same precision on every CPU
    "--data.val_fraction", str(VAL_FRACTION),
]  # fmt: skip


def train(cwd: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    cwd.mkdir()
    command = [sys.executable, str(REPO / "train.py"), "--config", str(CONFIG), "--data.root", str(root)]
    return subprocess.run([*command, *TINY, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def random_colour_photos(root: Path) -> Path:
    """Photos whose colour says nothing about the class, so an untrained network gets some right
    and some wrong: accuracy depends on exactly which images each rank counted."""
    colours = np.random.default_rng(0).integers(0, 256, size=(2 * PHOTOS_PER_CLASS, 3))
    for index, colour in enumerate(colours):
        folder = "Cat" if index < PHOTOS_PER_CLASS else "Dog"
        write_image(root / folder / f"{index}.jpg", tuple(int(c) for c in colour), noise=20, seed=index)
    return root


def epoch_scalar(run_dir: Path, tag: str) -> float:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    (point,) = events.Scalars(tag)  # one epoch, one value
    return point.value


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    root = random_colour_photos(work / "pets")
    single = train(
        work / "single", root, "--trainer.devices", "1", "--data.batch_size", str(GLOBAL_BATCH_SIZE)
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = train(
        work / "ddp",
        root,
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--data.batch_size", str(GLOBAL_BATCH_SIZE // 2),  # per process: the same global batch
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return work, root, single, ddp


def test_ddp_writes_one_tensorboard_run_and_one_set_of_checkpoints(runs):
    work, _, _, ddp = runs
    logs = work / "ddp" / "runs" / "mlp_article"
    assert [p.name for p in logs.iterdir()] == ["version_0"]  # rank 1 made no run of its own
    run_dir = logs / "version_0"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    # Event file names end in <host>.<pid>.<n>: every one was written by the same process, rank 0.
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1, sorted(p.name for p in run_dir.glob("events.out.tfevents.*"))
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in ddp.stderr  # it was real DDP
    assert ddp.stdout.count("Training finished.") == 1  # the summary is printed by rank 0 only


def test_ddp_validation_accuracy_equals_single_process(runs):
    """Both runs validate the same fixed weights (lr 0, same seed), so this is about DDP itself:
    the DistributedSampler must give each validation image to exactly one rank, and
    torchmetrics must sum the two ranks' counts before val/acc is computed and logged.

    The training trajectories could not be compared directly: the DistributedSampler
    reshuffles the training order, so the batches (and their random flips) differ.
    """
    work, root, single, ddp = runs
    match = re.search(r"val\s+(\d+) photos", single.stdout)
    assert match, single.stdout
    num_val = int(match.group(1))
    # Lightning's default DistributedSampler would repeat one of an odd count to even out the ranks.
    assert num_val % 2 == 1, f"{num_val} validation images: pick sizes that split unevenly"

    # The oracle: the checkpoint's own p_cat on every validation image, in one process.
    checkpoint = work / "single" / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    classifier = load_model(checkpoint)
    data = CatsDogsDataModule(
        str(root), image_size=16, val_fraction=VAL_FRACTION, cache_dir=str(work / "cache")
    )
    data.prepare_data()
    data.setup("fit")
    batches = list(data.val_dataloader())  # in order, unshuffled: what DDP splits between ranks
    labels = torch.cat([batch_labels for _, batch_labels in batches])  # (num_val,)
    with torch.inference_mode():
        p_cat = torch.cat([classifier(images) for images, _ in batches])  # (num_val,)
    assert len(p_cat) == num_val
    expected = binary_accuracy(p_cat, labels.long()).item()
    # Rank r sees images r, r + 2, ...: with unsynchronised metrics rank 0 would log this instead.
    rank0_only = binary_accuracy(p_cat[0::2], labels[0::2].long()).item()
    assert rank0_only != pytest.approx(expected, abs=1e-6), "data too easy to tell a sync bug apart"

    single_acc = epoch_scalar(work / "single" / "runs" / "mlp_article" / "version_0", "val/acc")
    ddp_acc = epoch_scalar(work / "ddp" / "runs" / "mlp_article" / "version_0", "val/acc")
    assert single_acc == pytest.approx(expected, abs=1e-6)
    assert ddp_acc == pytest.approx(single_acc, abs=1e-6)
    # val/loss is the mean over photos: the single run's batches of 8 and 1 photos weigh 8:1.
    single_loss = epoch_scalar(work / "single" / "runs" / "mlp_article" / "version_0", "val/loss")
    assert single_loss == pytest.approx(F.binary_cross_entropy(p_cat, labels.float()).item(), abs=1e-5)


def test_ddp_train_loss_epoch_is_the_mean_over_every_ranks_images(runs):
    """With lr 0, no dropout and no flips, each training image's loss is fixed, so the epoch's
    mean over all 22 images must come out the same from one process and from two ranks of
    11 each: rank 0's own mean alone would differ."""
    work = runs[0]
    single = epoch_scalar(work / "single" / "runs" / "mlp_article" / "version_0", "train/loss_epoch")
    ddp = epoch_scalar(work / "ddp" / "runs" / "mlp_article" / "version_0", "train/loss_epoch")
    assert ddp == pytest.approx(single, abs=1e-6)


def test_ddp_scores_uneven_val_and_test_splits_like_one_process(runs):
    """Each rank scores its own share of the odd-sized val and test splits, no photo twice:
    the batch-size-weighted val/loss and the test metrics (of the same checkpoint) come out
    as from one process. A repeated photo would shift them by its own weight."""
    work, _, single, ddp = runs
    for tag in ("val/loss", "val/auroc"):
        single_value = epoch_scalar(work / "single" / "runs" / "mlp_article" / "version_0", tag)
        ddp_value = epoch_scalar(work / "ddp" / "runs" / "mlp_article" / "version_0", tag)
        assert ddp_value == pytest.approx(single_value, abs=1e-5), tag
    single_test, ddp_test = printed_test_metrics(single.stdout), printed_test_metrics(ddp.stdout)
    assert "test/loss" in single_test and "test/acc" in single_test, single.stdout
    assert ddp_test == single_test


def printed_test_metrics(stdout: str) -> str:
    """train.py's summary line of test metrics (4 decimals each)."""
    match = re.search(r"^\s*test:\s+(.*)$", stdout, flags=re.MULTILINE)
    assert match, stdout
    return match.group(1)


def test_ddp_resumes_its_run_for_more_epochs(runs):
    """Both ranks restore the same last.ckpt and go on in the same run folder."""
    work = runs[0]
    last = work / "ddp" / "runs" / "mlp_article" / "version_0" / "checkpoints" / "last.ckpt"
    steps_before = read_checkpoint(last)["global_step"]
    resumed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(CONFIG), "--ckpt_path", "last",
         "--trainer.max_epochs", "2"],
        cwd=work / "ddp", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in resumed.stderr
    assert read_checkpoint(last)["global_step"] == 2 * steps_before  # one more epoch on both ranks
    assert [p.name for p in (work / "ddp" / "runs" / "mlp_article").iterdir()] == ["version_0"]
