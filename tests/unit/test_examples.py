"""Every manifest in ``examples/`` is valid and self-contained, without a cluster.

* Tunnel and VPCService objects validate against the CRDs' ``openAPIV3Schema`` (converted to
  JSON Schema: unknown fields refused as ``kubectl apply`` refuses them, types, enums, ranges,
  patterns) and parse with the operator's own spec models (which check what the CRDs check with
  CEL rules: exactly one host form, tunnelRef or tunnelId, ports by type).
* Each file creates the namespaces its objects live in, every ``tunnelRef`` names a Tunnel of
  the same file whose ``allowedServices`` admits the VPCService's namespace, and every
  ``service`` host names a Service of the same file.
* ``examples/demo`` is what ``make demo`` needs: one namespace, one Tunnel, three VPCServices,
  no credentials in any spec.

The CEL rules themselves are evaluated by a real kube-apiserver in
``tests/integration/test_examples_server.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cftunnel_operator.api import TunnelSpec, VPCServiceSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CRD_DIR = REPO / "crds"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))
CLUSTER_SCOPED = {"Namespace"}


def convert(schema: dict[str, Any]) -> dict[str, Any]:
    """A structural OpenAPI v3 schema of a CRD as JSON Schema (draft 4, OpenAPI's base).

    Objects with ``properties`` refuse other keys, as strict field validation does; maps
    (``additionalProperties``) and ``x-kubernetes-preserve-unknown-fields`` allow them.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def crd_validators() -> dict[str, jsonschema.protocols.Validator]:
    validators = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = crd["spec"]["versions"]
        api_version = f"{crd['spec']['group']}/{version['name']}"
        schema = convert(version["schema"]["openAPIV3Schema"])
        jsonschema.Draft4Validator.check_schema(schema)
        validators[f"{api_version}/{crd['spec']['names']['kind']}"] = jsonschema.Draft4Validator(
            schema
        )
    return validators


VALIDATORS = crd_validators()


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def cftunnel_objects() -> Iterator[Any]:
    for path in EXAMPLE_FILES:
        for doc in documents(path):
            if doc["apiVersion"].startswith("cftunnel.dev/"):
                yield pytest.param(
                    doc, id=f"{path.relative_to(EXAMPLES)}:{doc['metadata']['name']}"
                )


def schema_errors(obj: dict[str, Any]) -> list[str]:
    validator = VALIDATORS[f"{obj['apiVersion']}/{obj['kind']}"]
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]


def test_there_are_examples_for_the_common_cases() -> None:
    names = {path.name for path in EXAMPLE_FILES}
    assert {
        "postgres-over-tcp.yaml",
        "internal-http-api.yaml",
        "kubernetes-service.yaml",
        "adopt-existing-tunnel.yaml",
        "shared-tunnel.yaml",
    } <= names
    assert (EXAMPLES / "README.md").is_file()
    documented = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLE_FILES:
        assert str(path.relative_to(EXAMPLES)) in documented, path


@pytest.mark.parametrize("obj", list(cftunnel_objects()))
def test_example_matches_the_crd_schema_and_the_spec_model(obj: dict[str, Any]) -> None:
    assert schema_errors(obj) == []
    model = TunnelSpec if obj["kind"] == "Tunnel" else VPCServiceSpec
    model.from_body(obj["spec"])


def test_the_converted_schema_refuses_what_the_apiserver_refuses() -> None:
    """A converter that accepted everything would make the test above pass for nothing."""
    [obj] = [d for d in documents(EXAMPLES / "postgres-over-tcp.yaml") if d["kind"] == "VPCService"]
    bad = [copy.deepcopy(obj) for _ in range(4)]
    bad[0]["spec"]["hostName"] = "typo.example"  # unknown field
    bad[1]["spec"]["type"] = "udp"  # not in the enum
    bad[2]["spec"]["ports"]["tcp"] = 70000  # out of range
    bad[3]["spec"]["tunnelRef"] = "databases"  # wrong type
    for broken in bad:
        assert schema_errors(broken), broken["spec"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_file_is_self_contained(path: Path) -> None:
    docs = documents(path)
    namespaces = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Namespace"}
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") in namespaces, doc["metadata"]
    # Namespaces come before what lives in them, so one `kubectl apply -f` works.
    first_other = next(i for i, d in enumerate(docs) if d["kind"] != "Namespace")
    assert all(d["kind"] != "Namespace" for d in docs[first_other:])

    tunnels = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): TunnelSpec.from_body(d["spec"])
        for d in docs
        if d["kind"] == "Tunnel"
    }
    services = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Service"
    }
    for doc in docs:
        if doc["kind"] != "VPCService":
            continue
        own = doc["metadata"]["namespace"]
        spec = VPCServiceSpec.from_body(doc["spec"])
        if spec.tunnel_ref is not None:
            key = (spec.tunnel_ref.namespace_or(own), spec.tunnel_ref.name)
            assert key in tunnels, f"{doc['metadata']['name']}: no Tunnel {key} in {path.name}"
            labels = namespaces[own]["metadata"].get("labels") or {}
            assert tunnels[key].allowed_services.namespaces.allows(
                tunnel_namespace=key[0], service_namespace=own, namespace_labels=labels
            ), f"Tunnel {key} does not admit VPCServices from {own}"
        if spec.host.service is not None:
            target = (spec.host.service.namespace_or(own), spec.host.service.name)
            assert target in services, f"no Service {target} in {path.name}"


def test_demo_is_one_namespace_with_a_tunnel_and_three_services_and_no_credentials() -> None:
    docs = [d for path in sorted((EXAMPLES / "demo").glob("*.yaml")) for d in documents(path)]
    kinds = sorted(d["kind"] for d in docs if d["apiVersion"].startswith("cftunnel.dev/"))
    assert kinds == ["Tunnel", "VPCService", "VPCService", "VPCService"]
    assert len({d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}) == 1
    for doc in docs:
        assert "cloudflare" not in (doc.get("spec") or {}), doc["metadata"]["name"]
    forms = {
        VPCServiceSpec.from_body(d["spec"]).host.form for d in docs if d["kind"] == "VPCService"
    }
    assert forms == {"hostname", "ip", "service"}
