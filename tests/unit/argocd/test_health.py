"""The Argo CD health checks of Tunnel and VPCService, run as Argo CD runs them: a Lua 5.1
script (Argo CD embeds gopher-lua, a Lua 5.1) with the object in the global ``obj``, without
the ``os``, ``io`` and module libraries, returning ``{status, message}``.

The cases in each kind's ``health_test.yaml`` (Argo CD's own test format) run first; edge cases
follow. The fixtures are checked against the CRDs so that they keep the shape the operator writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from lupa import lua51

from cftunnel_operator.api.conditions import Reason

REPO = Path(__file__).resolve().parents[3]
ARGOCD = REPO / "argocd"
HEALTH = ARGOCD / "health" / "cftunnel.dev"
KINDS = ("Tunnel", "VPCService")
CRD_FILES = {
    "Tunnel": REPO / "crds" / "cftunnel.dev_tunnels.yaml",
    "VPCService": REPO / "crds" / "cftunnel.dev_vpcservices.yaml",
}

TRANSIENT = [
    "Progressing",
    "WaitingForTunnel",
    "TunnelNotReady",
    "ReplicasUnavailable",
    "CloudflareUnavailable",
    "RateLimited",
    "Deleting",
    "InUseByVPCServices",
]
NEEDS_A_PERSON = [
    "CredentialsInvalid",
    "CredentialsSecretNotFound",
    "PermissionDenied",
    "TunnelNotAllowed",
    "TunnelNotFound",
    "TunnelProtocolUnsupported",
    "InvalidSpec",
    "CloudflareError",
]


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate ``kind``'s health.lua for ``obj`` as Argo CD does."""
    lua = lua51.LuaRuntime()
    sandbox = lua.globals()
    for library in ("os", "io", "require", "dofile", "loadfile", "package", "debug"):
        sandbox[library] = None
    sandbox.obj = lua.table_from(obj, recursive=True)
    result = lua.execute((HEALTH / kind / "health.lua").read_text())
    assert result is not None, "the script must return a table"
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def argocd_cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
        for case in spec["tests"]:
            cases.append(
                pytest.param(
                    kind, case["inputPath"], case["healthStatus"], id=f"{kind}-{case['inputPath']}"
                )
            )
    return cases


def fixture(kind: str, input_path: str) -> dict[str, Any]:
    loaded = yaml.safe_load((HEALTH / kind / input_path).read_text())
    assert isinstance(loaded, dict)
    return loaded


def with_ready(
    kind: str, status: str, reason: str, message: str = "", generation: int = 1
) -> dict[str, Any]:
    """A minimal object of ``kind`` whose Ready condition is as given."""
    ready: dict[str, Any] = {"type": "Ready", "status": status, "reason": reason}
    if message:
        ready["message"] = message
    return {
        "apiVersion": "cftunnel.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "y", "generation": generation},
        "status": {"observedGeneration": generation, "conditions": [ready]},
    }


@pytest.mark.parametrize(("kind", "input_path", "expected"), argocd_cases())
def test_argocd_health_test_cases(kind: str, input_path: str, expected: dict[str, str]) -> None:
    assert run_health(kind, fixture(kind, input_path)) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_every_health_status_is_covered_by_argocd_cases(kind: str) -> None:
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
    assert {case["healthStatus"]["status"] for case in spec["tests"]} == {
        "Healthy",
        "Progressing",
        "Degraded",
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reason", TRANSIENT)
def test_ready_false_for_a_transient_reason_is_progressing(kind: str, reason: str) -> None:
    health = run_health(kind, with_ready(kind, "False", reason, f"because {reason}"))
    assert health == {"status": "Progressing", "message": f"because {reason}"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reason", NEEDS_A_PERSON)
def test_ready_false_for_any_other_reason_is_degraded(kind: str, reason: str) -> None:
    health = run_health(kind, with_ready(kind, "False", reason, f"because {reason}"))
    assert health == {"status": "Degraded", "message": f"because {reason}"}


@pytest.mark.parametrize("kind", KINDS)
def test_message_falls_back_to_the_reason(kind: str) -> None:
    assert run_health(kind, with_ready(kind, "False", "PermissionDenied")) == {
        "status": "Degraded",
        "message": "PermissionDenied",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_ready_unknown_is_progressing(kind: str) -> None:
    health = run_health(kind, with_ready(kind, "Unknown", "Progressing", "Reconciling"))
    assert health == {"status": "Progressing", "message": "Reconciling"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "status",
    [None, {}, {"observedGeneration": 1}, {"observedGeneration": 1, "conditions": []}],
    ids=["no-status", "empty-status", "no-conditions", "empty-conditions"],
)
def test_object_without_a_ready_condition_is_progressing(
    kind: str, status: dict[str, Any] | None
) -> None:
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "x", "generation": 1}}
    if status is not None:
        obj["status"] = status
    assert run_health(kind, obj)["status"] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_status_of_an_older_generation_is_progressing_even_when_it_says_degraded(
    kind: str,
) -> None:
    obj = with_ready(kind, "False", "CredentialsInvalid", "token refused", generation=4)
    obj["metadata"]["generation"] = 5
    assert run_health(kind, obj) == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 5",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_status_without_observed_generation_is_not_trusted(kind: str) -> None:
    obj = with_ready(kind, "True", "Available", "ok", generation=2)
    del obj["status"]["observedGeneration"]
    assert run_health(kind, obj)["status"] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_object_without_generation_is_judged_by_its_conditions(kind: str) -> None:
    obj = with_ready(kind, "True", "Available", "ok")
    del obj["metadata"]["generation"]
    assert run_health(kind, obj) == {"status": "Healthy", "message": "ok"}


def test_tunnel_autoscaler_conflict_is_degraded_even_when_ready() -> None:
    obj = with_ready("Tunnel", "True", "Available", "connected")
    obj["status"]["conditions"].append(
        {"type": "AutoscalerConflict", "status": "True", "reason": "ManualScale"}
    )
    assert run_health("Tunnel", obj) == {"status": "Degraded", "message": "ManualScale"}


def test_tunnel_without_autoscaler_conflict_is_healthy() -> None:
    obj = with_ready("Tunnel", "True", "Available", "connected")
    obj["status"]["conditions"].append(
        {"type": "AutoscalerConflict", "status": "False", "reason": "NoConflict"}
    )
    assert run_health("Tunnel", obj) == {"status": "Healthy", "message": "connected"}


def test_reasons_in_the_scripts_are_reasons_the_operator_uses() -> None:
    known = {reason.value for reason in Reason}
    assert set(TRANSIENT) <= known
    assert set(NEEDS_A_PERSON) <= known
    for kind in KINDS:
        script = (HEALTH / kind / "health.lua").read_text()
        table = script.split("local transientReasons = {", 1)[1].split("}", 1)[0]
        listed = {line.strip().split(" ")[0] for line in table.strip().splitlines()}
        assert listed == set(TRANSIENT), kind


def _unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields of ``value`` that the structural schema would prune (it does not list them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            return []  # a map (additionalProperties) or an opaque object
        found: list[str] = []
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key}")
            else:
                found += _unknown_fields(item, properties[key], f"{path}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [p for item in value for p in _unknown_fields(item, schema["items"], f"{path}[]")]
    return []


@pytest.mark.parametrize(("kind", "input_path", "expected"), argocd_cases())
def test_fixtures_have_the_shape_of_the_crd(
    kind: str, input_path: str, expected: dict[str, str]
) -> None:
    crd = yaml.safe_load(CRD_FILES[kind].read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    obj = fixture(kind, input_path)
    jsonschema.validate({k: v for k, v in obj.items() if k != "metadata"}, schema)
    assert _unknown_fields({k: v for k, v in obj.items() if k != "metadata"}, schema) == []


def test_argocd_cm_patch_embeds_the_scripts() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    for kind in KINDS:
        embedded = patch["data"][f"resource.customizations.health.cftunnel.dev_{kind}"]
        assert embedded == (HEALTH / kind / "health.lua").read_text(), kind


def test_application_example_orders_the_operator_before_the_objects() -> None:
    apps = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all((ARGOCD / "application.yaml").read_text())
    }
    operator, objects = apps["cftunnel-operator"], apps["edge-tunnels"]

    def wave(app: dict[str, Any]) -> int:
        return int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])

    assert wave(operator) < wave(objects)
    assert operator["spec"]["source"]["path"] == "charts/cftunnel-operator"
    for app in (operator, objects):
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    assert "SkipDryRunOnMissingResource=true" in objects["spec"]["syncPolicy"]["syncOptions"]
    ignored = {item["kind"]: item for item in objects["spec"]["ignoreDifferences"]}
    for kind in KINDS:
        assert ignored[kind]["group"] == "cftunnel.dev"
        assert "/status" in ignored[kind]["jsonPointers"]
        assert set(ignored[kind]["managedFieldsManagers"]) == {"kopf", "cftunnel-operator"}
