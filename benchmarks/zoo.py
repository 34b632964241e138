"""Zoo results table: every config on cats_and_dogs_filtered, several seeds, test as it comes out.

    python benchmarks/zoo.py [--configs logreg mlp_article ...] [--seeds 0 1 2] [--out benchmarks/zoo.md]

Each run is `train.py`'s own CLI in a fresh process (so runs share no state); models are
selected on the validation split carved from the training photos, and the test figure is
the held-out `validation/` folder, reported as it comes out. Prints a markdown table.

A seed is the whole run's: `seed_everything` (initialisation, dropout) and `data.seed`
(which photos are carved off for validation, their order, crops and flips), so a row's
± is how much one run of the config moves, not only its initialisation.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"
DEFAULT_CONFIGS = ["logreg", "mlp_article", "mlp_article_32px", "mlp_deep", "resmlp", "mixer", "shift_mlp"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="split_folders photos")
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--one", nargs=3, metavar=("CONFIG", "SEED", "JSON_OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="[]", help=argparse.SUPPRESS)  # JSON list of train.py options
    parser.add_argument("--no-test", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--curve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        config, seed, json_out = args.one
        extra = json.loads(args.extra)
        run_one(config, int(seed), args.root, Path(json_out), extra, not args.no_test, args.curve)
        return
    if not Path(args.root).is_dir():
        sys.exit(f"error: photos not found at {args.root}; pass --root DIR (split_folders layout)")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for config in args.configs:
            results = []
            for seed in args.seeds:
                results.append(run_in_fresh_process(config, seed, args.root, Path(work)))
                print(f"{config} seed {seed}: {results[-1]}", file=sys.stderr)
            rows.append(summarise(config, results))
    table = render(rows, majority=rows[0]["majority"] if rows else 0.5, seeds=len(args.seeds))
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


def run_in_fresh_process(
    config: str,
    seed: int,
    root: str,
    work: Path,
    extra_args: list[str] = (),
    test: bool = True,
    curve: bool = False,
) -> dict:
    """run_one in a child process (runs share no state) with `work` as its folder; returns its
    JSON result. The run's folder, with its checkpoints, stays in work/runs/."""
    out = work / f"{config}-{seed}-{len(list(work.glob('*.json')))}.json"
    command = [sys.executable, __file__, "--root", root, "--one", config, str(seed), str(out)]
    command += ["--extra", json.dumps(list(extra_args))] + ([] if test else ["--no-test"])
    command += ["--curve"] if curve else []
    subprocess.run(command, cwd=work, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def run_one(
    config: str,
    seed: int,
    root: str,
    json_out: Path,
    extra_args: list[str] = (),
    test: bool = True,
    curve: bool = False,
) -> None:
    """One training run through train.py's CLI, in this (fresh) process.

    `extra_args` are train.py options added after the config's; with `test` off the test
    folder is never evaluated (benchmarks/select_variants.py selects on validation only);
    with `curve` the test folder is also scored after every epoch, for the time-to-accuracy
    curve only (benchmarks/test_curve.py).
    """
    sys.path.insert(0, str(REPO))
    import torch

    from training.cli import CatsDogsCLI  # imported here: only the child process needs it

    sys.argv = sys.argv[:1]  # the CLI reads `args` below, not this script's own options
    train_args = ["--data.root", root, "--seed_everything", str(seed), "--data.seed", str(seed), *extra_args]
    config_path = REPO / "configs" / f"{config}.yaml"
    cli = CatsDogsCLI(["--config", str(config_path), *train_args, "--trainer.enable_progress_bar", "false"])
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    test_curve = None
    if curve:
        from test_curve import TestCurve  # benchmarks/, this script's folder

        # First, so it scores the weights validation scored, before EMA callbacks swap them back.
        test_curve = TestCurve()
        trainer.callbacks.insert(0, test_curve)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit_seconds = time.perf_counter() - start - (test_curve.own_seconds if test_curve else 0.0)
    result = {
        "config": config,
        "seed": seed,
        # As typed in the repository: the photos' folder relative to it, not this machine's path.
        "command": shlex.join(
            ["python", "train.py", "--config", f"configs/{config}.yaml", *train_args]
        ).replace(root, os.path.relpath(root, REPO)),
        "best_ckpt": str(Path(trainer.checkpoint_callback.best_model_path).resolve()),
        "machine": f"{cpu_name()}, {_cores()} CPU cores",
        "precision": str(trainer.precision),
        "params": sum(p.numel() for p in model.model.network.parameters()),
        "best_val_acc": float(trainer.checkpoint_callback.best_model_score),
        "epochs": trainer.current_epoch,
        "fit_seconds": fit_seconds,
        "images_per_second": len(data.splits["train"]) * trainer.current_epoch / fit_seconds,
    }
    if test_curve:
        result["curve"] = test_curve.points
    if test:
        best = trainer.checkpoint_callback.best_model_path
        scores = trainer.test(model, datamodule=data, ckpt_path=best, weights_only=True, verbose=False)[0]
        cat_share = float(torch.cat([labels for _, labels in data.test_dataloader()]).float().mean())
        result.update(
            test_acc=scores["test/acc"],
            test_auroc=scores["test/auroc"],
            majority=max(cat_share, 1 - cat_share),
        )
    json_out.write_text(json.dumps(result))


def summarise(config: str, results: list[dict]) -> dict:
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in results]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    return {
        "config": config,
        "params": results[0]["params"],
        "test_acc": mean_std("test_acc"),
        "test_auroc": mean_std("test_auroc"),
        "val_acc": mean_std("best_val_acc"),
        "fit_seconds": mean_std("fit_seconds")[0],
        "images_per_second": mean_std("images_per_second")[0],
        "majority": results[0]["majority"],
        "runs": len(results),
    }


def render(rows: list[dict], majority: float, seeds: int) -> str:
    lines = [
        f"| config | parameters | test acc (mean ± std, {seeds} seeds) | test AUROC | best val acc "
        "| training time | images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| majority class | 0 | {majority:.1%} | 0.500 | | | |",
    ]
    for row in rows:
        acc, acc_std = row["test_acc"]
        auroc, auroc_std = row["test_auroc"]
        val, _ = row["val_acc"]
        fewer = f" ({row['runs']} seed{'s' if row['runs'] > 1 else ''})" if row["runs"] != seeds else ""
        lines.append(
            f"| {row['config']} | {row['params']:,} | {acc:.1%} ± {acc_std:.1%}{fewer} "
            f"| {auroc:.3f} ± {auroc_std:.3f} | {val:.1%} "
            f"| {row['fit_seconds']:.0f} s | {row['images_per_second']:.0f} |"
        )
    lines.append("")
    lines.append(f"Machine: {cpu_name()}, {_cores()} CPU cores, no GPU.")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
