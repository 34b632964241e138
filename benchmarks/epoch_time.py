"""Epoch time and throughput of train.py as configured, against another commit of this
project, in the same command: the two checkouts' runs alternate, so both see the same machine.

    python benchmarks/epoch_time.py --baseline b969d62 [--configs mlp_article shift_mlp] [--epochs N]
    python benchmarks/epoch_time.py --configs best quick --epochs 4 --rounds 1 --json seconds.json

Without --baseline only this checkout runs: the seconds an epoch takes, per config, which
time_to_accuracy.py's --epoch-seconds reads to put curves from shared-machine runs on the
time axis of a machine alone (run it with the machine to itself).

Each run is `train.py --config configs/<name>.yaml --data.root ROOT`, for as many epochs as
the config says (or --epochs),
with the progress bar off; an epoch is timed from its start to the next one's, so
validation, checkpoints and TensorBoard snapshots count. The first epoch is left out
(start-up); the mean of the rest is reported, with images/s over the training photos.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git commit to compare with, e.g. b969d62 (default: none)")
    parser.add_argument("--configs", nargs="+", default=["mlp_article"])
    parser.add_argument("--epochs", type=int, help="override trainer.max_epochs (default: as configured)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs of runs per config")
    parser.add_argument("--root", type=lambda root: str(Path(root).resolve()), default=str(DEFAULT_ROOT))
    parser.add_argument("--json", type=Path, help="also write {config: mean epoch seconds} here")
    args = parser.parse_args()
    if not args.baseline:
        with tempfile.TemporaryDirectory() as work:
            seconds = {}
            for config in args.configs:
                seconds[config] = mean_epoch(
                    [run(REPO, config, args, Path(work)) for _ in range(args.rounds)]
                )
                print(f"{config}: {seconds[config]:.2f} s an epoch")
        if args.json:
            args.json.write_text(json.dumps(seconds, indent=1) + "\n")
        return
    with tempfile.TemporaryDirectory() as work:
        baseline = Path(work) / "baseline"
        worktree = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*worktree, "add", "-q", "--detach", str(baseline), args.baseline], check=True)
        try:
            print("| config | code | epoch (mean, s) | images/s | vs baseline |")
            print("|---|---|---:|---:|---:|")
            for config in args.configs:
                times = {"this": [], "baseline": []}
                for round_ in range(args.rounds):
                    order = [("this", REPO), ("baseline", baseline)]
                    for name, checkout in order if round_ % 2 == 0 else order[::-1]:
                        times[name].append(run(checkout, config, args, Path(work)))
                report(config, times)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False
            )


def run(checkout: Path, config: str, args: argparse.Namespace, work: Path) -> dict:
    """One train.py run in `checkout`; returns the EpochTimer's record."""
    out = work / "times.json"
    folder = Path(tempfile.mkdtemp(dir=work))  # its own runs/ and data/cache/
    command = [
        sys.executable, str(checkout / "train.py"), "--config", str(checkout / "configs" / f"{config}.yaml"),
        "--data.root", args.root, "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=epoch_timer.EpochTimer",
    ]  # fmt: skip
    if args.epochs:
        command += ["--trainer.max_epochs", str(args.epochs)]
    environment = {**os.environ, "EPOCH_TIMES_OUT": str(out), "PYTHONPATH": str(REPO / "benchmarks")}
    subprocess.run(command, cwd=folder, env=environment, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return json.loads(out.read_text())


def mean_epoch(records: list[dict]) -> float:
    """The mean epoch over the runs' records, each run's first epoch (start-up) left out."""
    return statistics.mean(seconds for record in records for seconds in record["epoch_seconds"][1:])


def report(config: str, times: dict[str, list[dict]]) -> None:
    means = {name: (mean_epoch(records), records[0]["train_photos"]) for name, records in times.items()}
    for name, (seconds, photos) in means.items():
        ratio = seconds / means["baseline"][0]
        print(f"| {config} | {name} | {seconds:.3f} | {photos / seconds:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
