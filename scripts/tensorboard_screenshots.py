"""Screenshots of TensorBoard for the README, taken from a real run with headless Chromium.

Starts `tensorboard --logdir LOGDIR --host 127.0.0.1` on a free port, opens each view in
Debian's headless Chromium and saves one PNG per view into OUT:

    python train.py --config configs/mlp_article.yaml --data.root DIR --trainer.max_epochs 16
    python scripts/tensorboard_screenshots.py --logdir runs --out docs/images

Chromium is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`,
standard library only) rather than with `--screenshot`, which can only wait a fixed time and
cannot click: TensorBoard is a JavaScript app that fetches its data after the page has
loaded, so each screenshot is taken once the network has been quiet for a while, and the
templates view needs a click ("Show actual image size") so that the 64x64 templates are not
shrunk and cropped.
"""

import argparse
import base64
import fcntl
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from headless_chromium import OFFLINE_HEADLESS_FLAGS  # scripts/, this file's folder
from PIL import Image

WINDOW = (1400, 1000)  # wide enough for TensorBoard's sidebar and two columns of cards
COLORS = 128  # a palette PNG: the UI has few colours, and the noisy templates stay under 300 KB
QUIET_SECONDS = 2.0  # the network has been idle this long: TensorBoard has drawn what it fetched
CLICK_ACTUAL_SIZE = """
(() => {
  const boxes = [];
  const walk = (root) => root.querySelectorAll("*").forEach((element) => {
    if (element.tagName === "PAPER-CHECKBOX") boxes.push(element);
    if (element.shadowRoot) walk(element.shadowRoot);
  });
  walk(document);
  const box = boxes.find((b) => b.textContent.includes("actual image size"));
  if (box && !box.checked) box.click();
  return Boolean(box);
})()
"""


@dataclass
class View:
    """One screenshot: a TensorBoard tab, a regex over tag names, an optional click, and how
    much of the page's top to keep (below the matching cards TensorBoard repeats every tag)."""

    name: str
    tab: str
    tag_filter: str = ""
    javascript: str = ""
    height: int = WINDOW[1]


VIEWS = [
    View("scalars", "scalars", r"^(train|val)/(loss_epoch|loss|acc)$", height=760),
    View("histograms", "histograms", r"^layer1/(W|Z|A)$", height=710),
    View("templates", "images", r"^layer1/templates$", CLICK_ACTUAL_SIZE, height=840),
    View("pr_curves", "pr_curves"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_tensorboard(base_url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until TensorBoard answers and has read scalars, histograms and images from the logdir."""
    deadline = time.monotonic() + timeout
    plugins = ("scalars", "histograms", "images")
    while time.monotonic() < deadline:
        if server.poll() is not None:
            last_lines = log.read_text(errors="replace").strip().splitlines()[-3:]
            sys.exit(f"error: tensorboard exited with status {server.returncode}: {' '.join(last_lines)}")
        try:
            tags = [
                json.load(urllib.request.urlopen(f"{base_url}/data/plugin/{plugin}/tags", timeout=5))
                for plugin in plugins
            ]
            if all(any(run_tags for run_tags in plugin_tags.values()) for plugin_tags in tags):
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    sys.exit(f"error: tensorboard at {base_url} showed no scalars, histograms and images in {timeout:.0f} s")


class Chromium:
    """Headless Chromium spoken to in the DevTools protocol: JSON messages ending in NUL, on fds 3/4."""

    def __init__(self, executable: str, profile: str) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def as_fds_3_and_4() -> None:  # in the child: Chromium reads commands on 3, writes on 4
            read_fd = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)  # above 4, so dup2 clobbers nothing
            write_fd = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_fd, 3)
            os.dup2(write_fd, 4)

        flags = [
            *OFFLINE_HEADLESS_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--remote-debugging-pipe",
        ]
        self._process = subprocess.Popen(
            [executable, *flags, "about:blank"],
            preexec_fn=as_fds_3_and_4,
            close_fds=False,  # os.pipe() fds are close-on-exec anyway; 3 and 4 are not
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # D-Bus and GPU complaints of a container without either
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self._inflight: set[str] = set()
        self._last_network = time.monotonic()

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(timeout=60)
            if reply is None:
                raise TimeoutError(f"chromium did not answer {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_until_quiet(self, minimum: float, timeout: float) -> None:
        """Until no request has been in flight for QUIET_SECONDS (and at least `minimum` seconds)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self._receive(timeout=0.2)
            quiet = time.monotonic() - self._last_network
            if not self._inflight and quiet >= QUIET_SECONDS and time.monotonic() - start >= minimum:
                return
        print(f"warning: still loading after {timeout:.0f} s; taking the screenshot anyway", file=sys.stderr)

    def _receive(self, timeout: float) -> dict | None:
        """One message, or None after `timeout` seconds; network events update the in-flight set."""
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        method = message.get("method", "")
        if method == "Network.requestWillBeSent":
            self._inflight.add(message["params"]["requestId"])
            self._last_network = time.monotonic()
        elif method in ("Network.loadingFinished", "Network.loadingFailed"):
            self._inflight.discard(message["params"]["requestId"])
            self._last_network = time.monotonic()
        return message


def screenshot(browser: Chromium, url: str, view: View, path: Path) -> None:
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    width, height = WINDOW
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        session,
    )
    browser.send("Network.enable", {}, session)
    browser.send("Page.navigate", {"url": url}, session)
    browser.wait_until_quiet(minimum=3, timeout=60)
    if view.javascript:
        result = browser.send("Runtime.evaluate", {"expression": view.javascript}, session)
        if not result["result"].get("value"):
            print(f"warning: {view.name}: the page had nothing to click", file=sys.stderr)
        browser.wait_until_quiet(minimum=1, timeout=30)
    time.sleep(0.5)  # charts draw on the next animation frames after their data arrives
    clip = {"x": 0, "y": 0, "width": width, "height": view.height, "scale": 1}
    png = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip}, session)["data"]
    image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
    image.quantize(COLORS, dither=Image.Dither.NONE).save(path, optimize=True)
    browser.send("Target.closeTarget", {"targetId": target})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logdir", type=Path, default=Path("runs"), help="what `tensorboard --logdir` gets")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder for tensorboard_*.png")
    parser.add_argument("--port", type=int, default=0, help="TensorBoard's port; 0: a free one")
    parser.add_argument(
        "--chromium", default="chromium", help="the browser (Debian: apt-get install chromium)"
    )
    args = parser.parse_args()

    chromium = shutil.which(args.chromium)
    if chromium is None:
        sys.exit(f"error: {args.chromium!r} not found; install Debian's browser: apt-get install chromium")
    tensorboard = shutil.which(
        "tensorboard", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if tensorboard is None:
        sys.exit("error: tensorboard not found; pip install tensorboard")
    if not args.logdir.is_dir():
        sys.exit(f"error: no such logdir {args.logdir}")
    args.out.mkdir(parents=True, exist_ok=True)

    port = args.port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    scratch = tempfile.TemporaryDirectory()  # Chromium's throwaway profile and TensorBoard's log
    log = Path(scratch.name) / "tensorboard.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [tensorboard, "--logdir", str(args.logdir), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_tensorboard(base_url, server, log, timeout=120)
        browser = Chromium(chromium, str(Path(scratch.name) / "chromium"))
        try:
            for view in VIEWS:
                fragment = view.tab + (
                    f"&tagFilter={quote(view.tag_filter, safe='')}" if view.tag_filter else ""
                )
                path = args.out / f"tensorboard_{view.name}.png"
                screenshot(browser, f"{base_url}/?darkMode=false#{fragment}", view, path)
                print(f"{path}  ({path.stat().st_size // 1024} KB)  {view.tab} {view.tag_filter}")
        finally:
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        scratch.cleanup()


if __name__ == "__main__":
    main()
