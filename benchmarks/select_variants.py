"""Choose between variants of a config on validation alone, over several random splits.

    python benchmarks/select_variants.py --config mlp_article --splits 5 \\
        --variant "32 px" "--data.image_size 32" \\
        --variant "per-image" "--model.input_norm per_image"

One 200-photo validation split measures an accuracy to about +-3.4% (one standard error),
too coarse to tell variants apart. Here the config as it stands and every variant train
on the same `splits` splits (data.seed = seed_everything = 0, 1, ...: other validation
photos, other order, augmentation and initialisation each time), and each variant is
compared with the config split by split, so the split-to-split spread cancels out of the
difference. Only validation is read: the test folder is never evaluated here.

The best validation accuracy of a run is the maximum of a noisy curve, so it flatters
variants whose curve is noisier (and so judges smoothing, such as an EMA of the weights,
or choosing the epoch on val/loss, unfairly). `--holdout` removes that: every run trains
on the `train/` photos alone, 10% of which are carved off as a held-out set that no
choice ever sees, and the score is that set's accuracy at the epoch validation chose.
Still no photo of the test folder is read.
"""

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from zoo import DEFAULT_ROOT, run_in_fresh_process

BASELINE = "as configured"
HOLDOUT_FRACTION = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a config name in configs/, e.g. mlp_article")
    parser.add_argument(
        "--variant",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "OPTIONS"),
        help='a name and the train.py options that make it, e.g. "32 px" "--data.image_size 32"',
    )
    parser.add_argument("--splits", type=int, default=5, help="random splits per variant (>= 2)")
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="split_folders photos")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="score on a held-out 10%% of train/ at the epoch validation chose, not on validation itself",
    )
    args = parser.parse_args()
    if args.splits < 2:
        sys.exit("error: --splits must be at least 2, to measure the spread between splits")
    if not Path(args.root).is_dir():
        sys.exit(f"error: photos not found at {args.root}; pass --root DIR (split_folders layout)")
    variants = {BASELINE: [], **{name: shlex.split(options) for name, options in args.variant}}
    root, score = args.root, "best_val_acc"
    data_args: list[str] = []
    if args.holdout:  # the test folder stays out; its split layout's train/ is one class_folders set
        root, score = str(Path(args.root) / "train"), "test_acc"
        data_args = ["--data.layout", "class_folders", "--data.test_fraction", str(HOLDOUT_FRACTION)]
    accuracies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for name, options in variants.items():
            accuracies[name] = []
            for split in range(args.splits):
                # The split is the run's seed: run_one sets seed_everything and data.seed to it.
                result = run_in_fresh_process(
                    args.config, split, root, Path(work), [*data_args, *options], test=args.holdout
                )
                accuracies[name].append(result[score])
                print(f"{name} split {split}: {score} {result[score]:.3f}", file=sys.stderr)
    print(render(args.config, variants, accuracies, args.holdout))


def render(
    config: str, variants: dict[str, list[str]], accuracies: dict[str, list[float]], holdout: bool = False
) -> str:
    baseline = accuracies[BASELINE]
    splits = len(baseline)
    if holdout:
        measure, column = "held-out accuracy at the best validation epoch", "held-out acc"
    else:
        measure, column = "best-epoch validation accuracy", "val acc"
    lines = [
        f"`{config}`, {measure} over {splits} random splits (mean ± standard error)",
        "",
        f"| variant | options | {column} | difference to the config, same splits |",
        "|---|---|---:|---:|",
    ]
    for name, values in accuracies.items():
        mean, error = mean_and_error(values)
        if name == BASELINE:
            difference = ""
        else:
            diff_mean, diff_error = mean_and_error([v - b for v, b in zip(values, baseline, strict=True)])
            difference = f"{diff_mean:+.1%} ± {diff_error:.1%}"
        options = " ".join(variants[name]) or "(none)"
        lines.append(f"| {name} | `{options}` | {mean:.1%} ± {error:.1%} | {difference} |")
    return "\n".join(lines)


def mean_and_error(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n))."""
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


if __name__ == "__main__":
    main()
