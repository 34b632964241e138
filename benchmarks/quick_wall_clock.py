"""The quick recipe as a newcomer runs it: wall-clock seconds of the whole train.py command.

    python benchmarks/quick_wall_clock.py [--config quick] [--seeds 0 1 2] [--root DIR]

Each seed runs `python train.py --config configs/quick.yaml --data.root DIR` in a fresh
folder with an empty cache, so start-up, decoding the photos, training, validation and
the final test are all in the seconds, as a newcomer's first run has them. Prints the
seconds and the test accuracy train.py reports, per seed and as a mean.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo import DEFAULT_ROOT, REPO, cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="quick")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="split_folders photos")
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        sys.exit(f"error: photos not found at {args.root}; pass --root DIR (split_folders layout)")
    seconds, accuracies = [], []
    for seed in args.seeds:
        command = [
            sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / f"{args.config}.yaml"),
            "--data.root", args.root, "--seed_everything", str(seed), "--data.seed", str(seed),
        ]  # fmt: skip
        with tempfile.TemporaryDirectory() as work:  # no cache, no runs: a first run
            start = time.perf_counter()
            result = subprocess.run(command, cwd=work, capture_output=True, text=True)
            seconds.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"error: train.py failed for seed {seed}:\n{result.stderr[-2000:]}")
        output = result.stdout + result.stderr
        accuracies.append(float(re.search(r"test/acc (\d\.\d+)", output).group(1)))
        precision = re.search(r"^trainer\.precision: ([\w-]+)", output, re.MULTILINE)
        precision = precision.group(1) if precision else "as configured"
        print(f"seed {seed}: {seconds[-1]:.0f} s wall, test acc {accuracies[-1]:.1%}, {precision}")
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(
        f"{args.config}: {statistics.mean(seconds):.0f} s wall (max {max(seconds):.0f} s), test acc "
        f"{statistics.mean(accuracies):.1%} ± {spread:.1%} over {len(accuracies)} seeds; {cpu_name()}"
    )


if __name__ == "__main__":
    main()
