"""The live page's API against requests the page never sends: malformed or hostile JSON gets a
400 with one line (never a 500), a write from another origin or with an undeclared content
type is refused and changes nothing, and every response carries the security headers.

A tiny untrained network serves: what is tested is the request handling, not the numbers.
"""

import json
import urllib.error
import urllib.request

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from explanation.server import SECURITY_HEADERS, LiveExplainer, create_app
from models import PCatModel
from tests.image_factory import CAT_COLOR, write_image
from tests.live_server import post_photo, running

JSON = {"Content-Type": "application/json"}
RAW = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def explainer() -> LiveExplainer:
    torch.manual_seed(0)
    return LiveExplainer(PCatModel("mlp", {"hidden_dims": [8, 4]}, image_size=16))


@pytest.fixture(scope="module")
def served(explainer, tmp_path_factory):
    """(base URL, the id of an uploaded photo)."""
    photo = write_image(tmp_path_factory.mktemp("photo") / "cat.jpg", CAT_COLOR, noise=20)
    with running(create_app(explainer)) as base:
        yield base, post_photo(base, photo.read_bytes())


def send(url: str, body: bytes | None, headers: dict) -> tuple[int, dict, dict]:
    """POST raw bytes (None: GET): (status, headers, the JSON answer or {"error": its text})."""
    request = urllib.request.Request(
        url, data=body, headers=headers, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, answer, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer, content = error.code, error.headers, error.read()
    is_json = answer.get("content-type", "").startswith("application/json")
    return (
        status,
        dict(answer),
        json.loads(content) if is_json else {"error": content.decode(errors="replace")},
    )


def assert_refused(answer: tuple[int, dict, dict], status: int, words: str) -> None:
    code, _, data = answer
    assert code == status and words in data["error"], answer
    assert "\n" not in data["error"] and len(data["error"]) < 300  # one line


def test_each_malformed_body_of_the_issue_is_a_400_with_one_line(served):
    base, photo = served
    deep = b"[" * 100_000 + b"]" * 100_000
    for path, body, words in (
        ("/api/explain", {"photo": photo, "ablation": {"zero_bias": [{}]}}, "ablation.zero_bias[0] must be"),
        ("/api/explain", {"photo": photo, "ablation": {"zero_bias": [[1]]}}, "ablation.zero_bias[0] must be"),
        (
            "/api/explain",
            {"photo": photo, "ablation": {"weight_scale": {"layer1": 10**400}}},
            "from -10 to 10",
        ),
        ("/api/explain", {"photo": photo, "ablation": {"units_off": {"layer1": [10**400]}}}, "an integer"),
        (
            "/api/explain",
            {"photo": photo, "ablation": {"weight_scale": {"layer1": float("nan")}}},
            "-10 to 10",
        ),
        ("/api/explain", b'{"photo": ' + b"7" * 5000 + b"}", "not JSON"),  # over Python's 4,300 digits
        ("/api/explain", deep, "not JSON"),  # RecursionError at the top level
        ("/api/explain", b'{"photo": "x", "ablation": ' + deep + b"}", "not JSON"),  # ... inside ablation
        ("/api/explain", {"photo": photo, "ablation": json.loads("[" * 50 + "]" * 50)}, "ablation must be"),
        ("/api/explain", {"photo": ["s0"]}, "photo must be a string"),
        ("/api/explain", [photo], "must be a JSON object"),
        ("/api/explain", {"ablation": {}}, "lacks the field 'photo'"),
        ("/api/unit", {"photo": photo, "layer": ["layer1"], "unit": 0}, "layer must be a string"),
        ("/api/unit", {"photo": photo, "layer": {}, "unit": 0}, "layer must be a string"),
        ("/api/unit", {"photo": photo, "layer": "layer1", "unit": True}, "unit must be an integer"),
        ("/api/unit", {"photo": photo, "layer": "layer1", "unit": 10**30}, "unit must be an integer"),
        ("/api/unit", {"photo": photo, "layer": "layer1"}, "lacks the field 'unit'"),
        ("/api/unit", b"\xff\xfe not utf-8", "not JSON"),
    ):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        assert_refused(send(base + path, raw, JSON), 400, words)
    # The same layer and unit, well formed, are answered: the 400s above are the shape's, not the model's.
    status, _, answer = send(
        f"{base}/api/unit", json.dumps({"photo": photo, "layer": "layer1", "unit": 0}).encode(), JSON
    )
    assert status == 200 and answer["layer"] == "layer1", answer


def test_a_write_from_another_origin_is_refused_and_changes_nothing(served, explainer):
    base, photo = served
    jpeg = b"\xff\xd8 whatever another page sends"
    before = list(explainer.uploads)
    for headers in (
        {"Origin": "http://127.0.0.1:1", **RAW},  # the issue's page on another port
        {"Origin": "null", **RAW},  # a sandboxed frame or a file:// page
        {"Sec-Fetch-Site": "cross-site", **RAW},
        {"Sec-Fetch-Site": "same-site", "Origin": base, **RAW},  # the browser's word decides too
    ):
        assert_refused(send(f"{base}/api/photos", jpeg, headers), 403, "another origin")
    query = json.dumps({"photo": photo}).encode()
    assert_refused(send(f"{base}/api/explain", query, {"Origin": "http://evil.example", **JSON}), 403, base)
    assert list(explainer.uploads) == before  # nothing pushed the user's photo out
    # Content types other than the route's: what a page elsewhere may send without asking first.
    for path, body, kind in (
        ("/api/photos", jpeg, "text/plain"),
        ("/api/photos", jpeg, "multipart/form-data; boundary=x"),
        ("/api/photos", jpeg, "application/x-www-form-urlencoded"),
        ("/api/explain", query, "text/plain"),
        ("/api/unit", query, "application/octet-stream"),
    ):
        assert_refused(send(base + path, body, {"Content-Type": kind}), 415, "send the body as")
    assert list(explainer.uploads) == before
    # The page itself: its own origin, the declared type.
    status, _, answer = send(
        f"{base}/api/explain", query, {"Origin": base, "Sec-Fetch-Site": "same-origin", **JSON}
    )
    assert status == 200 and 0 <= answer["p_cat"] <= 1, answer


def test_every_response_carries_the_security_headers(served):
    base, photo = served
    answers = []
    for path, body, headers in (
        ("/", None, {}),
        ("/assets/app.js", None, {}),
        ("/api/model", None, {}),
        ("/assets/nope.js", None, {}),  # 404 of a route
        ("/nope", None, {}),  # 404 of Starlette's router
        ("/api/model", None, {"Host": "attacker.example"}),  # 400 of the host check
        ("/api/explain", json.dumps({"photo": photo}).encode(), JSON),  # 200
        ("/api/explain", b"{", JSON),  # 400
        ("/api/photos", b"", {"Origin": "http://127.0.0.1:1", **RAW}),  # 403
        ("/api/model", b"{}", JSON),  # 405
        ("/api/explain", b"{}", {"Content-Type": "text/plain"}),  # 415
    ):
        status, response_headers, _ = send(base + path, body, headers)
        answers.append((status, response_headers))
    assert sorted({status for status, _ in answers}) == [200, 400, 403, 404, 405, 415]
    for status, headers in answers:
        headers = {name.lower(): value for name, value in headers.items()}
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name.lower()) == value, (status, name)


# Any JSON at all, and bodies in the API's own shape with any JSON in each place, so that deep
# paths are reached too, not only "must be a JSON object". "PHOTO" becomes the uploaded photo.
LAYERS = st.sampled_from(["layer1", "layer2", "head", "nope"])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
    | LAYERS
)
ANY_JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(LAYERS | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
ABLATION_FIELDS = st.sampled_from(["units_off", "zero_bias", "weight_scale", "flip", "other"])
SHAPED = st.fixed_dictionaries(
    {
        "photo": st.just("PHOTO") | ANY_JSON,
        "ablation": st.dictionaries(ABLATION_FIELDS, st.dictionaries(LAYERS, ANY_JSON) | ANY_JSON) | ANY_JSON,
        "layer": LAYERS | ANY_JSON,
        "unit": st.integers(-2, 10) | ANY_JSON,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    body=SHAPED | ANY_JSON,
    endpoint=st.sampled_from(["/api/explain", "/api/unit", "/api/photos", "/api/model"]),
)
def test_no_json_body_gets_a_500(served, body, endpoint):
    base, photo = served
    raw = json.dumps(body).replace('"PHOTO"', json.dumps(photo)).encode()
    status, _, answer = send(base + endpoint, raw, JSON)
    assert status < 500, (raw, answer)
    assert status == 200 or "\n" not in answer["error"]


def test_a_failure_inside_the_server_is_a_500_with_the_headers_too(explainer):
    class Failing(LiveExplainer):
        def model_info(self) -> dict:
            raise RuntimeError("a bug")

    failing = Failing(explainer.model)
    with running(create_app(failing)) as base:
        status, headers, answer = send(f"{base}/api/model", None, {})
    assert status == 500 and "\n" not in answer["error"], answer
    headers = {name.lower(): value for name, value in headers.items()}
    assert all(headers.get(name.lower()) == value for name, value in SECURITY_HEADERS.items())
