"""Predict cat or dog for image files and folders with a trained checkpoint or an exported model.

    python predict.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt photo.jpg photos/
    python predict.py --ckpt model.onnx photos/      # or model.pt / model.safetensors from export.py

Prints CSV (`path,p_cat,label`) or JSON; `label` is cat when p_cat >= --threshold.
Unreadable files are reported on stderr and get no row; the exit status is non-zero
only when nothing could be predicted.
"""

import argparse
import csv
import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TextIO

from datasets import DataError
from deploy import ExportError
from inference import CatsDogsPredictor, Prediction
from models.checkpoint import CheckpointError  # plain torch: no Lightning


class UnusableModel(Exception):
    """The --ckpt file cannot be used: a CheckpointError or an ExportError, with its one-line message."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="image files and/or folders (searched recursively)")
    parser.add_argument(
        "--ckpt",
        required=True,
        help="checkpoint written by train.py (.ckpt), or a model written by export.py "
        "(.onnx, .pt, .safetensors: runs without Lightning)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="p_cat at or above which an image is labelled cat "
        "(default: the model's model.threshold, 0.5 unless training changed it)",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    parser.add_argument("--output", help="write predictions to this file instead of stdout")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--workers", type=int, default=0, help="decoding processes (default: one per CPU core)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        predictor = load_predictor(args)
    except UnusableModel as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    existing = []
    for path in args.paths:
        if Path(path).exists():
            existing.append(path)
        else:
            report_skipped(path, "no such file or folder")

    count = 0
    with open(args.output, "w", newline="") if args.output else nullcontext(sys.stdout) as out:
        write = csv_writer(out) if args.format == "csv" else json_writer(out)
        try:
            for prediction in predictor.predict_files(existing, on_error=report_skipped):
                write(prediction)
                count += 1
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
        finally:
            write(None)
    if count == 0:
        print("error: no image could be predicted", file=sys.stderr)
        return 1
    return 0


def load_predictor(args: argparse.Namespace) -> CatsDogsPredictor:
    options = {"threshold": args.threshold, "batch_size": args.batch_size, "workers": args.workers}
    try:
        return CatsDogsPredictor.from_file(args.ckpt, **options)
    except (ExportError, CheckpointError) as error:
        raise UnusableModel(error) from None


def report_skipped(path: str, reason: str) -> None:
    print(f"skipped {path}: {reason}", file=sys.stderr)


def csv_writer(out: TextIO):
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "p_cat", "label"])

    def write(prediction: Prediction | None) -> None:
        if prediction is not None:
            writer.writerow([prediction.path, f"{prediction.p_cat:.6f}", prediction.label])
            out.flush()

    return write


def json_writer(out: TextIO):
    rows: list[dict] = []

    def write(prediction: Prediction | None) -> None:
        if prediction is None:  # end of stream: a JSON list is written whole
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            rows.append({"path": prediction.path, "p_cat": prediction.p_cat, "label": prediction.label})

    return write


if __name__ == "__main__":
    sys.exit(main())
