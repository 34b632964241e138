"""The README and docs/ stay true to the code.

They start with CI's own commands; every file, code name, config key and train.py option
they cite exists; their Python snippets run as written; and they carry no dates or commit
hashes. Names are checked, never line numbers, so the docs survive edits that move code.
"""

import importlib
import re
import shlex
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = {
    path.relative_to(REPO).as_posix(): path.read_text() for path in [README, *(REPO / "docs").glob("*.md")]
}
MAX_README_LINES = 220
INSTALL_AND_TRAIN = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' "
    "&& python train.py --config configs/mlp_article.yaml"
)
# The one commit hash allowed: benchmarks/epoch_time.py's baseline, in docs/performance.md.
BASELINE = "main"  # a revision every clone has, not a commit hash
PACKAGES = ("models", "datasets", "inference", "training", "explanation")
TOP_FOLDERS = (*PACKAGES, "configs", "benchmarks", "experiments", "scripts", "tests", "docs")
CONFIG_SECTIONS = ("trainer", "model", "data", "checkpoint", "last_checkpoint", "insight")
# Options train.py gets from jsonargparse itself rather than from a string in this project's code.
PARSER_OPTIONS = ("--config", "--print_config", "--help")
FILE_ENDINGS = ("py", "yaml", "md", "ckpt", "csv", "zip", "onnx", "pt", "safetensors", "json", "png", "jpg")
FILE_ENDINGS += ("html", "tmp", "txt", "part", "partial", "db", "tsv", "pbtxt")
# Namespaces where a name cited without its module is looked up (`PCatModel.normalize`, `nn.Linear`).
OUTSIDE_NAMESPACES = (
    "builtins",
    "torch",
    "lightning.pytorch",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.plugins.io",
    "lightning.pytorch.overrides.distributed",
    "torchdata.stateful_dataloader",
)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, indented ones (inside a list item) included."""
    blocks = re.findall(r"^([ \t]*)```(\w*)\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)
    return [(language, textwrap.dedent(body)) for _, language, body in blocks]


def prose(text: str) -> str:
    return re.sub(r"^([ \t]*)```.*?^\1```", "", text, flags=re.MULTILINE | re.DOTALL)


def inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", prose(text))


def shell_commands(text: str) -> list[list[str]]:
    """Every command of every bash block as tokens: continuations joined, comments dropped."""
    commands = []
    for language, body in code_blocks(text):
        if language != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for command in re.split(r"\s&&\s", line):
                if tokens := shlex.split(command, comments=True):
                    commands.append(tokens)
    return commands


def all_pages_text() -> str:
    return "\n".join(PAGES.values())


def resolve(name: str) -> object:
    """The object `name` (`inference.load_model`, `PCatModel.normalize`, `nn.Linear`) names."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix
        try:
            found, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
            break
        except ImportError:
            continue
    else:
        owners = [module for module in namespaces() if hasattr(module, parts[0])]
        if not owners:
            raise LookupError(f"no module of this project, torch or Lightning has {parts[0]}")
        found, rest = getattr(owners[0], parts[0]), parts[1:]
    for part in rest:
        found = getattr(found, part)
    return found


def namespaces() -> list[object]:
    modules = [
        importlib.import_module(path.relative_to(REPO).with_suffix("").as_posix().replace("/", "."))
        for package in PACKAGES
        for path in sorted((REPO / package).glob("*.py"))
    ]
    return modules + [importlib.import_module(name) for name in OUTSIDE_NAMESPACES]


def cited_code_names() -> set[str]:
    """Inline code that names code: dotted names and CamelCase classes, calls stripped to the callee."""
    names = set()
    for span in {span for text in PAGES.values() for span in inline_code(text)}:
        match = re.fullmatch(r"([A-Za-z_]\w*(?:\.\w+)*)(\(.*\))?", span)
        if not match:
            continue
        name = match.group(1)
        parts = name.split(".")
        if parts[0] in CONFIG_SECTIONS or parts[-1] in FILE_ENDINGS:
            continue  # a config key (checked against the parser) or a file name
        if len(parts) > 1 or re.fullmatch(r"[A-Z]\w*[a-z]\w*", name):
            names.add(name)
    return names


@pytest.fixture(scope="module")
def train_parser():
    """train.py's own parser (defaults.yaml included), built by CatsDogsCLI but never run."""
    from training.cli import CatsDogsCLI

    class Built(Exception):
        pass

    class ParserOnly(CatsDogsCLI):
        def parse_arguments(self, parser, args):
            raise Built(parser)

    with pytest.raises(Built) as built:
        ParserOnly([])
    return built.value.args[0]


@pytest.fixture(scope="module")
def config_keys(train_parser) -> set[str]:
    """Every dotted key of the article config, as train.py resolves it."""
    config = train_parser.parse_args(["--config", str(REPO / "configs" / "mlp_article.yaml")]).as_dict()
    keys = set()

    def walk(value: object, prefix: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{prefix}{key}.")
        keys.add(prefix.rstrip("."))

    walk(config, "")
    return keys


def test_readme_starts_with_the_install_and_test_commands():
    text = README.read_text()
    title, rest = text.split("\n", 1)
    assert title.startswith("# ")
    assert rest.lstrip().startswith("```bash\n"), "the two commands come right after the title"
    first_block = code_blocks(text)[0][1]
    assert first_block.splitlines() == [INSTALL_AND_TRAIN, "pytest"]
    # .ci/run is what CI really does: the same venv, activation, install and test command.
    ci_lines = [
        " ".join(line.replace("python -m pip", "pip").replace("--quiet ", "").split())
        for line in (REPO / ".ci" / "run").read_text().splitlines()
    ]
    for step in INSTALL_AND_TRAIN.split(" && ")[:-1]:
        assert step in ci_lines, f"README's `{step}` is not what .ci/run does"
    assert "pytest" in ci_lines


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_performance_doc_keeps_the_epoch_time_command_and_its_table():
    text = PAGES["docs/performance.md"]
    assert f"python benchmarks/epoch_time.py --baseline {BASELINE}" in text
    assert "| config | code | epoch (mean, s) | images/s | vs baseline |" in text
    pasted = re.search(r"^\| \w+ \| (this|baseline) \|", text, re.MULTILINE)
    assert "\n<!-- epoch-time -->\n" in text or pasted, "the placeholder row or the pasted output"


def test_every_file_the_docs_mention_exists():
    text = all_pages_text()
    folders = "|".join(re.escape(name) for name in (*TOP_FOLDERS, ".ci"))
    paths = set(re.findall(rf"(?<![\w./-])((?:{folders})/[\w./-]*\w)", text))
    paths |= set(re.findall(r"(?<![\w./<>-])(\w+\.py)\b", text))  # train.py, predict.py, ...
    assert {"configs/defaults.yaml", "models/layers.py", "train.py"} <= paths
    missing = sorted(path for path in paths if not (REPO / path).exists())
    assert not missing, f"mentioned but not in the repository: {missing}"
    for page, page_text in PAGES.items():  # links and pictures, relative to their page
        for target in re.findall(r"\]\(([^)\s]+)\)", page_text):
            if not target.startswith(("http://", "https://", "#")):
                assert ((REPO / page).parent / target).exists(), f"{page} links to missing {target}"


def test_every_config_shown_in_the_readme_table_exists_and_all_are_shown():
    listed = set(re.findall(r"^\| `(configs/\w+\.yaml)` \|", README.read_text(), re.MULTILINE))
    on_disk = {p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*.yaml")}
    assert listed == on_disk - {"configs/defaults.yaml"}


def layer_names() -> set[str]:
    """The names of the layers of every registered network, as TensorBoard tags show them."""
    from models import create_model, list_models

    return {name for model in list_models() for name in create_model(model).linear_layers()}


def test_every_code_name_the_docs_cite_exists():
    names = cited_code_names()
    assert {"inference.load_model", "PCatModel.normalize", "DenseLayer.forward_with_z"} <= names
    missing = []
    for name in sorted(names - layer_names()):  # `block1.fc1` is a layer of resmlp, not code
        try:
            resolve(name)
        except (LookupError, AttributeError) as error:
            missing.append(f"{name} ({error})")
    assert not missing, f"cited as code but not found: {missing}"


def test_names_cited_with_their_file_are_in_that_file():
    # "`X` in `path.py`", "`X` (`path.py`)" and "`path.py` `X`": X is defined in that module.
    text = all_pages_text()
    name, path = r"`([A-Za-z_][\w.]*)`", r"`((?:" + "|".join(PACKAGES) + r")/\w+)\.py`"
    pairs = re.findall(rf"{name}\s+(?:in\s+|\(){path}", text)
    pairs += [(n, p) for p, n in re.findall(rf"{path}\s+{name}", text)]
    assert len(pairs) >= 8
    for cited, module_path in pairs:
        found = importlib.import_module(module_path.replace("/", "."))
        for part in cited.split("."):
            assert hasattr(found, part), f"{module_path}.py has no {cited}"
            found = getattr(found, part)


def test_config_keys_and_options_in_the_prose_are_real(config_keys):
    sources = "\n".join(path.read_text() for path in REPO.glob("**/*.py") if ".venv" not in path.parts)
    for span in {span for text in PAGES.values() for span in inline_code(text)}:
        option = re.fullmatch(r"--([\w.-]+)(\+?=\S*)?(?: .*)?", span)
        key = re.fullmatch(r"([a-z_]+(?:\.\w+)+)(?::\s.*)?", span)
        if option and "." in option.group(1):
            assert known_key(option.group(1), config_keys), f"`{span}`: train.py has no such key"
        elif option:
            assert span.split()[0] in PARSER_OPTIONS or f'"--{option.group(1)}"' in sources, (
                f"`{span}`: no script has this option"
            )
        elif key and key.group(1).split(".")[0] in CONFIG_SECTIONS:
            assert known_key(key.group(1), config_keys), f"`{span}`: train.py has no such key"


def known_key(key: str, config_keys: set[str]) -> bool:
    return key in config_keys or any(k.startswith(key + ".") for k in config_keys)


def test_every_train_py_command_parses_and_other_scripts_have_their_options(train_parser):
    from jsonargparse import ArgumentError

    commands = [tokens for text in PAGES.values() for tokens in shell_commands(text)]
    train_commands = 0
    for tokens in commands:
        script = next((t for t in tokens if t.endswith(".py") and (REPO / t).is_file()), None)
        if script is None:
            continue
        args = tokens[tokens.index(script) + 1 :]
        if script == "train.py":
            train_commands += 1
            args = [
                str(REPO / a) if a.startswith("configs/") else a for a in args if a not in PARSER_OPTIONS[1:]
            ]
            try:
                train_parser.parse_args(args)
            except ArgumentError as error:
                pytest.fail(f"`python train.py {shlex.join(tokens[tokens.index(script) + 1 :])}`: {error}")
        else:
            # The options predict.py, explain.py and export.py share are defined in command_line.py.
            source = (REPO / script).read_text() + (REPO / "inference" / "command_line.py").read_text()
            for option in (a for a in args if re.fullmatch(r"--[\w-]+", a)):
                assert f'"{option}"' in source, f"{script} has no option {option}"
    assert train_commands >= 10


def test_no_dates_and_no_commit_hashes():
    for page, text in PAGES.items():
        assert not re.findall(r"20\d\d-\d\d-\d\d", text), f"{page} has a date"
        hashes = {
            word
            for word in re.findall(r"\b[0-9a-f]{7,40}\b", text)
            if re.search(r"\d", word) and re.search(r"[a-f]", word)
        }
        allowed = {BASELINE} if page in ("README.md", "docs/performance.md") else set()  # the command
        assert hashes <= allowed, f"{page} has commit hashes {sorted(hashes - allowed)}"
        cited = [line for line in text.splitlines() if re.search(rf"\b{BASELINE}\b", line)]
        assert all(f"--baseline {BASELINE}" in line for line in cited), f"{page} cites {BASELINE}"


def python_snippet(containing: str) -> str:
    """The README's or a docs page's Python block that contains `containing`."""
    return next(
        body
        for page in PAGES.values()
        for language, body in code_blocks(page)
        if language == "python" and containing in body
    )


@pytest.fixture()
def exported_photo_folder(tmp_path, monkeypatch):
    """A small model as the README's files: a checkpoint at the run's path and best.onnx, plus
    photo.jpg (a large JPEG with an EXIF rotation) and some_folder/ of other photos."""
    from inference.export import export_model
    from models import CHECKPOINT_FORMAT, PROJECT_VERSION, PCatModel

    torch.manual_seed(0)
    model = PCatModel("mlp", {"hidden_dims": [8]}, image_size=16).eval()
    checkpoint = tmp_path / "runs" / "mlp_article" / "version_0" / "checkpoints" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "catsdogs": {
                "format": CHECKPOINT_FORMAT,
                "project_version": PROJECT_VERSION,
                "model_config": model.config,
            },
        },
        checkpoint,
    )
    export_model(model, "onnx", tmp_path / "best.onnx")
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to show
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif)
    (tmp_path / "some_folder").mkdir()
    Image.fromarray(pixels[:50, :80]).convert("L").save(tmp_path / "some_folder" / "grey.jpg")
    Image.fromarray(pixels[:90, :60]).convert("P").save(tmp_path / "some_folder" / "palette.png")
    monkeypatch.chdir(tmp_path)
    return model, tmp_path


def test_the_python_snippet_runs_as_written(exported_photo_folder, capsys):
    from datasets import decode_image

    model, _ = exported_photo_folder
    exec(python_snippet("load_model("), {})
    printed = capsys.readouterr().out.splitlines()
    with torch.inference_mode():
        expected = float(model(decode_image("photo.jpg", 16)[None]))
    assert printed[0] == ("cat" if expected >= 0.5 else "dog")
    assert [line.split()[0] for line in printed[1:]] == ["some_folder/grey.jpg", "some_folder/palette.png"]


def test_the_onnx_snippet_decodes_as_training_does_and_gives_the_same_p_cat(exported_photo_folder):
    from datasets import decode_image

    model, folder = exported_photo_folder
    namespace: dict = {}
    exec(python_snippet("onnxruntime"), namespace)
    for photo in ["photo.jpg", *sorted((folder / "some_folder").iterdir())]:
        assert np.array_equal(namespace["photo_as_uint8"](str(photo), 16), decode_image(photo, 16).numpy()), (
            photo
        )
    with torch.inference_mode():
        expected = model(decode_image("photo.jpg", 16)[None]).numpy()
    np.testing.assert_allclose(namespace["p_cat"], expected, atol=1e-5)
    assert list(namespace["labels"]) == ["cat" if p >= 0.5 else "dog" for p in expected]
