"""Export a trained checkpoint as one file that maps uint8 photos straight to p_cat, or as a Hub folder.

    python export.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt --format onnx
    python export.py --ckpt best.ckpt --format torchscript --output model.pt
    python export.py --ckpt best.ckpt --format safetensors --output model.safetensors
    python export.py --ckpt best.ckpt --format hub --output my_model    # save_pretrained's folder
    python export.py --pretrained mlp_article --format onnx             # shipped weights, as mlp_article.onnx

The file holds the input normalisation, the network and the sigmoid, with the image size and
threshold as metadata; `python predict.py --ckpt FILE photos/` runs it without Lightning.
`--format hub` writes a Hugging Face Hub folder (config.json, model.safetensors, README.md):
`python predict.py --pretrained my_model photos/` reads it, huggingface_hub can push it.
"""

import argparse
import sys
from pathlib import Path

from inference import ModelFileError, load_model
from inference.command_line import ArgumentParser, add_model_source, load_model_source, run_cli
from inference.export import FORMATS, export_model

HUB = "hub"  # a folder, not one file: written by inference.hub.save_pretrained


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_source(parser, "checkpoint written by train.py (.ckpt)")
    parser.add_argument(
        "--format",
        choices=[*FORMATS, HUB],
        required=True,
        help="file format of the export; hub: a Hugging Face Hub folder (config.json, model.safetensors, "
        "README.md)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="file (hub: new folder) to write (default: beside the checkpoint, .onnx, .pt, .safetensors or a "
        "folder named after it; with --pretrained, NAME.onnx ... in the current folder)",
    )
    return parser.parse_args(argv)


def default_output(args: argparse.Namespace) -> Path:
    source = Path(args.ckpt) if args.ckpt is not None else Path(Path(args.pretrained).name)
    return source.with_suffix("" if args.format == HUB else FORMATS[args.format])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = args.output or default_output(args)
    try:
        model = load_model_source(args, needs_layers="export")
        if args.ckpt is not None and output.exists() and output.samefile(args.ckpt):  # a checkpoint model.pt
            raise ModelFileError(
                f"the export would overwrite '{args.ckpt}' itself; pass --output with another file name"
            )
        if args.format == HUB:
            from inference.hub import save_pretrained  # huggingface_hub: only this format needs it

            save_pretrained(model, output)
        else:
            export_model(model, args.format, output)
        exported = load_model(output)  # read back: what would not load is never reported done
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: '{error.filename or output}': {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {output} ({args.format}, image_size {exported.image_size}, threshold {exported.threshold})")
    option = "--pretrained" if args.format == HUB else "--ckpt"
    print(f"predict: python predict.py {option} {output} PHOTO_OR_FOLDER")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
