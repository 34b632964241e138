"""Data figures: cache build vs naive decoding, no decoding once cached, peak memory.

Generated photos stand in when ../shared/data is absent; the 1k/5k/25k-image sets of the
memory and scaling figures are always generated (small JPEGs: their content does not
change the cost of training on the uint8 cache, only how long building it takes).
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # also run as a script: the memory figure's child process

from datasets import cache as cache_module  # noqa: E402
from datasets.cache import ensure_cache  # noqa: E402
from datasets.layouts import list_entries, resolve_layout  # noqa: E402


def write_photos(root: Path, per_class: dict[str, int], size: tuple[int, int], seed: int = 0) -> Path:
    """`root/<split>/{cats,dogs}/N.jpg`-style JPEGs; per_class maps a folder ('train/cats') to a count."""
    rng = np.random.default_rng(seed)
    width, height = size
    # One noisy base image per class, rolled per file: distinct files, cheap to make.
    for folder, count in per_class.items():
        target = root / folder
        if target.is_dir() and len(os.listdir(target)) == count:
            continue  # made by an earlier section of this run
        target.mkdir(parents=True, exist_ok=True)
        colour = (200, 90, 70) if "cat" in folder.lower() else (40, 60, 130)
        base = np.clip(np.array(colour) + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
        for i in range(count):
            Image.fromarray(np.roll(base, i, axis=1)).save(target / f"{i}.jpg", quality=85)
    return root


def generated_photo_set(work: Path) -> Path:
    """3,000 photo-sized JPEGs in cats_and_dogs_filtered's layout (when the real ones are absent)."""
    counts = {"train/cats": 1000, "train/dogs": 1000, "validation/cats": 500, "validation/dogs": 500}
    return write_photos(work / "generated_photos", counts, size=(500, 375))


def synthetic_set(work: Path, num_images: int) -> Path:
    """num_images small JPEGs in class_folders layout (Cat/, Dog/), half each."""
    half = num_images // 2
    return write_photos(work / f"synthetic_{num_images}", {"Cat": half, "Dog": num_images - half}, (80, 64))


def naive_decode(paths: list[str], image_size: int) -> float:
    """Seconds for the naive path: full PIL decode, then resize and centre crop, one at a time."""
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")  # decodes every pixel of the full-size JPEG
            width, height = image.size
            scale = image_size / min(width, height)
            image = image.resize(
                (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
            )
            left, top = (image.width - image_size) // 2, (image.height - image_size) // 2
            np.asarray(image.crop((left, top, left + image_size, top + image_size)))
    return time.perf_counter() - start


def cache_build_vs_naive(root: Path, work: Path, image_size: int, limit: int | None, rounds: int = 2) -> dict:
    """Images/s of ensure_cache (draft decoding, every core) vs naive_decode, best of `rounds` each."""
    entries = list_entries(root, resolve_layout(root))[:limit]
    paths = [str(root / entry.path) for entry in entries]
    for path in paths:  # both read the same files from the page cache, not one from disk
        Path(path).read_bytes()
    naive_best = build_best = float("inf")
    for r in range(rounds):
        naive_best = min(naive_best, naive_decode(paths, image_size))
        start = time.perf_counter()
        info = ensure_cache(root, entries, image_size, work / f"build-cache-{r}", progress=False)
        build_best = min(build_best, time.perf_counter() - start)
        assert info.decoded == len(entries)
    return {"images": len(paths), "naive": len(paths) / naive_best, "cache": len(paths) / build_best}


def no_decode_after_cache(root: Path, cache_dir: Path, image_size: int = 64) -> dict:
    """Set up the real datamodule twice; count the decoder's calls the second time."""
    from datasets import CatsDogsDataModule

    counts = []
    for _ in range(2):
        calls = []
        original = cache_module.decode_many

        def spy(paths, *args, _original=original, _calls=calls, **kwargs):
            _calls.extend(paths)
            return _original(paths, *args, **kwargs)

        with mock.patch.object(cache_module, "decode_many", spy):
            data = CatsDogsDataModule(root=str(root), image_size=image_size, cache_dir=str(cache_dir))
            data.prepare_data()
            data.setup("fit")
        counts.append({"decoded_by_spy": len(calls), "cache_info_decoded": data.cache_info.decoded})
    return {"first": counts[0], "second": counts[1], "images": len(data.cache_info.labels)}


def peak_memory(root: Path, cache_dir: Path, run_dir: Path, workers: int) -> dict:
    """Peak RSS of a fresh process that trains one epoch of train.py's path on `root`."""
    command = [sys.executable, str(Path(__file__)), str(root), str(cache_dir), str(run_dir), str(workers)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_child(root: str, cache_dir: str, run_dir: str, workers: int) -> None:
    import contextlib

    from datasets import CatsDogsDataModule
    from models.classifier import CatsDogsClassifier
    from train import CatsDogsCLI

    after_imports = _high_water_mib()
    args = [
        "--config",
        str(REPO / "configs" / "mlp_article.yaml"),
        "--data.root",
        root,
        "--data.cache_dir",
        cache_dir,
        "--trainer.logger.init_args.save_dir",
        run_dir,
        "--trainer.max_epochs",
        "1",
        "--data.num_workers",
        str(workers),
    ]
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with (
        open(Path(run_dir) / "memory.log", "w") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
    ):
        cli = CatsDogsCLI(
            CatsDogsClassifier,
            CatsDogsDataModule,
            args=args,
            run=False,
            save_config_kwargs={"overwrite": True},
        )
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        images = cli.datamodule.cache_info.images
    print(
        json.dumps(
            {
                "peak_rss_mib": _high_water_mib(),
                "after_imports_mib": after_imports,
                "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "cache_mib": images.nbytes / 2**20,
                "cache_is_memmap": isinstance(images, np.memmap),
                "images": len(images),
            }
        )
    )


def _high_water_mib() -> float:
    """This process's peak RSS in MiB: VmHWM, which starts afresh at exec; ru_maxrss can carry
    the forking parent's peak over into the child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    _memory_child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
