"""Explain why a trained network calls a photo cat or dog, layer by layer: Z = W x + b, A = g(Z).

    python explain.py --ckpt runs/mlp_article/version_0/checkpoints/best.ckpt photo.jpg

Prints every layer's formula with its shapes, statistics of Z, how many units are
active and which were strongest, then z, p_cat = sigmoid(z) and the decision.
`--json` prints the same as JSON; `--html FILE` writes a self-contained page.
"""

import argparse
import json
import sys
from pathlib import Path

from datasets import UnreadableImage
from explanation import explain_file, render_html, render_text
from models.checkpoint import CheckpointError, load_classifier


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", help="the image file to explain")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py (.ckpt)")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page to FILE")
    parser.add_argument("--top", type=int, default=5, help="strongest units to list per layer (default 5)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="p_cat at or above which the photo is a cat (default: the checkpoint's, usually 0.5)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        classifier = load_classifier(args.ckpt)
        threshold = args.threshold if args.threshold is not None else float(classifier.hparams.threshold)
        explanation, image = explain_file(classifier, args.photo, threshold, top=max(1, args.top))
    except CheckpointError as error:
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
            Path(args.html).write_text(render_html(explanation, image, classifier), encoding="utf-8")
        except OSError as error:
            print(f"error: cannot write '{args.html}': {error.strerror or error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
