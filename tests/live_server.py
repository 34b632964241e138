"""The live page's app on a real socket in a background thread, and a plain HTTP client for it.

A real server (uvicorn, as explain.py --serve runs it) rather than an in-process test
client, so what is tested is what a browser gets: headers, size limits, routing.
"""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette


@contextmanager
def running(app: Starlette) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port; yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def fetch(url: str, body: bytes | dict | None = None, headers: dict | None = None) -> tuple[int, object]:
    """GET, or POST `body` (a dict goes as JSON): (status, parsed JSON or the raw bytes)."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(
        url, data=body, headers=headers, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, content, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        status, content, kind = error.code, error.read(), error.headers.get("content-type", "")
    return status, json.loads(content) if kind.startswith("application/json") else content


def post_photo(base: str, data: bytes) -> str:
    status, answer = fetch(f"{base}/api/photos", data, {"Content-Type": "application/octet-stream"})
    assert status == 200, answer
    return answer["photo"]
