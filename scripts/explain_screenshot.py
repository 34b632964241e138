"""Render explain.py's HTML page for a photo and screenshot it with headless Chromium.

    python scripts/explain_screenshot.py --ckpt best.ckpt --photo cat.jpg --out docs/images/explain_page.png

Proves the page renders in a real browser with nothing fetched from the network (the
flags below turn off every background connection), and makes the README's picture.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from headless_chromium import OFFLINE_HEADLESS_FLAGS  # noqa: E402  (scripts/, this file's folder)
from PIL import Image  # noqa: E402

from explanation import explain_file  # noqa: E402
from explanation.static_page import render_page  # noqa: E402
from inference import load_model  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def screenshot(html_file: Path, out: Path, width: int, height: int, chromium: str = CHROMIUM) -> None:
    """Headless Chromium -> PNG of the page's first width x height pixels."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            *OFFLINE_HEADLESS_FLAGS,
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out.resolve()}",
            html_file.resolve().as_uri(),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not out.is_file():
        raise RuntimeError(f"{chromium} exited without writing {out}")


def shrink_png(path: Path) -> None:
    """256-colour palette PNG: a page is mostly flat colour, so this is about 3x smaller
    and looks the same (the photo and the templates lose a little colour depth)."""
    with Image.open(path) as screenshot:
        palette = screenshot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=0)
    palette.save(path, format="PNG", optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    parser.add_argument("--photo", required=True, help="the photo to explain")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--chromium", default=CHROMIUM, help="the browser binary")
    parser.add_argument("--full-colour", action="store_true", help="keep the 24-bit PNG (about 3x larger)")
    args = parser.parse_args(argv)

    model = load_model(args.ckpt)
    explanation, image = explain_file(model, args.photo, model.threshold)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "explain.html"
        page.write_text(
            render_page(model, image, model.threshold, explanation.input.original_size), encoding="utf-8"
        )
        screenshot(page, args.out, args.width, args.height, args.chromium)
    if not args.full_colour:
        shrink_png(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
