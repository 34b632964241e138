"""What a request to the live page must be before any of it is used: from the page's own
origin, of the content type its route declares, within its size limit, and, for JSON, of
the route's declared shape.

A JSON body is checked against its shape (types, ranges, lengths; the shape's nesting is
the only nesting allowed) before any value reaches the model, and anything else is a 400
with one line naming the field: the page never sends such a body, so the message is for
whoever wrote the request by hand.
"""

import json
from dataclasses import dataclass

from starlette.requests import Request

MAX_JSON_BYTES = 2**20
MAX_WEIGHT_SCALE = 10  # W scaled far beyond this only shows float overflow, not the network
SAFE_METHODS = ("GET", "HEAD")  # a request with any other method changes, or costs, something here


class RequestError(Exception):
    """A request the page should not have sent; becomes {"error": message} with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _invalid(where: str, expected: str) -> RequestError:
    return RequestError(400, f"{where or 'the request body'} must be {expected}")


def _inside(where: str, name: str) -> str:
    return f"{where}.{name[:40]}" if where else name[:40]  # a name typed by hand can be long


@dataclass(frozen=True)
class Text:
    max_length: int

    def check(self, value: object, where: str) -> str:
        if not isinstance(value, str) or len(value) > self.max_length:
            raise _invalid(where, f"a string of at most {self.max_length} characters")
        return value


@dataclass(frozen=True)
class Number:
    low: float
    high: float
    integer: bool = False

    def check(self, value: object, where: str) -> float:
        kinds = int if self.integer else (int, float)
        # Comparisons, not math.isfinite: exact for an int of any size, and false for NaN.
        if isinstance(value, bool) or not isinstance(value, kinds) or not self.low <= value <= self.high:
            what = "an integer" if self.integer else "a number"
            raise _invalid(where, f"{what} from {self.low} to {self.high}")
        return value


@dataclass(frozen=True)
class Flag:
    def check(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise _invalid(where, "true or false")
        return value


@dataclass(frozen=True)
class ListOf:
    item: "Text | Number"
    max_length: int

    def check(self, value: object, where: str) -> list:
        if not isinstance(value, list) or len(value) > self.max_length:
            raise _invalid(where, f"a list of at most {self.max_length} items")
        return [self.item.check(item, f"{where}[{k}]") for k, item in enumerate(value)]


@dataclass(frozen=True)
class PerLayer:
    """A JSON object of layer name -> a value of one shape."""

    value: "ListOf | Number"
    max_layers: int = 256

    def check(self, value: object, where: str) -> dict:
        if not isinstance(value, dict) or len(value) > self.max_layers:
            raise _invalid(where, f"an object of at most {self.max_layers} layer names")
        return {LAYER.check(k, where): self.value.check(v, _inside(where, k)) for k, v in value.items()}


@dataclass(frozen=True)
class Fields:
    """A JSON object with these fields: the `required` ones, the others optional, nothing else."""

    fields: dict
    required: tuple[str, ...] = ()

    def check(self, value: object, where: str) -> dict:
        if not isinstance(value, dict):
            raise _invalid(where, "a JSON object")
        for name in value.keys() - self.fields.keys():  # e.g. a checkpoint path: the server never uses one
            raise RequestError(400, f"{where or 'the request body'} has an unknown field {name[:40]!r}")
        for name in self.required:
            if name not in value:
                raise RequestError(400, f"{where or 'the request body'} lacks the field {name!r}")
        return {name: self.fields[name].check(item, _inside(where, name)) for name, item in value.items()}


LAYER = Text(max_length=100)
UNIT = Number(0, 2**31 - 1, integer=True)
ABLATION = Fields(
    {
        "units_off": PerLayer(ListOf(UNIT, max_length=2**16)),
        "zero_bias": ListOf(LAYER, max_length=256),
        "weight_scale": PerLayer(Number(-MAX_WEIGHT_SCALE, MAX_WEIGHT_SCALE)),
        "flip": Flag(),
    }
)
PHOTO_ID = Text(max_length=64)
EXPLAIN_BODY = Fields({"photo": PHOTO_ID, "ablation": ABLATION}, required=("photo",))
UNIT_BODY = Fields(
    {"photo": PHOTO_ID, "ablation": ABLATION, "layer": LAYER, "unit": UNIT},
    required=("photo", "layer", "unit"),
)


def check_origin(request: Request) -> None:
    """Refuse a request that another web page made the user's browser send (403).

    Browsers name the page that made a request in `Origin` (and say how it relates to this
    server in `Sec-Fetch-Site`); a request with neither comes from no browser page at all.
    """
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin, site = request.headers.get("origin"), request.headers.get("sec-fetch-site")
    if (origin is not None and origin != own) or site not in (None, "same-origin"):
        raise RequestError(
            403,
            f"refused a request from another origin ({origin or site}): only the page at {own}/ itself "
            "can use this server",
        )


def check_content_type(request: Request, expected: str) -> None:
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared != expected:
        raise RequestError(415, f"send the body as {expected}, not {declared or 'no content type'}")


async def read_json(request: Request, shape: Fields) -> dict:
    """The body as JSON of `shape`; a RequestError for anything else."""
    check_content_type(request, "application/json")
    body = await read_body(request, MAX_JSON_BYTES, "the request")
    try:
        query = json.loads(body)
    # ValueError: not JSON, or an integer over Python's 4,300 digits; RecursionError: nested too deep.
    except (ValueError, RecursionError):
        raise RequestError(400, "the request body is not JSON the page would send") from None
    return shape.check(query, "")


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length", "")
    too_large = RequestError(413, f"{what} is larger than the server's limit of {_size(limit)}")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count / 1024:g} KiB"
