"""Predict cat or dog for photo files and folders with a trained checkpoint or an exported model.

    python predict.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt photo.jpg photos/
    python predict.py --ckpt model.onnx photos/      # or model.pt / model.safetensors from export.py
    python predict.py --pretrained mlp_article photos/   # the weights that ship in weights/

Prints CSV (`path,p_cat,label`) or JSON; `label` is cat when p_cat >= --threshold.
Unreadable files are reported on stderr and get no row; the exit status is non-zero
only when nothing could be predicted.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from datasets import DataError
from inference import CatsDogsPredictor, ModelFileError
from inference.command_line import (
    ArgumentParser,
    add_model_source,
    load_model_source,
    output_file,
    probability,
    run_cli,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="photo files and/or folders (searched recursively)")
    add_model_source(
        parser, "checkpoint written by train.py (.ckpt), or a file from export.py (.onnx, .pt, .safetensors)"
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="p_cat at or above which a photo is labelled cat, in [0, 1] (default: the model's, usually 0.5)",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    parser.add_argument("--output", type=Path, help="write predictions to this file instead of stdout")
    parser.add_argument("--batch-size", type=int, default=256, help="photos per forward pass")
    parser.add_argument(
        "--workers", type=int, default=0, help="decoding processes (default: one per CPU core)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = load_model_source(args)
        predictor = CatsDogsPredictor(
            model, threshold=args.threshold, batch_size=args.batch_size, workers=args.workers
        )
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    existing = []
    for path in args.paths:
        if Path(path).exists():
            existing.append(path)
        else:
            print(f"skipped {path}: no such file or folder", file=sys.stderr)
    rows, predicted = [], 0  # rows are kept only for JSON, which is written as one list
    with output_file(args.output) as out:
        writer = csv.writer(out, lineterminator="\n")
        if args.format == "csv":
            writer.writerow(["path", "p_cat", "label"])
        try:
            for prediction in predictor.predict_files(existing):
                if prediction.error is not None:
                    print(f"skipped {prediction.path}: {prediction.error}", file=sys.stderr)
                    continue
                predicted += 1
                if args.format == "json":
                    rows.append(
                        {"path": prediction.path, "p_cat": prediction.p_cat, "label": prediction.label}
                    )
                else:
                    writer.writerow([prediction.path, f"{prediction.p_cat:.6f}", prediction.label])
                    out.flush()  # rows appear as they are predicted
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
        if args.format == "json":
            json.dump(rows, out, indent=2)
            out.write("\n")
    if not predicted:
        print("error: no photo could be predicted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
