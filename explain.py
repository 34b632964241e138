"""Explain why a trained network calls a photo cat or dog, layer by layer: Z = W x + b, A = g(Z).

    python explain.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt photo.jpg
    python explain.py --pretrained mlp_article photo.jpg    # the weights that ship in weights/

Prints every layer's formula with its shapes, statistics of Z, how many units are active
and which were strongest, then z, p_cat = sigmoid(z) and the decision. `--json` prints
the same as JSON; `--html FILE` writes the live page with this photo's numbers in it, one
file that opens offline. `--serve` serves the live page instead, on http://127.0.0.1:8000/:
drop in any photo, click a unit, switch units off.
"""

import argparse
import json
import sys
from pathlib import Path

from datasets import UnreadableImage
from explanation import explain_file, render_text
from explanation.static_page import render_page
from inference import ModelFileError
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
    parser.add_argument("photo", nargs="?", help="the photo to explain (none with --serve)")
    add_model_source(parser, "checkpoint written by train.py (.ckpt), or a .safetensors export")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="also write the live page with this photo in it to FILE (opens offline)",
    )
    parser.add_argument("--top", type=int, default=5, help="strongest units to list per layer (default 5)")
    parser.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="p_cat at or above which the photo is a cat (default: the model's)",
    )
    live = parser.add_argument_group("the live page (explanation/server.py)")
    live.add_argument("--serve", action="store_true", help="serve an interactive page instead of one photo")
    live.add_argument(
        "--host", help="address to listen on (default 127.0.0.1: this machine only; others get a warning)"
    )
    live.add_argument("--port", type=int, help="port to listen on (default 8000; 0: any free port)")
    live.add_argument("--samples", metavar="DIR", help="sample photos for the page, e.g. a validation folder")
    args = parser.parse_args(argv)
    if args.serve == (args.photo is not None):
        parser.error("pass the photo to explain, or --serve for the live page")
    if not args.serve and (args.host, args.port, args.samples) != (None, None, None):
        parser.error("--host, --port and --samples go with --serve")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = load_model_source(args, needs_layers="explain")
        threshold = model.threshold if args.threshold is None else args.threshold
        if args.serve:
            from explanation.server import run_live_page  # starlette and uvicorn only when serving

            return run_live_page(model, threshold, args.host, args.port, args.samples)
        explanation, image = explain_file(model, args.photo, threshold, top=max(1, args.top))
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UnreadableImage as error:
        print(f"error: cannot read '{args.photo}': {error}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(explanation.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(explanation))
    if args.html:
        try:
            with output_file(args.html) as page:
                page.write(render_page(model, image, threshold, explanation.input.original_size))
        except OSError as error:
            print(f"error: cannot write '{args.html}': {error.strerror or error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
