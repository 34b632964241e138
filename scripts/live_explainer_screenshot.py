"""Screenshot the live page (explain.py --serve) in headless Chromium, as a user sees it.

    python scripts/live_explainer_screenshot.py --ckpt best.ckpt --photo cat.jpg \
        --samples data/cats_and_dogs_filtered/validation --out docs/images/live_explainer.png

Starts the real server, uploads the photo through the page's file input, opens the panel
of the first layer's strongest unit and switches that unit off, then saves the window.
The same browser and driver as tests/test_explain_browser.py (tests/browser.py).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from explain_screenshot import shrink_png  # noqa: E402  (scripts/, this file's folder)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.browser import chromium, live_page  # noqa: E402

WAIT_S = 120


def drawn_after(driver, count: int) -> None:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: int(d.find_element(By.ID, "p-cat").get_attribute("data-updates")) > count
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="checkpoint written by train.py")
    source.add_argument("--pretrained", help="a shipped model's name")
    parser.add_argument("--photo", required=True, type=Path, help="the photo to upload")
    parser.add_argument("--samples", type=Path, help="sample photos for the page")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)

    model_args = ["--ckpt", args.ckpt] if args.ckpt else ["--pretrained", args.pretrained]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with live_page(*model_args, samples=args.samples) as url, chromium(args.width, args.height) as driver:
        driver.get(url)
        if args.samples is not None:
            drawn_after(driver, 0)
        count = int(driver.find_element(By.ID, "p-cat").get_attribute("data-updates"))
        driver.find_element(By.ID, "file").send_keys(str(args.photo.resolve()))
        drawn_after(driver, count)
        first_layer = driver.find_element(By.CSS_SELECTOR, "section.layer")
        first_layer.find_element(By.CSS_SELECTOR, "button.unit-button").click()
        switch = WebDriverWait(driver, WAIT_S).until(
            expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "section.layer button.switch"))
        )
        count = int(driver.find_element(By.ID, "p-cat").get_attribute("data-updates"))
        switch.click()
        drawn_after(driver, count)
        driver.save_screenshot(str(args.out))
    shrink_png(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
