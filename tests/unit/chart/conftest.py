"""Fixtures for the chart's unit tests: the chart's files, read without Helm or a cluster."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "charts" / "cftunnel-operator"


@pytest.fixture(scope="session")
def chart_readme() -> ModuleType:
    """``hack/chart-readme.py`` imported as a module (its name is not an identifier)."""
    path = REPO / "hack" / "chart-readme.py"
    spec = importlib.util.spec_from_file_location("chart_readme", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="session")
def values_schema() -> dict[str, Any]:
    loaded = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert isinstance(loaded, dict)
    return loaded
