"""The chart README's values table lists exactly the values of values.yaml, with their
defaults and descriptions, and is what ``hack/chart-readme.py`` generates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import CHART_DIR

README = CHART_DIR / "README.md"
ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<type>\w+) \| `(?P<default>.*)` \| (?P<text>.*) \|$")


def _readme_rows() -> dict[str, tuple[Any, str]]:
    rows: dict[str, tuple[Any, str]] = {}
    for line in README.read_text().splitlines():
        if match := ROW.match(line):
            default = json.loads(match["default"].replace("\\|", "|"))
            rows[match["key"]] = (default, match["text"].replace("\\|", "|"))
    return rows


def _lookup(values: dict[str, Any], key: str) -> Any:
    """Follow a dotted key; a key of a free-form map may itself hold dots."""
    node: Any = values
    rest = key
    while rest:
        for length in range(len(rest), 0, -1):
            head = rest[:length]
            if head in node and (length == len(rest) or rest[length] == "."):
                node, rest = node[head], rest[length + 1 :]
                break
        else:
            raise KeyError(key)
    return node


def _leaf_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys of every scalar, list and empty map: the finest values a user can set."""
    paths: list[str] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            paths += _leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


def _comment_text(values_file: Path) -> str:
    words: list[str] = []
    for line in values_file.read_text().splitlines():
        if line.strip().startswith("#"):
            words += line.strip().lstrip("#").removeprefix(" --").split()
    return " ".join(words)


def test_readme_table_is_the_generated_one(chart_readme: ModuleType) -> None:
    assert chart_readme.main(["--check"]) == 0, "run hack/chart-readme.py"


def test_readme_lists_every_value_once_with_its_default(values: dict[str, Any]) -> None:
    rows = _readme_rows()
    assert rows, "no values table in the README"
    for key, (default, _) in rows.items():
        assert _lookup(values, key) == default, key
    # Every setting is covered by exactly one row: its own, or that of the map holding it.
    for leaf in _leaf_paths(values):
        covering = [key for key in rows if leaf == key or leaf.startswith(f"{key}.")]
        assert len(covering) == 1, f"{leaf} is covered by {covering or 'no row'}"


def test_readme_descriptions_are_the_values_comments() -> None:
    comments = _comment_text(CHART_DIR / "values.yaml")
    for key, (_, text) in _readme_rows().items():
        assert text, f"{key} has no description"
        assert " ".join(text.split()) in comments, key


def test_generator_refuses_an_undocumented_value(chart_readme: ModuleType, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text("# -- Documented.\ngood: 1\nsection:\n  # a plain comment\n  bad: 2\n")
    with pytest.raises(chart_readme.ValuesDocError, match=r"section\.bad"):
        chart_readme.value_docs(values_file)


def test_generator_treats_a_documented_map_as_one_value(
    chart_readme: ModuleType, tmp_path: Path
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(
        "# Section header, not a description.\n"
        "# -- Free-form map,\n# described on two lines.\nresources:\n  limits: {memory: 1Mi}\n"
    )
    [doc] = chart_readme.value_docs(values_file)
    assert (doc.key, doc.type, doc.default) == (
        "resources",
        "object",
        {"limits": {"memory": "1Mi"}},
    )
    assert doc.description == "Free-form map, described on two lines."
