"""values.schema.json accepts the chart's defaults, refuses keys that values.yaml does not
define at every level the chart owns, and refuses values the operator would refuse at start-up."""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import jsonschema
import pytest

FREE_FORM = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "nodeSelector",
    "affinity",
    "podAnnotations",
    "podLabels",
    "serviceAccount.annotations",
    "metrics.service.annotations",
    "metrics.serviceMonitor.labels",
}


def _errors(schema: dict[str, Any], values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [error.message for error in validator.iter_errors(values)]


def _with(values: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(values)
    *parents, last = key.split(".")
    node = changed
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


def _schema_at(schema: dict[str, Any], key: str) -> dict[str, Any]:
    node = schema
    for part in key.split("."):
        node = node["properties"][part]
    return node


def _sections(chart_readme: ModuleType) -> list[str]:
    """Every mapping of values.yaml that the chart defines key by key (the root included)."""
    found = {""}
    for doc in chart_readme.value_docs():
        parts = doc.key.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return sorted(found)


def test_schema_is_draft_07_and_accepts_the_defaults(
    values_schema: dict[str, Any], values: dict[str, Any]
) -> None:
    assert values_schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(values_schema)
    assert _errors(values_schema, values) == []


def test_every_value_has_a_schema(chart_readme: ModuleType, values_schema: dict[str, Any]) -> None:
    for doc in chart_readme.value_docs():
        assert _schema_at(values_schema, doc.key), doc.key


def test_schema_defines_no_value_that_values_yaml_lacks(
    chart_readme: ModuleType, values_schema: dict[str, Any]
) -> None:
    documented = {doc.key for doc in chart_readme.value_docs()} | set(_sections(chart_readme))

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, child in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            if key != "global":  # Helm passes a parent chart's globals to every subchart
                assert key in documented, f"the schema defines {key}, values.yaml does not"
            if key not in FREE_FORM:
                walk(child, f"{key}.")

    walk(values_schema, "")


def test_unknown_keys_are_refused_at_every_level(
    chart_readme: ModuleType, values_schema: dict[str, Any], values: dict[str, Any]
) -> None:
    for section in _sections(chart_readme):
        schema = _schema_at(values_schema, section) if section else values_schema
        assert schema.get("additionalProperties") is False, section or "<root>"
        key = f"{section}.notAValue" if section else "notAValue"
        assert any("notAValue" in e for e in _errors(values_schema, _with(values, key, 1))), key


def test_free_form_maps_take_any_keys(
    values_schema: dict[str, Any], values: dict[str, Any]
) -> None:
    changed = _with(values, "resources", {"limits": {"cpu": "1"}, "claims": [{"name": "x"}]})
    changed = _with(changed, "podAnnotations", {"example.com/anything": "yes"})
    changed = _with(changed, "affinity", {"nodeAffinity": {}})
    assert _errors(values_schema, changed) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("guard.mode", "Block"),
        ("logFormat", "xml"),
        ("logLevel", "verbose"),
        ("cloudflare.accountId", "not-an-account"),
        ("cloudflare.apiUrl", "api.cloudflare.com"),
        ("watchNamespaces", ["t-*"]),
        ("watchNamespaces", ["edge", "edge"]),
        ("rateLimit", 0),
        ("rateWindowSeconds", 0),
        ("resyncSeconds", 0.5),
        ("metrics.port", 70000),
        ("health.port", "8080"),
        ("image.digest", "sha256:short"),
        ("image.pullPolicy", "Sometimes"),
        ("tunnelNamePrefix", "bad prefix"),
        ("networkPolicy.apiServer.cidrs", []),
        ("networkPolicy.cloudflareApi.cidrs", ["everywhere"]),
        ("metrics.serviceMonitor.interval", "1 minute"),
        ("extraEnv", [{"value": "no name"}]),
    ],
)
def test_bad_values_are_refused(
    values_schema: dict[str, Any], values: dict[str, Any], key: str, value: Any
) -> None:
    assert _errors(values_schema, _with(values, key, value)), f"{key}={value!r} was accepted"
