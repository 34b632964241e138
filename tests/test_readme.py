"""The README's promises stay true: cited code lines exist, commands at the top are the real ones."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_code_cited_with_a_line_number_is_on_that_line():
    # `code` (`path.py:N`): the code before any comment must be on line N of that file.
    citations = re.findall(r"`([^`]+)`\s*\(`([\w/]+\.py):(\d+)`\)", README)
    assert len(citations) >= 4
    for code, path, line in citations:
        lines = (REPO / path).read_text().splitlines()
        snippet = code.split("#")[0].strip()
        assert snippet in lines[int(line) - 1], f"README cites {path}:{line} for `{snippet}`"


def test_readme_starts_with_the_install_and_test_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "pip install -e '.[dev]'" in first_block
    assert "python train.py --config configs/mlp_article.yaml" in first_block
    assert "\npytest\n" in first_block
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[dev]'" in ci and "\npytest" in ci
