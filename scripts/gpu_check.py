"""The Python half of scripts/gpu_check.sh: each subcommand checks one thing on a CUDA GPU,
prints what it saw, and exits non-zero (an AssertionError saying why) when it does not hold.

    python scripts/gpu_check.py precision
    python scripts/gpu_check.py tensorboard RUN_DIR EPOCHS [--max-grad-norm X]
    python scripts/gpu_check.py resumed FIRST_LAST_CKPT RESUMED_LAST_CKPT
    python scripts/gpu_check.py predictions CSV CKPT
    python scripts/gpu_check.py export CKPT OUTPUT_DIR
    python scripts/gpu_check.py syncs TRAIN_PY_ARGS...
    python scripts/gpu_check.py workers TRAIN_PY_ARGS...
"""

import argparse
import csv
import math
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: the repo's packages

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402


def precision(args: argparse.Namespace) -> None:
    """The chooser gives bf16-mixed exactly where the GPU has bf16 arithmetic (not emulated)."""
    from training.precision import choose_precision

    capability = torch.cuda.get_device_capability()
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    emulated = torch.cuda.is_bf16_supported(including_emulation=True)
    chosen = choose_precision("gpu")
    print(
        f"{torch.cuda.get_device_name()}: compute capability {capability[0]}.{capability[1]}, "
        f"bf16 native {native}, with emulation {emulated}; precision null chooses {chosen}"
    )
    assert native == (capability >= (8, 0)), "native bf16 should mean compute capability 8.0 or more"
    assert chosen == ("bf16-mixed" if native else "16-mixed"), chosen


def tensorboard(args: argparse.Namespace) -> None:
    """Every layer's W, b, Z, A at every snapshot (before training and after each epoch), its
    dL/dW after each epoch, finite values throughout, and unscaled gradient norms."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(args.run_dir, size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    histograms, scalars = set(events.Tags()["histograms"]), set(events.Tags()["scalars"])
    layers = sorted(tag.split("/")[0] for tag in histograms if tag.endswith("/W"))
    assert layers, f"no weight histograms in {args.run_dir}"
    for layer in layers:
        for kind in ("W", "Z", "A", "grad_W"):
            found = events.Histograms(f"{layer}/{kind}") if f"{layer}/{kind}" in histograms else []
            expected = args.epochs if kind == "grad_W" else args.epochs + 1
            # In 16-mixed, an epoch whose last step the loss scaler skipped has no grad_W (inf).
            fewest = expected - 1 if kind == "grad_W" else expected
            assert fewest <= len(found) <= expected, f"{layer}/{kind}: {len(found)} snapshots, not {expected}"
            assert all(math.isfinite(h.histogram_value.sum_squares) for h in found), f"{layer}/{kind}"
        norms = [event.value for event in events.Scalars(f"{layer}/grad_norm")]
        finite = [norm for norm in norms if math.isfinite(norm)]  # 16-mixed: inf on a skipped step
        assert len(finite) >= max(1, len(norms) / 2), f"{layer}/grad_norm: {norms[:8]}"
        # Gradients still times the loss scale (65,536 at first) would be far above this.
        assert max(finite) < args.max_grad_norm, f"{layer}/grad_norm up to {max(finite)}"
    val_acc = [event.value for event in events.Scalars("val/acc")] if "val/acc" in scalars else []
    assert len(val_acc) >= args.epochs, f"val/acc logged {len(val_acc)} times"
    print(f"{len(layers)} layers ({', '.join(layers)}), val/acc {[round(a, 3) for a in val_acc]}")


def resumed(args: argparse.Namespace) -> None:
    """The resumed run went on from the first: one more epoch, twice the steps."""
    first, after = (torch.load(p, map_location="cpu", weights_only=True) for p in (args.first, args.resumed))
    print(f"first: epoch {first['epoch']}, step {first['global_step']}; resumed: epoch {after['epoch']}, "
          f"step {after['global_step']}")  # fmt: skip
    assert after["epoch"] == first["epoch"] + 1 and after["global_step"] == 2 * first["global_step"]


def predictions(args: argparse.Namespace) -> None:
    """predict.py's p_cat, computed on the CPU, equals the checkpoint's p_cat on the GPU."""
    from datasets import decode_many
    from inference import load_model

    with open(args.csv) as file:
        rows = list(csv.DictReader(file))
    assert rows, f"{args.csv} has no predictions"
    model = load_model(args.ckpt).cuda()
    decoded = decode_many([row["path"] for row in rows], model.image_size, workers=1)
    images = torch.stack([image for _, image, _ in decoded])  # predict.py listed readable photos only
    with torch.inference_mode():
        on_gpu = model(images.cuda()).cpu()
    on_cpu = torch.tensor([float(row["p_cat"]) for row in rows])
    difference = (on_gpu - on_cpu).abs().max().item()
    print(f"{len(rows)} photos, largest CPU-GPU p_cat difference {difference:.2e}")
    assert difference < 1e-3


def export(args: argparse.Namespace) -> None:
    """A model on the GPU exports to every format, and each file gives the CPU model's p_cat."""
    from inference import load_model
    from inference.export import FORMATS, export_model

    on_cpu = load_model(args.ckpt)
    photos = torch.randint(0, 256, (8, 3, on_cpu.image_size, on_cpu.image_size), dtype=torch.uint8)
    with torch.inference_mode():
        expected = on_cpu(photos)
    for export_format, suffix in FORMATS.items():
        path = export_model(load_model(args.ckpt).cuda(), export_format, Path(args.output) / f"gpu{suffix}")
        with torch.inference_mode():
            difference = (load_model(path)(photos) - expected).abs().max().item()
        print(f"{export_format}: {path}, largest p_cat difference on the CPU {difference:.2e}")
        assert difference < 1e-4, export_format


class SyncCounter(pl.Callback):
    """Records the CUDA synchronisations of the second epoch's training steps (the first warms up)."""

    def __init__(self) -> None:
        self.recorder: warnings.catch_warnings | None = None
        self.caught: list[warnings.WarningMessage] = []
        self.steps = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            self.recorder = warnings.catch_warnings(record=True)
            self.caught = self.recorder.__enter__()
            warnings.simplefilter("always")  # every occurrence, not the first per line
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.recorder is not None:
            self.steps += 1

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.recorder is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.recorder.__exit__(None, None, None)
            self.recorder = None


def syncs(args: argparse.Namespace) -> None:
    """Where the CPU waits for the GPU in a training step: of this project's code only the NaN
    stop (every step) and the gradient norms (on logging steps), nothing in torchmetrics."""
    from training.cli import CatsDogsCLI

    cli = CatsDogsCLI([*args.train_args, "--trainer.max_epochs", "2", "--insight.every_n_epochs", "1000"])
    counter = SyncCounter()
    cli.trainer.callbacks.append(counter)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    where = Counter()
    for caught in counter.caught:
        if "synchroniz" in str(caught.message):
            file = Path(caught.filename).resolve()
            place = file.relative_to(REPO) if file.is_relative_to(REPO) else Path(*file.parts[-3:])
            where[f"{place}:{caught.lineno}"] += 1
    steps, total = max(1, counter.steps), sum(where.values())
    for place, count in where.most_common():
        print(f"{count / steps:5.2f} a step  {place}")
    print(f"{total} synchronisations in {steps} training steps, {total / steps:.2f} a step")
    ours = sum(n for place, n in where.items() if (REPO / place.split(":")[0]).is_file())
    from_metrics = sum(n for place, n in where.items() if "torchmetrics" in place)
    assert from_metrics == 0, "torchmetrics synchronises: an input check left on?"
    log_steps = steps / cli.trainer.log_every_n_steps
    assert ours <= steps + log_steps + 1, f"{ours} from this project: more than the NaN stop and the norms"


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)


def workers(args: argparse.Namespace) -> None:
    """The second epoch (training and validation) with data.num_workers 0 and null (chosen per
    device): on a GPU the workers must not be slower, or the default is wrong."""
    from training.cli import CatsDogsCLI

    seconds, used = {}, {}
    for setting in ("0", "null"):
        options = ["--trainer.max_epochs", "2", "--insight.every_n_epochs", "1000"]
        cli = CatsDogsCLI([*args.train_args, *options, "--data.num_workers", setting])
        timer = EpochTimer()
        cli.trainer.callbacks.append(timer)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        seconds[setting] = timer.seconds[-1]
        used[setting] = cli.datamodule.loader_settings()["num_workers"]
    print(f"an epoch: {seconds['0']:.2f} s with num_workers 0, {seconds['null']:.2f} s with null "
          f"({used['null']} workers)")  # fmt: skip
    assert seconds["null"] <= 1.1 * seconds["0"], "workers chosen for the GPU were slower than none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("precision").set_defaults(run=precision)
    command = commands.add_parser("tensorboard")
    command.add_argument("run_dir")
    command.add_argument("epochs", type=int)
    command.add_argument("--max-grad-norm", type=float, default=1e3)
    command.set_defaults(run=tensorboard)
    command = commands.add_parser("resumed")
    command.add_argument("first")
    command.add_argument("resumed")
    command.set_defaults(run=resumed)
    command = commands.add_parser("predictions")
    command.add_argument("csv")
    command.add_argument("ckpt")
    command.set_defaults(run=predictions)
    command = commands.add_parser("export")
    command.add_argument("ckpt")
    command.add_argument("output")
    command.set_defaults(run=export)
    for name, run in (("syncs", syncs), ("workers", workers)):  # the rest of the line is train.py's
        commands.add_parser(name).set_defaults(run=run)
    args, rest = parser.parse_known_args(argv)
    if rest and args.run not in (syncs, workers):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.train_args = rest
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: torch.cuda.is_available() is False")
    args.run(args)


if __name__ == "__main__":
    main()
