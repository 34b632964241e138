"""Seconds of training until each config first reaches 65 / 70 / 75 / 80% test accuracy, and the plot.

    python benchmarks/time_to_accuracy.py [--configs quick best ...] [--seeds 0 1 2] \\
        [--results benchmarks/results/zoo.json] [--plot docs/images/time_to_accuracy.png] \\
        [--publish weights/]
    python benchmarks/time_to_accuracy.py --from-results benchmarks/results/zoo.json   # no training: redraw
    python benchmarks/time_to_accuracy.py --from-results runs.json --epoch-seconds alone.json

Every run is benchmarks/zoo.py's (train.py's own CLI in a fresh process, the best epoch chosen
on validation) with one addition: after every epoch the test folder is scored as well, for
this curve only (benchmarks/test_curve.py). Nothing reads it during training, so each run
also gives the results table's row: the test accuracy of the epoch validation chose. Seconds
count from the start of fit (start-up and the one-off cache build are not in them) and leave
the curve's own test passes out.

Runs that shared the machine measure accuracy truly but time falsely: --epoch-seconds puts
their curves on the clock of a machine alone, each point at its epoch times the config's
seconds an epoch as benchmarks/epoch_time.py measured them alone (its --json).
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from zoo import DEFAULT_CONFIGS, DEFAULT_ROOT, REPO, render, run_in_fresh_process, summarise

TARGETS = (0.65, 0.70, 0.75, 0.80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=[*DEFAULT_CONFIGS, "quick", "best"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="split_folders photos")
    parser.add_argument("--results", type=Path, help="write every run's figures and curve here (JSON)")
    parser.add_argument(
        "--from-results",
        type=Path,
        nargs="+",
        help="no training: tabulate and plot these JSON files; a later file's run of a config and "
        "seed replaces an earlier file's",
    )
    parser.add_argument("--runs", type=Path, help="keep the run folders (checkpoints) here")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "time_to_accuracy.png")
    parser.add_argument("--publish", type=Path, help="write each config's weights (best seed on val) here")
    parser.add_argument("--epoch-seconds", type=Path, help="{config: seconds an epoch} timed alone (JSON)")
    args = parser.parse_args()
    if args.from_results:
        runs = {(r["config"], r["seed"]): r for f in args.from_results for r in json.loads(f.read_text())}
        results = list(runs.values())
        if args.results:
            args.results.write_text(json.dumps(results, indent=1) + "\n")
    else:
        if not Path(args.root).is_dir():
            sys.exit(f"error: photos not found at {args.root}; pass --root DIR (split_folders layout)")
        results = train_all(args.configs, args.seeds, args.root, args.runs, args.results)
    if args.epoch_seconds:
        results = on_alone_clock(results, json.loads(args.epoch_seconds.read_text()))
    configs = list(dict.fromkeys(r["config"] for r in results))  # in the order they ran
    print(render_targets(results, configs))
    print()
    rows = [summarise(c, [r for r in results if r["config"] == c]) for c in configs]
    print(render(rows, majority=rows[0]["majority"], seeds=len({r["seed"] for r in results})))
    plot(results, configs, args.plot)
    print(f"\nplot: {args.plot}")
    if args.publish:
        from publish_weights import publish  # benchmarks/, this script's folder

        publish(results, args.publish)


def train_all(
    configs: list[str], seeds: list[int], root: str, runs: Path | None, results_file: Path | None
) -> list[dict]:
    """Every config with every seed; `results_file` is rewritten after each run, so a long
    benchmark that stops keeps what it measured."""
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = runs or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        for config in configs:
            for seed in seeds:
                results.append(run_in_fresh_process(config, seed, root, work, curve=True))
                reached = seconds_to(results[-1]["curve"], TARGETS)
                print(f"{config} seed {seed}: test acc {results[-1]['test_acc']:.3f}, reached "
                      f"{ {f'{t:.0%}': s for t, s in reached.items()} }", file=sys.stderr)  # fmt: skip
                if results_file:
                    results_file.parent.mkdir(parents=True, exist_ok=True)
                    results_file.write_text(json.dumps(results, indent=1) + "\n")
    return results


def on_alone_clock(results: list[dict], epoch_seconds: dict[str, float]) -> list[dict]:
    """The runs of the configs in `epoch_seconds`; each point and the fit at epochs x seconds an epoch."""
    timed = []
    for run in (run for run in results if run["config"] in epoch_seconds):
        per_epoch = epoch_seconds[run["config"]]
        curve = [{**point, "seconds": point["epoch"] * per_epoch} for point in run["curve"]]
        fit_seconds = run["epochs"] * per_epoch
        photos_per_second = run["images_per_second"] * run["fit_seconds"] / fit_seconds
        timed.append(
            {**run, "curve": curve, "fit_seconds": fit_seconds, "images_per_second": photos_per_second}
        )
    return timed


def seconds_to(curve: list[dict], targets: tuple[float, ...]) -> dict[float, float | None]:
    """Training seconds at the end of the first epoch whose test accuracy reaches each target."""
    return {
        target: next((point["seconds"] for point in curve if point["test_acc"] >= target), None)
        for target in targets
    }


def render_targets(results: list[dict], configs: list[str]) -> str:
    """Markdown: per config, the median seconds to each target over the seeds that reached it."""
    header = " | ".join(f"to {t:.0%} test acc" for t in TARGETS)
    lines = [
        f"| config | {header} | test acc after the last epoch |",
        "|---|" + "---:|" * (len(TARGETS) + 1),
    ]
    for config in configs:
        runs = [r for r in results if r["config"] == config]
        cells = []
        for target in TARGETS:
            times = [s for s in (seconds_to(r["curve"], TARGETS)[target] for r in runs) if s is not None]
            if not times:
                cells.append("not reached")
            else:
                reached = "" if len(times) == len(runs) else f" ({len(times)} of {len(runs)} seeds)"
                cells.append(f"{statistics.median(times):.0f} s{reached}")
        final = statistics.mean(r["curve"][-1]["test_acc"] for r in runs)
        lines.append(f"| {config} | " + " | ".join(cells) + f" | {final:.1%} |")
    lines.append("")
    lines.append("Median over the seeds; seconds of training from the start of fit, on the machine below.")
    return "\n".join(lines)


def plot(results: list[dict], configs: list[str], path: Path) -> None:
    """Test accuracy against training seconds: per config its mean over the seeds (bold) and
    each seed (faint); dashed: a variant tried on a config, not a file in configs/."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    colours = plt.get_cmap("tab10")
    for i, config in enumerate(configs):
        runs = [r for r in results if r["config"] == config]
        variant = not (REPO / "configs" / f"{config}.yaml").exists()
        style = {"color": colours(i % 10), "linestyle": "--" if variant else "-"}
        for run in runs:
            seconds = [p["seconds"] for p in run["curve"]]
            axes.plot(seconds, [p["test_acc"] for p in run["curve"]], linewidth=0.6, alpha=0.3, **style)
        # The seeds' curves share their epochs; the mean is taken at the epochs all of them have.
        common = set.intersection(*({p["epoch"] for p in run["curve"]} for run in runs))
        points = [[p for p in run["curve"] if p["epoch"] in common] for run in runs]
        seconds = [statistics.mean(p["seconds"] for p in at) for at in zip(*points, strict=True)]
        accuracy = [statistics.mean(p["test_acc"] for p in at) for at in zip(*points, strict=True)]
        axes.plot(seconds, accuracy, linewidth=1.8, label=f"{config} ({len(runs)})", **style)
    for target in TARGETS:
        axes.axhline(target, color="grey", linewidth=0.5, linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel("training seconds on 2 CPU cores (log scale)")
    axes.set_ylabel("test accuracy (1,000 photos)")
    axes.set_ylim(0.45, 0.9)
    axes.set_title("Time to accuracy: mean over seeds (number in brackets), each seed faint")
    axes.legend(loc="upper left", fontsize=7, ncol=2)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    main()
