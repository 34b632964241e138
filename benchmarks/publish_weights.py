"""Zoo runs -> weights/<config>/: per config, the seed with the best validation accuracy,
written as a Hub folder and checked on the way.

    python benchmarks/publish_weights.py RESULTS.json [RESULTS.json ...] --out weights/

Each JSON file holds one result of benchmarks/zoo.py, or a list of them (keys `config`,
`seed`, `params`, `best_val_acc`, `epochs`, `fit_seconds`, `images_per_second`,
`test_acc`, `test_auroc`, `best_ckpt`, `command`). The seed is chosen on validation only,
as the results table's runs are; the test figures go into the model card as they came out.
Before a folder replaces the one it updates, it is loaded back (models.load_pretrained) and
must give the checkpoint's p_cat to 1e-6 on the test photos, and its card must state the
run's test accuracy and AUROC. `weights/SHA256SUMS` is rewritten for every folder in it.
"""

import argparse
import json
import os
import platform
import shutil
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the packages are used in place

import torch  # noqa: E402

from datasets import decode_many, find_image_files  # noqa: E402
from inference.hub import save_pretrained  # noqa: E402
from inference.loading import load_model  # noqa: E402
from models.pretrained import CARD_NAME, WEIGHTS_NAME, ModelFileError, load_folder, write_index  # noqa: E402

TEST_PHOTOS = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered" / "validation"
KEYS = ("config", "seed", "params", "best_val_acc", "epochs", "fit_seconds", "images_per_second")
KEYS += ("test_acc", "test_auroc", "best_ckpt", "command")
PARITY = 1e-6  # p_cat of the folder vs the checkpoint: float32 both ways, so only summation order
SIZE_LIMIT = 40 * 2**20  # what the repository may hold in weights/ (the zoo issue's budget)
TERMS = (
    'Licence of the photos: none is given. Kaggle offers them "for fun and research"; Microsoft '
    "distributes the full set under a Microsoft Research licence for non-commercial research. Treat "
    "these weights, learnt from them, as for research and education only, non-commercial; the "
    "copyright in each photo stays with its owner."
)
KAGGLE = (
    "from the Kaggle *Dogs vs. Cats* competition (2013), a subset of Microsoft Research's Asirra set "
    "provided by Petfinder.com; 10% of them carved off for validation and model selection. The "
    "1,000-photo `validation/` folder (Kaggle indices 2000-2499, in neither training set) is the test "
    "set, used for nothing but the figures above."
)
# The data set a run trained on, found by its folder's name in the run's command.
PHOTOS = {
    "dogs-vs-cats": "`dogs-vs-cats`: 6,999 original training photos (3,499 cats, 3,500 dogs) " + KAGGLE,
    "cats_and_dogs_filtered": "Google's `cats_and_dogs_filtered`: 2,000 training photos (1,000 cats, "
    "1,000 dogs) " + KAGGLE,
}


def dataset_of(run: dict) -> str:
    """The name of the data set in the run's command (zoo.py writes it relative to the repository)."""
    return next((name for name in PHOTOS if f"/{name}" in run["command"]), "cats_and_dogs_filtered")


def publish(results: list[dict], out_dir: Path, photos: Path | None = TEST_PHOTOS) -> None:
    """Write out_dir/<config>/ for every config in `results`, from its best-validation seed.

    `photos`: the folder whose photos the parity check runs on (default: the test folder);
    None or a missing folder checks on 64 random uint8 photos instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_config: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        missing = [key for key in KEYS if key not in result]
        if missing:
            raise ValueError(f"a result of {result.get('config', '?')} has no {', '.join(missing)}")
        by_config[result["config"]].append(result)
    for config, runs in sorted(by_config.items()):
        best = max(runs, key=lambda run: (run["best_val_acc"], -run["seed"]))  # a tie: the lower seed
        folder = publish_run(best, sorted(run["seed"] for run in runs), out_dir, photos)
        size = (folder / WEIGHTS_NAME).stat().st_size
        print(
            f"{config}: seed {best['seed']} (val acc {best['best_val_acc']:.1%}) -> {folder}, {size:,} bytes"
        )
    index = write_index(out_dir)
    total = sum(path.stat().st_size for path in out_dir.rglob("*") if path.is_file())
    print(f"{index}: every file's sha256; {out_dir} holds {total / 2**20:.1f} MiB")
    if total > SIZE_LIMIT:
        print(
            f"warning: over the {SIZE_LIMIT / 2**20:.0f} MiB the repository's weights may take",
            file=sys.stderr,
        )


def publish_run(run: dict, seeds: list[int], out_dir: Path, photos: Path | None) -> Path:
    """One run's folder, written beside its final name, checked, then put in place."""
    model = load_model(run["best_ckpt"])
    final, new = out_dir / run["config"], out_dir / f".{run['config']}.new"
    shutil.rmtree(new, ignore_errors=True)
    card = {key: run[key] for key in KEYS if key not in ("config", "best_ckpt")}  # config: the model's own
    card.update(name=run["config"], load_as=run["config"], seeds=", ".join(map(str, seeds)))
    dataset = dataset_of(run)
    card.update(
        dataset=dataset, test_photos=f"`{dataset}/validation/`", photos=f"{PHOTOS[dataset]}\n\n{TERMS}"
    )
    trained_in = f" in {run['precision']}" if run.get("precision") else ""
    card.update(machine=(run.get("machine") or machine()) + trained_in)
    try:
        save_pretrained(model, new, card=card)
        check_parity(model, new, photos)
        check_card(new / CARD_NAME, run)
        if final.exists():
            shutil.rmtree(final)
        os.replace(new, final)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return final


def check_parity(model: torch.nn.Module, folder: Path, photos: Path | None) -> None:
    images = parity_images(photos, model.image_size)
    with torch.inference_mode():
        difference = (load_folder(folder)(images) - model(images)).abs().max().item()
    if difference > PARITY:
        raise RuntimeError(f"'{folder}' gives p_cat {difference:.2e} away from its checkpoint's (> {PARITY})")


def check_card(card: Path, run: dict) -> None:
    text = card.read_text(encoding="utf-8")
    for figure in (f"{100 * run['test_acc']:.1f}%", f"{run['test_auroc']:.3f}"):
        if figure not in text:
            raise RuntimeError(f"'{card}' does not state the run's {figure}")


def parity_images(photos: Path | None, image_size: int) -> torch.Tensor:
    """uint8 (B, 3, S, S): every readable photo of `photos`, or 64 seeded random ones."""
    if photos is not None and Path(photos).is_dir():
        files = find_image_files([str(photos)])
        decoded = [image for _, image, _ in decode_many(files, image_size) if image is not None]
        if decoded:
            return torch.stack(decoded)
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (64, 3, image_size, image_size), dtype=torch.uint8, generator=generator)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    accelerator = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cores} cores of {cpu}, {accelerator}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files of benchmarks/zoo.py results")
    parser.add_argument(
        "--out", type=Path, default=REPO / "weights", help="weights folder (default weights/)"
    )
    parser.add_argument("--photos", type=Path, default=TEST_PHOTOS, help="photos for the parity check")
    args = parser.parse_args()
    results = []
    for path in args.results:
        loaded = json.loads(path.read_text())
        results += loaded if isinstance(loaded, list) else [loaded]
    try:
        publish(results, args.out, args.photos)
    except (ValueError, RuntimeError, OSError, ModelFileError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
