"""Export a trained checkpoint as a deployable model that maps uint8 images straight to p_cat.

    python export.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt --format onnx
    python export.py --ckpt best.ckpt --format torchscript --output model.pt
    python export.py --ckpt best.ckpt --format safetensors --output model.safetensors

The file holds the input normalisation, the network and the sigmoid, plus the image size
and threshold as metadata; `python predict.py --ckpt FILE photos/` runs it without Lightning.
"""

import argparse
import sys

from deploy.exported_model import ExportError, load_exported
from deploy.exporters import FORMATS, export_model
from models.checkpoint import CheckpointError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (.ckpt)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="file format of the export")
    parser.add_argument(
        "--output",
        help="file to write (default: beside the checkpoint, with .onnx, .pt or .safetensors)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = export_model(args.ckpt, args.format, args.output)
        exported = load_exported(path)  # read back, so a file that would not load is never reported done
    except (CheckpointError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    facts = f"{exported.format}, image_size {exported.image_size}, threshold {exported.threshold}"
    print(f"wrote {path} ({facts})")
    print(f"predict: python predict.py --ckpt {path} PHOTO_OR_FOLDER")
    return 0


if __name__ == "__main__":
    sys.exit(main())
