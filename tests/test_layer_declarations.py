"""Each family declares its layers (name, what W mixes, what x is) in its own file, and nothing
else in the product knows them: explanation/, training/ and the rest read the declaration."""

import inspect
import re

import pytest
import torch

from models import ZooNetwork, create_model, list_models
from models.layers import ROWS, DenseLayer
from tests.conftest import REPO

NOT_PRODUCT = ("tests", "benchmarks", "scripts", "docs", ".venv")


def family_file(name: str) -> str:
    return inspect.getfile(type(create_model(name))).removeprefix(f"{REPO}/")


def product_files() -> list[str]:
    files = [*REPO.rglob("*.py"), *REPO.glob("explanation/page/*.js")]
    return sorted(
        path.relative_to(REPO).as_posix()
        for path in files
        if path.relative_to(REPO).parts[0] not in NOT_PRODUCT
    )


def layer_words(name: str) -> set[str]:
    """The parts of a family's layer names that are its own: `block1.token_fc1` -> token_fc1, token_fc."""
    words = set()
    for layer in create_model(name, image_size=32).layers():
        for part in layer.split("."):
            words |= {part, part.rstrip("0123456789")}
    return {word for word in words if word not in ("block", "stage", "layer")}  # prose, not names


@pytest.mark.parametrize("name", list_models())
def test_no_layer_name_appears_outside_its_family_files(name):
    families = {family_file(other) for other in list_models()}  # `head` and `embed` are every family's
    words = "|".join(map(re.escape, sorted(layer_words(name))))
    pattern = re.compile(rf"""["'.]\s*({words})\b""")  # a quoted name, or an attribute
    found = [
        f"{path}: {match.group(1)}"
        for path in product_files()
        if path not in families
        for match in pattern.finditer((REPO / path).read_text(encoding="utf-8"))
    ]
    assert not found, f"{name}'s layer names outside its family's file: {found}"


def test_the_grep_finds_a_layer_name_where_it_is_written():
    pattern = re.compile(r"""["'.]\s*(token_fc1)\b""")
    assert pattern.search('if "token_fc1" in name:') and pattern.search("block.token_fc1.linear")
    assert "models/mixer.py" in {family_file(name) for name in list_models()}


@pytest.mark.parametrize("name", list_models())
def test_every_layer_is_declared_once_with_what_w_mixes(name):
    network = create_model(name, image_size=32)
    assert isinstance(network, ZooNetwork)
    declared = network.layers()
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(map(id, linears)) == sorted(id(layer.linear) for layer in declared.values())  # each W once
    head = list(declared.values())[-1]
    assert not isinstance(head.module, DenseLayer) and head.linear.out_features == 1  # the bare head, last
    for layer in declared.values():
        assert layer.mixes in ROWS and layer.x


@pytest.mark.parametrize("name", list_models())
def test_per_row_layers_record_one_row_per_patch_or_feature(name):
    network = create_model(name, image_size=32).eval()
    _, record = network.forward_with_intermediates(torch.randn(2, 3, 32, 32))
    *hidden, (head, _) = network.layers().items()
    assert record[head].z.ndim == 1  # one z per photo
    for layer_name, layer in hidden:  # (B, out), or (B, rows, out) for a layer applied per row
        assert record[layer_name].z.ndim == (3 if layer.rows else 2)


def test_recording_a_layer_the_family_does_not_declare_says_so():
    network = create_model("logreg", image_size=8)
    with pytest.raises(ValueError, match="MLP.layers\\(\\) does not declare the Linear it records"):
        network.record({}, torch.nn.Linear(1, 1), torch.zeros(1), torch.zeros(1))
    network.record(
        None, torch.nn.Linear(1, 1), torch.zeros(1), torch.zeros(1)
    )  # nothing asked, nothing checked
