"""Export a trained checkpoint as one file that maps uint8 photos straight to p_cat.

    python export.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt --format onnx
    python export.py --ckpt best.ckpt --format torchscript --output model.pt
    python export.py --ckpt best.ckpt --format safetensors --output model.safetensors

The file holds the input normalisation, the network and the sigmoid, with the image size and
threshold as metadata; `python predict.py --ckpt FILE photos/` runs it without Lightning.
"""

import argparse
import sys
from pathlib import Path

from inference import ModelFileError, PCatModel, load_model
from inference.command_line import ArgumentParser, run_cli
from inference.export import FORMATS, export_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (.ckpt)")
    parser.add_argument("--format", choices=FORMATS, required=True, help="file format of the export")
    parser.add_argument(
        "--output",
        type=Path,
        help="file to write (default: beside the checkpoint, .onnx, .pt or .safetensors)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or Path(args.ckpt).with_suffix(FORMATS[args.format])
    try:
        model = load_model(args.ckpt)
        if not isinstance(model, PCatModel):
            raise ModelFileError(
                f"'{args.ckpt}' is already an export ({model.kind}); export the checkpoint it came from"
            )
        if output.exists() and output.samefile(args.ckpt):  # e.g. a checkpoint named model.pt
            raise ModelFileError(
                f"the export would overwrite '{args.ckpt}' itself; pass --output with another file name"
            )
        export_model(model, args.format, output)
        exported = load_model(output)  # read back: a file that would not load is never reported done
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: '{error.filename or output}': {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({args.format}, image_size {exported.image_size}, threshold {exported.threshold})")
    print(f"predict: python predict.py --ckpt {output} PHOTO_OR_FOLDER")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
