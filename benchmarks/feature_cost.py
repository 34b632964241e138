"""What each optional feature of configs/mlp_article.yaml costs train.py, against the bare loop.

    python benchmarks/feature_cost.py                                # 1,800 photos of ../shared/data, ~6 min
    python benchmarks/feature_cost.py --synthetic 25000 --epochs 4   # PetImages-sized, ~16 min

perf.py section 1 measures train.py as configured. This script repeats that paired
measurement (each train.py epoch right after a bare-loop epoch on the same images, in the
same process) once per variant: as configured; with one feature switched off at a time
(NetworkInsight's TensorBoard snapshots and gradient norms, the random flips, the progress
bar, the checkpoints, the logger with everything that needs it); and with all of them off,
which leaves Lightning's loop, the validation pass and the safety callbacks (interrupt,
non-finite loss, RNG and metric restore). The variants run round-robin, `--rounds` times,
so a slow minute on this shared machine does not land on one variant; the medians over the
rounds are printed.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import perf_data  # noqa: E402  (after the repo root is on the path)
import perf_train  # noqa: E402

from callbacks import NetworkInsight  # noqa: E402
from training import KeepLastCheckpointCurrent  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"
CHECKPOINTS = (ModelCheckpoint, KeepLastCheckpointCurrent)
NO_LOGGER = ["--trainer.logger", "false"]  # train.py then drops LearningRateMonitor too
# name -> (train.py options, callback types taken out)
VARIANTS: dict[str, tuple[list[str], tuple[type, ...]]] = {
    "as configured": ([], ()),
    "no NetworkInsight": ([], (NetworkInsight,)),
    "no flips": (["--data.hflip", "false"], ()),
    "no progress bar": (["--trainer.enable_progress_bar", "false"], ()),
    "no checkpoints": ([], CHECKPOINTS),
    "no logger (nor NetworkInsight, LR monitor)": (NO_LOGGER, (NetworkInsight,)),
    "all of the above off, and early stopping": (
        ["--data.hflip", "false", "--trainer.enable_progress_bar", "false", *NO_LOGGER],
        (NetworkInsight, *CHECKPOINTS, EarlyStopping),
    ),
}
FIGURES = {  # perf_train.summarise_paired key -> column
    "train_ratio": "training epoch",
    "full_ratio": "full epoch",
    "full_vs_val_ratio": "full epoch vs bare loop + its validation",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=str(PHOTOS), help="split_folders or class folders of photos")
    parser.add_argument("--synthetic", type=int, help="generate this many images instead of --photos")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per run, after one warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="times every variant runs, round-robin")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feature-cost-") as temporary:
        work = Path(temporary)
        root = _photos(args, work)
        summaries = {name: [] for name in args.variants}
        for round_number in range(args.rounds):
            for variant, name in enumerate(args.variants):
                options, dropped = VARIANTS[name]
                run_dir = str(work / "runs" / f"round{round_number}" / f"variant{variant}")  # one a run
                run = perf_train.real_run(
                    str(root), str(work / "cache"), run_dir, args.epochs + 1, options, drop_callbacks=dropped
                )
                summary = perf_train.summarise_paired(run)
                summaries[name].append(summary)
                print(f"  round {round_number + 1}, {name}: {_ratios(summary)}", file=sys.stderr, flush=True)
        print(f"{summary['images']} training images, {args.epochs} epochs a run, {args.rounds} round(s)\n")
        print(table(summaries))


def _photos(args: argparse.Namespace, work: Path) -> Path:
    if args.synthetic:
        return perf_data.synthetic_set(work, args.synthetic)
    photos = Path(args.photos)
    return photos if photos.is_dir() else perf_data.generated_photo_set(work)


def _ratios(summary: dict) -> str:
    return ", ".join(f"{column} {summary[key]:.1%}" for key, column in FIGURES.items())


def table(summaries: dict[str, list[dict]]) -> str:
    """Markdown: one row a variant, the median over rounds of each ratio to the bare loop."""
    header = ["train.py", *FIGURES.values(), "saving checkpoints"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in summaries.items():
        ratios = [f"{statistics.median(run[key] for run in runs):.1%}" for key in FIGURES]
        fraction = statistics.median(run["checkpoint_fraction"] for run in runs)
        lines.append(f"| {name} | " + " | ".join(ratios) + f" | {fraction:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
