"""Headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, and the real
`explain.py --serve` for it to open: shared by the browser test and the README screenshot.

.ci/run installs both packages when they are missing, so under CI a missing browser is a
failure; elsewhere the test skips and says what to install.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.headless_chromium import OFFLINE_HEADLESS_FLAGS

REPO = Path(__file__).resolve().parents[1]
INSTALL = "apt-get install -y chromium chromium-driver"
# Chromium's own flags for screenshots (headless, no background connections), plus one for
# containers, which often give /dev/shm only 64 MB.
BROWSER_FLAGS = [*OFFLINE_HEADLESS_FLAGS, "--disable-dev-shm-usage"]


def browser_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None when either is not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def require_browser() -> None:
    """Skip the calling test when Chromium is missing; under CI, where .ci/run installs it, fail."""
    import pytest

    if browser_paths() is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but Chromium is missing: {INSTALL}")
        pytest.skip(f"needs headless Chromium and its driver: {INSTALL}")


@contextmanager
def chromium(width: int = 1280, height: int = 1400) -> Iterator[object]:
    """A Selenium WebDriver for headless Chromium; raises RuntimeError when it is not installed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError(f"headless Chromium is not installed: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in [*BROWSER_FLAGS, f"--window-size={width},{height}"]:
        options.add_argument(flag)
    # Both paths are given, so Selenium Manager never tries to download a browser or driver.
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def live_page(*model_args: str, samples: Path | None = None, cwd: Path | None = None) -> Iterator[str]:
    """`python explain.py --serve MODEL_ARGS --port 0`, as a user starts it; yields its URL."""
    command = [sys.executable, str(REPO / "explain.py"), "--serve", *model_args, "--port", "0"]
    if samples is not None:
        command += ["--samples", str(samples)]
    process = subprocess.Popen(
        command, cwd=cwd or REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()  # "serving the live page on http://127.0.0.1:PORT/ (...)"
        if "http://" not in line:
            process.kill()
            raise RuntimeError(f"explain.py --serve did not start: {process.stderr.read()[-2000:]}")
        yield line.split("on ", 1)[1].split(" ", 1)[0]
    finally:
        process.terminate()
        process.wait(timeout=30)
