"""The chart's CRD templates are the files of ``crds/`` (the single source of truth), unchanged
except for the wrapper ``hack/sync-chart-crds.sh`` adds: the ``crds.enabled`` condition and the
keep annotations (Helm's resource policy and Argo CD's sync options) under ``crds.keep``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART_DIR, REPO

SOURCE_DIR = REPO / "crds"
CHART_CRD_DIR = CHART_DIR / "templates" / "crds"
SOURCES = sorted(SOURCE_DIR.glob("*.yaml"))
KEEP_ANNOTATIONS = {
    "helm.sh/resource-policy": "keep",
    "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
}
KEEP_LINES = {f"{key}: {value}" for key, value in KEEP_ANNOTATIONS.items()}
TEMPLATE_LINE = re.compile(r"^\s*\{\{.*\}\}\s*$")


def _strip_wrapper(template: str) -> tuple[list[str], dict[str, Any]]:
    """The template actions of a chart copy, and the document left once they and the keep
    annotations are removed."""
    actions = [line.strip() for line in template.splitlines() if TEMPLATE_LINE.match(line)]
    body = "\n".join(
        line
        for line in template.splitlines()
        if not TEMPLATE_LINE.match(line) and line.strip() not in KEEP_LINES
    )
    document = yaml.safe_load(body)
    metadata = document["metadata"]
    if metadata.get("annotations") is None:
        metadata.pop("annotations", None)
    return actions, document


def test_every_crd_has_a_chart_copy_and_no_other() -> None:
    assert SOURCES, "no CRDs in crds/"
    assert sorted(p.name for p in CHART_CRD_DIR.glob("*.yaml")) == [p.name for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_chart_copy_equals_the_source_crd(source: Path) -> None:
    template = (CHART_CRD_DIR / source.name).read_text()
    actions, document = _strip_wrapper(template)
    assert document == yaml.safe_load(source.read_text())
    # The whole document is conditional, and so are the keep annotations, and nothing else.
    assert actions[1] == "{{- if .Values.crds.enabled }}"
    assert actions[-1] == "{{- end }}"
    assert actions[2:-1] == ["{{- if .Values.crds.keep }}", "{{- end }}"]
    kept = template.split("{{- if .Values.crds.keep }}", 1)[1].split("{{- end }}", 1)[0]
    # A new annotations map, or lines added to the one the source CRD already has.
    assert yaml.safe_load(kept) in ({"annotations": KEEP_ANNOTATIONS}, KEEP_ANNOTATIONS)


def test_sync_script_finds_nothing_to_change() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "sync-chart-crds.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
