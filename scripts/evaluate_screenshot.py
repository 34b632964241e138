"""Screenshot the page of most confident mistakes that evaluate.py --report writes, in headless Chromium.

    python scripts/evaluate_screenshot.py --pretrained quick --folder ../shared/data/dogs-vs-cats \
        --out docs/images/evaluate_report.png

The same browser and flags as scripts/explain_screenshot.py, which makes the README's other picture.
"""

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from explain_screenshot import screenshot, shrink_png  # noqa: E402  (scripts/, this file's folder)

import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", required=True, help="a shipped model's name")
    parser.add_argument("--folder", required=True, help="labelled photos, as evaluate.py takes them")
    parser.add_argument("--top", type=int, default=9, help="mistakes on the page: three rows")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=645)  # three rows of mistakes
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        report = ["--pretrained", args.pretrained, args.folder, "--report", folder, "--top", str(args.top)]
        with contextlib.redirect_stdout(sys.stderr):  # its summary, not this script's output
            failed = evaluate.main(report)
        if failed:
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(Path(folder) / "index.html", args.out, args.width, args.height)
    shrink_png(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
