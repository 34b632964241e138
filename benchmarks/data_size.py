"""How much data each network needs: test accuracy against the number of training photos.

    python benchmarks/data_size.py [--configs logreg mlp_article mixer best] \\
        [--sizes 250 500 1000 2000 4000] [--reuse benchmarks/results/dogs_vs_cats.json] \\
        [--results benchmarks/results/data_size.json] [--plot docs/images/data_size.png]
    python benchmarks/data_size.py --from-results benchmarks/results/data_size.json   # redraw only

Each size is a class-balanced subset of dogs-vs-cats/train (half cats, half dogs), and the
subsets are nested: every photo of the 500 is also in the 1,000, so a curve shows what more
photos add, not which photos were drawn. A subset is a folder of links to the photos (and to
the test folder), trained by benchmarks/zoo.py's run (train.py's own CLI in a fresh process)
with the config's own recipe, epochs included: 10% of each subset is carved off for choosing
the epoch, and the test folder is scored once, at that epoch. One seed per size; the whole
train/ folder is the zoo's own runs (`--reuse`, three seeds), or trained here with seed 0.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

from zoo import REPO, run_in_fresh_process

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "dogs-vs-cats"
CLASSES = ("cats", "dogs")


def nested_subset(root: Path, size: int, into: Path) -> Path:
    """A split_folders folder at `into` whose train/ links `size` photos, half of each class, the
    first of a fixed shuffle (so a smaller subset lies inside every larger one), and whose
    validation/ links the test folder."""
    for name in CLASSES:
        photos = sorted((root / "train" / name).iterdir())
        random.Random(0).shuffle(photos)  # the same order for every size: nested subsets
        folder = into / "train" / name
        folder.mkdir(parents=True)
        for photo in photos[: size // 2]:
            (folder / photo.name).symlink_to(photo.resolve())
    (into / "validation").symlink_to((root / "validation").resolve(), target_is_directory=True)
    return into


def train_sizes(
    configs: list[str],
    sizes: list[int],
    root: Path,
    whole: int,
    results_file: Path | None,
    extra_args: tuple[str, ...] = (),
) -> list[dict]:
    """Every config on every size (seed 0, `extra_args` after the config's options); a size of
    `whole` or more trains on `root` itself."""
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for size in sizes:
            subset = root if size >= whole else nested_subset(root, size, Path(work) / f"subset-{size}")
            for config in configs:
                result = run_in_fresh_process(config, 0, str(subset), Path(work), extra_args)
                result.update(train_photos=min(size, whole))
                named = f"<nested subset of {size} photos>"
                for written in (str(subset), os.path.relpath(subset, REPO)):  # zoo.py writes it relative
                    result["command"] = result["command"].replace(written, named)
                results.append(result)
                print(
                    f"{config}, {size} photos: test acc {result['test_acc']:.3f}", file=sys.stderr, flush=True
                )
                if results_file:
                    results_file.write_text(json.dumps(results, indent=1) + "\n")
    return results


def render(results: list[dict]) -> str:
    """Markdown: one row per config, one column per size; the mean (and spread) where seeds > 1."""
    sizes = sorted({r["train_photos"] for r in results})
    configs = list(dict.fromkeys(r["config"] for r in results))
    lines = [
        "| config | " + " | ".join(f"{s:,} photos" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for config in configs:
        cells = []
        for size in sizes:
            accuracies = [
                r["test_acc"] for r in results if r["config"] == config and r["train_photos"] == size
            ]
            spread = f" ± {statistics.stdev(accuracies):.1%}" if len(accuracies) > 1 else ""
            cells.append(f"{statistics.mean(accuracies):.1%}{spread}" if accuracies else "")
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    every_size = sorted({r["train_photos"] for r in results})
    for config in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == config]
        sizes = sorted({r["train_photos"] for r in runs})
        at = [[r["test_acc"] for r in runs if r["train_photos"] == s] for s in sizes]
        spread = [statistics.stdev(a) if len(a) > 1 else 0.0 for a in at]
        axes.errorbar(
            sizes, [statistics.mean(a) for a in at], yerr=spread, marker="o", capsize=3, label=config
        )
    axes.set_xscale("log")
    axes.set_xticks(every_size, [f"{s:,}" for s in every_size])  # the sizes trained, not powers of ten
    axes.minorticks_off()
    axes.set_xlabel("training photos (dogs-vs-cats/train, class-balanced, nested; 10% choose the epoch)")
    axes.set_ylabel("test accuracy (1,000 photos)")
    axes.set_title("How much data each network needs (one seed a size, three at the largest)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["logreg", "mlp_article", "mixer", "best"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 500, 1000, 2000, 4000])
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="dogs-vs-cats: train/ and validation/"
    )
    parser.add_argument(
        "--reuse", type=Path, help="the zoo's runs on the whole train/ folder (zoo.json format)"
    )
    parser.add_argument("--results", type=Path, help="write every run here (JSON)")
    parser.add_argument("--from-results", type=Path, help="no training: tabulate and plot this file")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "data_size.png")
    args = parser.parse_args()
    if args.from_results:
        results = json.loads(args.from_results.read_text())
    else:
        if not (args.root / "train").is_dir():
            sys.exit(f"error: photos not found at {args.root}/train; pass --root DIR (train/ + validation/)")
        whole = sum(len(list((args.root / "train" / name).iterdir())) for name in CLASSES)
        reused = [
            {**r, "train_photos": whole}
            for r in (json.loads(args.reuse.read_text()) if args.reuse else [])
            if r["config"] in args.configs
        ]
        missing = [c for c in args.configs if not any(r["config"] == c for r in reused)]
        results = train_sizes(args.configs, args.sizes, args.root, whole, args.results)
        results += train_sizes(missing, [whole], args.root, whole, None) if missing else []
        results += reused
        if args.results:
            args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    plot(results, args.plot)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
