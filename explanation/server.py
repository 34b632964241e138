"""The live page: a small Starlette app that walks the user's photo through the network.

    python explain.py --serve --ckpt best.ckpt [--samples photos/] [--port 8000] [--host H]

Routes (all JSON errors are {"error": "one line"}):
    GET  /                  the page (explanation/page/index.html)
    GET  /assets/NAME       its script and style, read into memory at start-up
    GET  /api/model         the network's layers, threshold and sample photos
    POST /api/photos        a photo file as the raw application/octet-stream body -> {"photo": id}
    POST /api/explain       {"photo": id, "ablation": {...}} -> every layer's Z and A, z, p_cat
    POST /api/unit          {"photo": id, "ablation": {...}, "layer": name, "unit": j} -> its terms

Security, for a server that only its own user should reach: it binds 127.0.0.1 and accepts
only loopback Host headers unless told otherwise (a web page elsewhere cannot reach it by
DNS rebinding); a POST from another origin is refused, and each POST must declare its
route's content type (JSON, or octet-stream for a photo: neither is one a page elsewhere
may send without asking this server first, which it never allows); every body is checked
against its route's declared shape before use (explanation/request_checks.py); no request
names a file: the assets are a fixed set read at start-up, photos are ids of uploads kept
in memory, and the model is the one loaded on the command line; uploads are capped in size
and decoded by datasets/decode.py, like every photo. Every response carries the headers
below, errors included.
"""

import secrets
import socket
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import TextIO

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from datasets import decode_image
from datasets.errors import DataError, UnreadableImage
from explanation.ablation import Ablation, AblationError
from explanation.live import Samples, UnitError, explanation_data, model_data, unit_data
from explanation.request_checks import (
    EXPLAIN_BODY,
    SAFE_METHODS,
    UNIT_BODY,
    Fields,
    RequestError,
    check_content_type,
    check_origin,
    read_body,
    read_json,
)
from explanation.walk import original_size
from models import PCatModel

PAGE = Path(__file__).with_name("page")
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css"}
MAX_UPLOAD_BYTES = 16 * 2**20  # a 24-megapixel JPEG is ~10 MB; anything larger is not a photo to explain
DEFAULT_PORT = 8000
KEPT_UPLOADS = 32  # photos kept in memory (uint8 S x S each), the oldest forgotten first
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
SECURITY_HEADERS = {
    # Scripts and styles only from this server; images are data: URIs made here.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class LiveExplainer:
    """The state behind the page: the loaded model (never changed), sample photos, uploads."""

    def __init__(
        self,
        model: PCatModel,
        threshold: float | None = None,
        samples: Samples | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.model = model.eval()
        self.threshold = model.threshold if threshold is None else threshold
        self.samples = samples
        self.max_upload_bytes = max_upload_bytes
        self.uploads: OrderedDict[str, tuple[torch.Tensor, list[int] | None, str]] = OrderedDict()
        # Every asset the page has, by name; a request can name nothing else.
        self.assets = {
            path.name: (path.read_bytes(), ASSET_TYPES[path.suffix])
            for path in sorted(PAGE.iterdir())
            if path.suffix in ASSET_TYPES
        }
        self.index = (PAGE / "index.html").read_bytes()

    def photo(self, photo_id: str) -> tuple[torch.Tensor, list[int] | None]:
        if photo_id in self.uploads:
            image, size, _ = self.uploads[photo_id]
            return image, size
        if self.samples is not None and photo_id.startswith("s"):
            number = photo_id[1:]
            if number.isdigit() and int(number) < len(self.samples.photos):
                return self.samples.photos[int(number)].image, None
        raise RequestError(404, "no such photo: upload it again (the server keeps the last 32)")

    def add_upload(self, body: bytes, name: str) -> str:
        """Decode an uploaded file as predict.py decodes a photo; raises UnreadableImage."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upload"  # a fixed name: the client's file name never reaches a path
            path.write_bytes(body)
            image = decode_image(path, self.model.image_size)
            size = original_size(path)
        photo_id = secrets.token_hex(8)
        self.uploads[photo_id] = (image, size, name)
        while len(self.uploads) > KEPT_UPLOADS:
            self.uploads.popitem(last=False)
        return photo_id

    def model_info(self) -> dict:
        return model_data(self.model, self.threshold, self.samples, self.max_upload_bytes)


def create_app(explainer: LiveExplainer, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app; `allowed_hosts` None means loopback names only."""

    async def page(_request: Request) -> Response:
        return Response(explainer.index, media_type="text/html")

    async def asset(request: Request) -> Response:
        found = explainer.assets.get(request.path_params["name"])
        if found is None:
            return _error(404, "no such asset")
        content, media_type = found
        return Response(content, media_type=media_type)

    async def model_info(_request: Request) -> Response:
        return JSONResponse(explainer.model_info())

    async def upload(request: Request) -> Response:
        try:
            check_content_type(request, "application/octet-stream")
            body = await read_body(request, explainer.max_upload_bytes, "the photo")
            if not body:
                raise RequestError(400, "the upload is empty: pick a photo file")
            name = request.headers.get("x-file-name", "")[:200]
            photo_id = await run_in_threadpool(explainer.add_upload, body, name)
        except RequestError as error:
            return _error(error.status, str(error))
        except UnreadableImage as error:
            return _error(415, f"that file is not a photo this network can read: {error}")
        return JSONResponse({"photo": photo_id})

    def explain_photo(query: dict, image: torch.Tensor, size: list[int] | None, ablation: Ablation) -> dict:
        return explanation_data(explainer.model, image, ablation, explainer.threshold, size)

    def explain_unit(query: dict, image: torch.Tensor, _size: object, ablation: Ablation) -> dict:
        return unit_data(explainer.model, image, ablation, query["layer"], query["unit"], explainer.samples)

    async def explain(request: Request) -> Response:
        return await _answer(request, explainer, EXPLAIN_BODY, explain_photo)

    async def unit(request: Request) -> Response:
        return await _answer(request, explainer, UNIT_BODY, explain_unit)

    routes = [
        Route("/", page),
        Route("/assets/{name}", asset),
        Route("/api/model", model_info),
        Route("/api/photos", upload, methods=["POST"]),
        Route("/api/explain", explain, methods=["POST"]),
        Route("/api/unit", unit, methods=["POST"]),
    ]
    hosts = LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts
    middleware = [  # the first is the outermost: its headers go on the host check's answers too
        Middleware(BaseHTTPMiddleware, dispatch=_guard),
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
    ]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={Exception: _failed})


async def _guard(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Every response, errors included, with SECURITY_HEADERS; a POST only from the page's own origin."""
    try:
        if request.method not in SAFE_METHODS:
            check_origin(request)
        response = await call_next(request)
    except RequestError as error:
        response = _error(error.status, str(error))
    response.headers.update(SECURITY_HEADERS)
    return response


def serve(app: Starlette, host: str, port: int, out: TextIO = sys.stdout) -> None:
    """Listen on host:port (port 0: any free one), print the URL, serve until Ctrl-C."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))  # bound here, so the URL printed is the port really in use
        listener.listen(128)  # and listening: a browser opened at once waits in the backlog, not refused
    except OSError:
        listener.close()
        raise
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"serving the live page on http://{shown}:{listener.getsockname()[1]}/ (Ctrl-C stops it)", file=out)
    out.flush()
    # The page's own errors are JSON answers; uvicorn's per-request log would only repeat them.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[listener])


async def _answer(request: Request, explainer: LiveExplainer, shape: Fields, compute) -> Response:
    """Parse {"photo", "ablation", ...}, then compute off the event loop; 4xx for what the page got wrong."""
    try:
        query = await read_json(request, shape)
        image, size = explainer.photo(query["photo"])
        ablation = Ablation.from_dict(query.get("ablation"), explainer.model)
        data = await run_in_threadpool(compute, query, image, size, ablation)
    except RequestError as error:
        return _error(error.status, str(error))
    except (AblationError, UnitError) as error:
        return _error(400, str(error))
    return JSONResponse(data)


async def _failed(_request: Request, _error: Exception) -> Response:
    # Starlette answers a failure outside every middleware, so its headers are set here.
    message = "the server failed on this request (its terminal shows why); reload the page"
    return JSONResponse({"error": message}, status_code=500, headers=SECURITY_HEADERS)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def run_live_page(
    model: PCatModel, threshold: float, host: str | None, port: int | None, samples: str | None
) -> int:
    """explain.py --serve: the exit status, with each failure one line on stderr."""
    host, port = host or LOOPBACK_HOSTS[0], DEFAULT_PORT if port is None else port
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback:
        print(
            f"warning: listening on {host}: anyone who can reach this machine there can use the page "
            "and the model; pass no --host to keep it on 127.0.0.1",
            file=sys.stderr,
        )
    try:
        found = Samples(model, samples, threshold=threshold) if samples is not None else None
    except DataError as error:
        print(f"error: --samples: {error}", file=sys.stderr)
        return 2
    explainer = LiveExplainer(model, threshold, found)
    app = create_app(explainer, allowed_hosts=None if loopback else ["*"])
    try:
        serve(app, host, port)
    except OSError as error:
        print(f"error: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then hands the signal back
        pass
    return 0
