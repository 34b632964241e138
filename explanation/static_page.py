"""explain.py --html: the live page written to one file, with one photo's numbers in it.

The page is the live page itself (page/): its CSS and scripts inlined, and the server's
answers for this photo (the explanation, and each layer's strongest units) embedded as
JSON, so it opens offline, as an attachment, with nothing fetched. Changing the network
needs the server: explain.py --serve.
"""

import json
from pathlib import Path

from torch import Tensor

from explanation.ablation import Ablation
from explanation.live import explanation_data, model_data, unit_data
from models import PCatModel

PAGE = Path(__file__).with_name("page")
SCRIPTS = ("charts.js", "unit.js", "app.js")  # in the order index.html loads them


def render_page(model: PCatModel, image: Tensor, threshold: float, original_size: list[int] | None) -> str:
    """The page for uint8 `image` (3, S, S), the photo as the network saw it."""
    as_trained = Ablation()
    explanation = explanation_data(model, image, as_trained, threshold, original_size)
    units = {}
    for layer in explanation["layers"]:
        for unit in {top["index"][-1] for top in layer["top_units"]} or {0}:  # the head: its one unit
            units[f"{layer['name']}/{unit}"] = unit_data(model, image, as_trained, layer["name"], unit, None)
    data = {"model": model_data(model, threshold, None, 0), "explanation": explanation, "units": units}
    # "<" escaped: a photo's name in the data cannot end the <script> it sits in.
    embedded = json.dumps(data).replace("<", "\\u003c")
    page = _replace(
        (PAGE / "index.html").read_text(encoding="utf-8"),
        '<link rel="stylesheet" href="/assets/style.css">',
        f"<style>\n{(PAGE / 'style.css').read_text(encoding='utf-8')}</style>",
    )
    page = _replace(
        page,
        f'<script src="/assets/{SCRIPTS[0]}">',
        f'<script>window.EMBEDDED = {embedded};</script>\n<script src="/assets/{SCRIPTS[0]}">',
    )
    for name in SCRIPTS:
        script = (PAGE / name).read_text(encoding="utf-8")
        page = _replace(page, f'<script src="/assets/{name}"></script>', f"<script>\n{script}</script>")
    return page


def _replace(page: str, old: str, new: str) -> str:
    if old not in page:  # index.html changed: say so rather than write a page that fetches
        raise ValueError(f"page/index.html no longer has {old!r}")
    return page.replace(old, new, 1)
