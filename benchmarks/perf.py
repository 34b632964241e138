"""Performance figures of the training and prediction paths, each against a baseline from the same run.

    python benchmarks/perf.py                      # every section, on ../shared/data photos when present
    python benchmarks/perf.py --sections 1 2 --quick

Sections: 1 train.py vs a bare PyTorch loop; 2 that loop vs the float32 matmul peak;
3 cache build vs naive decoding; 4 no decoding once cached, data-loading share of an
epoch; 5 peak memory on a 25,000-image cache; 6 predict.py on 1,000 photos and start-up;
7 epoch time vs images and width. Ends with a summary table (markdown).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import perf_data  # noqa: E402  (after the repo root is on the path)
import perf_predict  # noqa: E402
import perf_train  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"
PEAK_FRACTION_TARGET = 0.5
WIDTHS = {"x0.5": [256, 128, 64], "x1": [512, 256, 128], "x2": [1024, 512, 256]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sections", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6, 7], help="which figures"
    )
    parser.add_argument("--quick", action="store_true", help="fewer epochs, rounds and images (a smoke run)")
    parser.add_argument("--photos", default=str(PHOTOS), help="split_folders photos (else generated ones)")
    parser.add_argument(
        "--workdir", help="keep generated data, caches and runs here (default: a temp folder)"
    )
    parser.add_argument("--json", help="also write every raw figure to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perf-") as temporary:
        work = Path(args.workdir or temporary)
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(work, Path(args.photos), args.quick)
        print(machine(bench.photos), flush=True)
        for section in args.sections:
            getattr(bench, f"section_{section}")()
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print("\n" + bench.table())
        if args.json:
            Path(args.json).write_text(json.dumps(bench.raw, indent=2, default=str))


class Bench:
    def __init__(self, work: Path, photos: Path, quick: bool) -> None:
        self.work, self.quick = work, quick
        self.photos = photos if photos.is_dir() else perf_data.generated_photo_set(work)
        self.cache_dir = str(work / "cache")
        self.big = 5_000 if quick else 25_000  # PetImages has 25,000 photos
        self.rows: list[tuple[str, str, str, str, str, bool]] = []
        self.raw: dict = {}
        self._photo_run: dict | None = None

    # ---- 1: train.py vs a bare loop ---------------------------------------------------------

    def section_1(self) -> None:
        heading("1. train.py (configs/mlp_article.yaml, logging on) vs a bare PyTorch loop, cache warm")
        run = self.photo_run()
        s = perf_train.summarise_paired(run)
        print(
            f"  {s['images']} training photos, batch {run['batch_size']}, {s['epochs']} epochs after a "
            "warm-up, each right after a bare-loop epoch on the same images"
        )
        print(f"  bare loop:           {s['raw_best']:8.0f} img/s (best epoch)")
        print(
            f"  train.py, training:  {s['train_best']:8.0f} img/s (best), ratio {s['train_ratio']:.1%} "
            f"(median of the paired epochs {s['train_ratio_median']:.1%})"
        )
        print(
            f"  train.py, full epoch:{s['full_best']:8.0f} img/s (best), ratio {s['full_ratio']:.1%} "
            f"(median {s['full_ratio_median']:.1%}; adds validation, checkpoints, snapshots)"
        )
        print(
            f"  bare loop + the same validation pass: {s['raw_with_val_best']:8.0f} img/s (best); "
            f"train.py's full epochs, ratio {s['full_vs_val_ratio']:.1%} "
            f"(median {s['full_vs_val_ratio_median']:.1%})"
        )
        print("  (ratios: all epochs' time over all epochs' time, the same epochs of both)")
        print(
            f"  saving checkpoints: {1e3 * s['checkpoint_seconds']:.0f} ms in these {s['epochs']} epochs, "
            f"{s['checkpoint_fraction']:.1%} of their time (best.ckpt and last.ckpt, held or written)"
        )
        for name, ratio, baseline in (
            ("1 train.py training epoch vs bare loop", "train_ratio", "raw_best"),
            ("1 train.py full epoch vs bare loop", "full_ratio", "raw_best"),
            ("1 train.py full epoch vs bare loop + validation", "full_vs_val_ratio", "raw_with_val_best"),
        ):
            best = "train_best" if ratio == "train_ratio" else "full_best"
            measured, reference = f"{s[best]:.0f} img/s", f"{s[baseline]:.0f} img/s"
            self.add(name, measured, reference, s[ratio], ">= 90%", s[ratio] >= 0.9)
        self.raw["1_photos"] = {"summary": s, "records": run["records"]}
        big_root = str(perf_data.synthetic_set(self.work, self.big))
        big = perf_train.real_run(
            big_root, self.cache_dir, str(self.work / "runs-big"), 2 if self.quick else 5
        )
        b = perf_train.summarise_paired(big)
        print(
            f"  {b['images']} training images (synthetic, PetImages-sized): "
            f"full epoch {b['full_best']:.0f} img/s, bare loop {b['raw_best']:.0f} img/s, "
            f"ratio {b['full_ratio']:.1%}"
            f" (median {b['full_ratio_median']:.1%}; training only {b['train_ratio']:.1%}; against the bare"
            f" loop plus the same validation pass {b['full_vs_val_ratio']:.1%})"
        )
        for name, ratio, baseline in (
            (f"1 full epoch, {b['images']} images", "full_ratio", "raw_best"),
            (
                f"1 full epoch, {b['images']} images, vs bare loop + validation",
                "full_vs_val_ratio",
                "raw_with_val_best",
            ),
        ):
            measured, reference = f"{b['full_best']:.0f} img/s", f"{b[baseline]:.0f} img/s"
            self.add(name, measured, reference, b[ratio], ">= 90%", b[ratio] >= 0.9)
        self.raw["1_big"] = {"summary": b, "records": big["records"]}

    # ---- 2: the bare loop vs the matmul peak -------------------------------------------------

    def section_2(self) -> None:
        heading("2. bare loop vs float32 torch.mm peak (2048x2048), training FLOPs = 6 x parameters x images")
        batch_sizes = [128, 512] if self.quick else [128, 256, 512]
        sweep = perf_train.batch_size_sweep(batch_sizes, 1024 if self.quick else 2048, 2 if self.quick else 4)
        peak = sweep["peak"]
        print(f"  peak {peak:.0f} GFLOP/s on {sweep['threads']} threads; {sweep['parameters']:,} parameters")
        for name, gflops in sweep["gflops"].items():
            print(f"  {name:28s} {gflops:6.0f} GFLOP/s = {gflops / peak:6.1%} of peak")
        for bs in batch_sizes:
            gflops = sweep["gflops"][f"bs {bs}"]
            self.add(
                f"2 bare loop GFLOP/s, batch {bs}",
                f"{gflops:.0f}",
                f"{peak:.0f} (mm peak)",
                gflops / peak,
                ">= 50%",
                gflops / peak >= PEAK_FRACTION_TARGET,
            )
        self.raw["2"] = sweep

    # ---- 3: cache build vs naive decoding ---------------------------------------------------

    def section_3(self) -> None:
        heading(
            f"3. cache build (draft JPEG decoding, {os.cpu_count()} processes) vs naive decoding, per image"
        )
        result = perf_data.cache_build_vs_naive(self.photos, self.work, 64, 600 if self.quick else None)
        ratio = result["cache"] / result["naive"]
        print(f"  {result['images']} photos from {self.photos}")
        print(f"  naive (PIL full decode, resize, crop; one process): {result['naive']:6.0f} img/s")
        print(
            f"  ensure_cache (incl. hashing, writing, fsync):       {result['cache']:6.0f} img/s"
            f"  = {ratio:.1f}x"
        )
        self.add(
            "3 cache build vs naive decode",
            f"{result['cache']:.0f} img/s",
            f"{result['naive']:.0f} img/s",
            ratio,
            ">= 3x",
            ratio >= 3,
            as_factor=True,
        )
        self.raw["3"] = result

    # ---- 4: nothing decoded once cached, data loading share ----------------------------------

    def section_4(self) -> None:
        heading("4. a run after the cache exists decodes nothing; data loading share of an epoch")
        result = perf_data.no_decode_after_cache(self.photos, Path(self.cache_dir))
        print(f"  first setup: {result['first']}; second setup: {result['second']}")
        second = result["second"]["decoded_by_spy"] + result["second"]["cache_info_decoded"]
        self.add(
            "4 images decoded by a second run",
            str(second),
            f"{result['images']} in the cache",
            None,
            "0",
            second == 0,
        )
        s = perf_train.summarise_paired(self.photo_run())
        print(
            f"  DataLoader __next__ (sampler, memmap read, collate): {s['fetch_fraction']:.2%} "
            "of the full epoch,"
            f" {s['fetch_fraction_of_training']:.2%} of its training part (median over epochs)"
        )
        self.add(
            "4 data loading share of an epoch",
            f"{s['fetch_fraction']:.2%}",
            "full epoch",
            None,
            "< 5%",
            s["fetch_fraction"] < 0.05,
        )
        self.raw["4"] = {**result, "fetch_fraction": s["fetch_fraction"]}

    # ---- 5: peak memory -------------------------------------------------------------------------

    def section_5(self) -> None:
        heading(f"5. peak RSS of a fresh process training 1 epoch on a {self.big:,}-image 64x64 cache")
        root = perf_data.synthetic_set(self.work, self.big)
        perf_data.no_decode_after_cache(root, Path(self.cache_dir))  # build the cache outside the measurement
        results = {}
        for workers in (0, 2):
            results[workers] = perf_data.peak_memory(
                root, Path(self.cache_dir), self.work / f"mem-{workers}", workers
            )
            r = results[workers]
            print(
                f"  num_workers={workers}: peak RSS {r['peak_rss_mib']:.0f} MiB (after imports "
                f"{r['after_imports_mib']:.0f} MiB; cache {r['cache_mib']:.0f} MiB, "
                f"memmap {r['cache_is_memmap']};"
                f" largest worker {r['workers_peak_rss_mib']:.0f} MiB)"
            )
        peak = results[0]["peak_rss_mib"]
        self.add(
            f"5 peak RSS, {self.big:,} images",
            f"{peak:.0f} MiB",
            f"{results[0]['cache_mib']:.0f} MiB cache",
            peak / 2048,
            "< 2 GB",
            peak < 2048,
        )
        self.raw["5"] = results

    # ---- 6: predict.py ---------------------------------------------------------------------------

    def section_6(self) -> None:
        heading("6. predict.py on 1,000 photos, and interpreter start + checkpoint load")
        ckpt = self.checkpoint()
        folders = [str(self.photos / "validation" / "cats"), str(self.photos / "validation" / "dogs")]
        repeats = 1 if self.quick else 2
        result = perf_predict.predict_folder(ckpt, folders, self.work / "predictions.csv", repeats)
        start = perf_predict.startup(ckpt, 2 if self.quick else 3)
        print(
            f"  predict.py: {result['images']} photos in {result['seconds']:.2f} s = "
            f"{result['images_per_s']:.0f} img/s end to end "
            f"({result['after_startup_images_per_s']:.0f} img/s "
            "after start-up)"
        )
        print(
            f"  start + load: {start['load']:.2f} s; "
            f"`python -c 'import torch'` {start['import_torch']:.2f} s; "
            f"a Lightning-free load {start['torch_only_load']:.2f} s"
        )
        self.add(
            "6 predict.py, 1,000 photos",
            f"{result['images_per_s']:.0f} img/s",
            "300 img/s target",
            result["images_per_s"] / 300,
            ">= 300 img/s",
            result["images_per_s"] >= 300,
        )
        self.add(
            "6 start + checkpoint load",
            f"{start['load']:.2f} s",
            f"{start['import_torch']:.2f} s import torch",
            start["load"] / start["import_torch"],
            "< 3 s",
            start["load"] < 3,
        )
        self.raw["6"] = {**result, **start}

    # ---- 7: scaling -----------------------------------------------------------------------------

    def section_7(self) -> None:
        sizes = [1_000, 2_000, 5_000] if self.quick else [1_000, 5_000, 25_000]
        heading(f"7. training epoch time vs images ({', '.join(map(str, sizes))}) and hidden width")
        roots = {str(n): str(perf_data.synthetic_set(self.work, n)) for n in sizes}
        rows = perf_train.scaling(
            roots, self.cache_dir, self.work, 2 if self.quick else 3, WIDTHS, width_root=str(sizes[1])
        )
        print("  | training images | hidden dims | parameters | training epoch (s) | us / image |")
        print("  |---|---|---|---|---|")
        for row in rows:
            print(
                f"  | {row['images']:,} | {row['hidden_dims']} ({row['width']}) | {row['parameters']:,} | "
                f"{row['train_s']:.2f} | {row['us_per_image']:.0f} |"
            )
        by_size = [row for row in rows if row["width"] == "x1"]
        spread = max(r["us_per_image"] for r in by_size) / min(r["us_per_image"] for r in by_size)
        self.add(
            "7 time per image, smallest vs largest set",
            f"{by_size[-1]['us_per_image']:.0f} us",
            f"{by_size[0]['us_per_image']:.0f} us",
            spread,
            "~1 (linear)",
            spread < 1.5,
            as_factor=True,
        )
        self.raw["7"] = rows

    # ---- shared pieces ---------------------------------------------------------------------------

    def photo_run(self) -> dict:
        """One real training run on the photos, shared by sections 1, 4 and 6."""
        if self._photo_run is None:
            self._photo_run = perf_train.real_run(
                str(self.photos), self.cache_dir, str(self.work / "runs"), 4 if self.quick else 11
            )
        return self._photo_run

    def checkpoint(self) -> str:
        if self._photo_run is None:  # a short run is enough: prediction speed does not depend on the weights
            self._photo_run = perf_train.real_run(
                str(self.photos), self.cache_dir, str(self.work / "runs"), 2, with_raw=False
            )
        return self._photo_run["best_checkpoint"]

    def add(
        self,
        figure: str,
        measured: str,
        baseline: str,
        ratio: float | None,
        target: str,
        met: bool,
        as_factor: bool = False,
    ) -> None:
        shown = "" if ratio is None else (f"{ratio:.1f}x" if as_factor else f"{ratio:.0%}")
        self.rows.append((figure, measured, baseline, shown, target, met))

    def table(self) -> str:
        lines = ["| figure | measured | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {f} | {m} | {b} | {r} | {t} | {'yes' if ok else 'NO'} |" for f, m, b, r, t, ok in self.rows
        ]
        return "\n".join(lines)


def heading(text: str) -> None:
    print(f"\n{text}", flush=True)


def machine(photos: Path) -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        models = {line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")}
        cpu = ", ".join(sorted(models)) or cpu
    except OSError:
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}; photos: {photos}"
    )


if __name__ == "__main__":
    main()
