"""The CRDs in ``crds/`` and the pydantic models in ``cftunnel_operator.api`` describe the same
API: same field names, defaults and enums, and the names module matches the CRDs' names.

Fields the models pass through as plain dicts (resources, affinity, tolerations, label
selectors, ...) are compared by name only; their inside is core/v1's business.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cftunnel_operator import api
from cftunnel_operator.api import TunnelSpec, TunnelStatus, VPCServiceSpec, VPCServiceStatus

CRD_DIR = Path(__file__).resolve().parents[3] / "crds"


def load_crd(plural: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / f"cftunnel.dev_{plural}.yaml").read_text())
    return crd


def root_schema(plural: str) -> dict[str, Any]:
    (version,) = load_crd(plural)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        remaining = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return annotation


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or as list items; None for plain values."""
    annotation = unwrap(annotation)
    if get_origin(annotation) is list:
        annotation = unwrap(get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def literal_values(annotation: Any) -> set[Any] | None:
    annotation = unwrap(annotation)
    if get_origin(annotation) is Literal:
        return set(get_args(annotation))
    return None


def crd_properties(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "array":
        schema = schema["items"]
    properties: dict[str, Any] = schema.get("properties", {})
    return properties


def wire_name(name: str, field: FieldInfo) -> str:
    return field.alias or name


Pair = tuple[str, type[BaseModel], dict[str, Any]]


def walk(path: str, model: type[BaseModel], schema: dict[str, Any]) -> Iterator[Pair]:
    """Every (path, model, schema) pair where a model describes an object of the CRD."""
    yield path, model, schema
    properties = crd_properties(schema)
    for name, field in model.model_fields.items():
        key = wire_name(name, field)
        child = nested_model(field.annotation)
        if child is not None and key in properties:
            yield from walk(f"{path}.{key}", child, properties[key])


PAIRS = [
    *walk("tunnel.spec", TunnelSpec, root_schema("tunnels")["properties"]["spec"]),
    *walk("tunnel.status", TunnelStatus, root_schema("tunnels")["properties"]["status"]),
    *walk("vpcservice.spec", VPCServiceSpec, root_schema("vpcservices")["properties"]["spec"]),
    *walk(
        "vpcservice.status", VPCServiceStatus, root_schema("vpcservices")["properties"]["status"]
    ),
]
PAIR_IDS = [path for path, _, _ in PAIRS]


@pytest.mark.parametrize(("path", "model", "schema"), PAIRS, ids=PAIR_IDS)
def test_field_names_agree(path: str, model: type[BaseModel], schema: dict[str, Any]) -> None:
    in_model = {wire_name(name, field) for name, field in model.model_fields.items()}
    in_crd = set(crd_properties(schema))
    assert in_model == in_crd, (
        f"{path}: only in model {in_model - in_crd}, only in CRD {in_crd - in_model}"
    )


@pytest.mark.parametrize(("path", "model", "schema"), PAIRS, ids=PAIR_IDS)
def test_nested_objects_agree(path: str, model: type[BaseModel], schema: dict[str, Any]) -> None:
    properties = crd_properties(schema)
    for name, field in model.model_fields.items():
        key = wire_name(name, field)
        if nested_model(field.annotation) is not None:
            assert crd_properties(properties[key]), f"{path}.{key} is a model but not a CRD object"


@pytest.mark.parametrize(("path", "model", "schema"), PAIRS, ids=PAIR_IDS)
def test_enums_agree(path: str, model: type[BaseModel], schema: dict[str, Any]) -> None:
    properties = crd_properties(schema)
    for name, field in model.model_fields.items():
        key = wire_name(name, field)
        values = literal_values(field.annotation)
        crd_enum = properties[key].get("enum")
        if values is not None or crd_enum is not None:
            assert values == set(crd_enum or []), f"{path}.{key}: {values} != {crd_enum}"


SPEC_PAIRS = [pair for pair in PAIRS if ".spec" in pair[0]]


@pytest.mark.parametrize(("path", "model", "schema"), SPEC_PAIRS, ids=[p for p, _, _ in SPEC_PAIRS])
def test_spec_defaults_agree(path: str, model: type[BaseModel], schema: dict[str, Any]) -> None:
    properties = crd_properties(schema)
    for name, field in model.model_fields.items():
        key = wire_name(name, field)
        crd_default = properties[key].get("default")
        if field.default_factory is not None:
            # Nested objects that always exist in the model are defaulted to {} in the CRD, so
            # that their own defaults apply when the user leaves them out.
            assert crd_default == {}, f"{path}.{key}: CRD default should be {{}}"
        elif field.default is PydanticUndefined:
            assert key in schema.get("required", []), f"{path}.{key}: required in model only"
        else:
            assert field.default == crd_default, (
                f"{path}.{key}: {field.default!r} != {crd_default!r}"
            )


def all_properties(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in crd_properties(schema).items():
        yield f"{path}.{key}", child
        yield from all_properties(child, f"{path}.{key}")
        if isinstance(child.get("additionalProperties"), dict):
            yield from all_properties(child["additionalProperties"], f"{path}.{key}[*]")


@pytest.mark.parametrize("plural", ["tunnels", "vpcservices"])
def test_every_field_is_documented(plural: str) -> None:
    root = root_schema(plural)
    assert root.get("description")
    undocumented = [
        path
        for path, schema in all_properties(root, plural)
        if path != f"{plural}.metadata" and not schema.get("description")
    ]
    assert undocumented == []


@pytest.mark.parametrize("plural", ["tunnels", "vpcservices"])
def test_every_validation_rule_has_a_message_naming_a_field(plural: str) -> None:
    def rules(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield from schema.get("x-kubernetes-validations", [])
        for child in crd_properties(schema).values():
            yield from rules(child)
            if child.get("type") == "array":
                yield from rules(child["items"])

    found = list(rules(root_schema(plural)))
    assert found
    for rule in found:
        assert rule.get("message", "").startswith(("spec.", "metadata.")), rule


@pytest.mark.parametrize(
    ("plural", "kind", "short_name"),
    [
        pytest.param(api.TUNNEL_PLURAL, api.TUNNEL_KIND, api.TUNNEL_SHORT_NAME, id="tunnel"),
        pytest.param(
            api.VPCSERVICE_PLURAL, api.VPCSERVICE_KIND, api.VPCSERVICE_SHORT_NAME, id="vpcservice"
        ),
    ],
)
def test_names_module_matches_the_crds(plural: str, kind: str, short_name: str) -> None:
    crd = load_crd(plural)
    assert crd["metadata"]["name"] == f"{plural}.{api.GROUP}"
    spec = crd["spec"]
    assert spec["group"] == api.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short_name]
    assert spec["names"]["categories"] == [api.CATEGORY]
    (version,) = spec["versions"]
    assert version["name"] == api.VERSION
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    assert f"{api.GROUP}/{api.VERSION}" == api.API_VERSION


@pytest.mark.parametrize("plural", ["tunnels", "vpcservices"])
def test_printer_columns_include_ready_and_age(plural: str) -> None:
    (version,) = load_crd(plural)["spec"]["versions"]
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_pod_label_rule_refuses_every_reserved_label() -> None:
    connector = root_schema("tunnels")["properties"]["spec"]["properties"]["connector"]
    (label_rule,) = connector["properties"]["podLabels"]["x-kubernetes-validations"]
    for key in api.RESERVED_LABEL_KEYS:
        assert f"'{key}'" in label_rule["rule"]
    assert f"startsWith('{api.RESERVED_LABEL_PREFIX}')" in label_rule["rule"]
    (annotation_rule,) = connector["properties"]["podAnnotations"]["x-kubernetes-validations"]
    assert f"startsWith('{api.RESERVED_ANNOTATION_PREFIX}')" in annotation_rule["rule"]
    assert set(api.selector_labels("x")) <= api.RESERVED_LABEL_KEYS | {api.LABEL_TUNNEL}
    assert api.ANNOTATION_TOKEN_HASH.startswith(api.RESERVED_ANNOTATION_PREFIX)
