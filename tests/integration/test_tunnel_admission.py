"""The Tunnel CRD at admission, on a real kube-apiserver: what users get back from
``kubectl apply`` for bad objects (a message naming the field and saying what to change), the
defaults applied to good ones, and the rules that guard ``spec.tunnelId`` over time.

Invalid and valid objects are sent with server-side dry run; the transition rules need stored
objects. The namespace is not watched by any operator, so nothing else touches the objects.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
OTHER_TUNNEL_ID = "0b8e2c4e-55a1-4d4e-9a55-3c1f3b0f9d21"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def admission_namespace(controlplane: ControlPlane, crds: list[str]) -> Iterator[str]:
    name = f"adm-tunnel-{secrets.token_hex(3)}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def tunnel(spec: dict[str, Any] | None = None, name: str = "office") -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "cftunnel.dev/v1alpha1",
        "kind": "Tunnel",
        "metadata": {"name": name},
    }
    if spec is not None:
        body["spec"] = spec
    return body


def connector(**fields: Any) -> dict[str, Any]:
    return {"connector": fields}


def dry_run(
    controlplane: ControlPlane, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return controlplane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip


def apply(
    controlplane: ControlPlane, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return controlplane.kubectl(
        "apply", "--server-side", "--field-manager=admission-test", "-n", namespace, "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip


INVALID = [
    # (id, spec or whole object, field path in the error, part of the message)
    ("account-id-not-hex", {"cloudflare": {"accountId": "xyz"}},
     "spec.cloudflare.accountId", "32 lowercase hexadecimal"),
    ("account-id-upper-case", {"cloudflare": {"accountId": ACCOUNT_ID.upper()}},
     "spec.cloudflare.accountId", "32 lowercase hexadecimal"),
    ("cloudflare-empty", {"cloudflare": {}},
     "spec.cloudflare", "must set accountId, apiTokenSecretRef or both"),
    ("secret-ref-without-name", {"cloudflare": {"apiTokenSecretRef": {"key": "token"}}},
     "spec.cloudflare.apiTokenSecretRef.name", "Required value"),
    ("secret-name-invalid", {"cloudflare": {"apiTokenSecretRef": {"name": "Cloudflare_Token"}}},
     "spec.cloudflare.apiTokenSecretRef.name", "must be a Secret name"),
    ("secret-key-invalid", {"cloudflare": {"apiTokenSecretRef": {"name": "cf", "key": "a/b"}}},
     "spec.cloudflare.apiTokenSecretRef.key", "must be a Secret key"),
    ("tunnel-name-with-space", {"tunnelName": "edge office"},
     "spec.tunnelName", "letters, digits, '-', '_'"),
    ("tunnel-name-too-long", {"tunnelName": "a" * 101},
     "spec.tunnelName", "may not be more than 100"),
    ("tunnel-id-not-uuid", {"tunnelId": "office"},
     "spec.tunnelId", "lowercase UUID"),
    ("tunnel-id-upper-case", {"tunnelId": TUNNEL_ID.upper()},
     "spec.tunnelId", "lowercase UUID"),
    ("deletion-policy-unknown", {"deletionPolicy": "Orphan"},
     "spec.deletionPolicy", 'supported values: "Delete", "Retain"'),
    ("replicas-zero", connector(replicas=0),
     "spec.connector.replicas", "greater than or equal to 1"),
    ("replicas-above-cloudflare-limit", connector(replicas=26),
     "spec.connector.replicas", "less than or equal to 25"),
    ("replicas-not-a-number", connector(replicas="two"),
     "spec.connector.replicas", "must be of type integer"),
    ("image-older-than-2025.7.0", connector(image="cloudflare/cloudflared:2025.6.1"),
     "spec.connector.image", "2025.7.0 or newer"),
    ("image-from-last-year", connector(image="cloudflare/cloudflared:2024.12.2"),
     "spec.connector.image", "2025.7.0 or newer"),
    ("image-with-whitespace", connector(image="cloudflare/cloudflared :2026.1.0"),
     "spec.connector.image", "must not contain whitespace"),
    ("protocol-unknown", connector(protocol="udp"),
     "spec.connector.protocol", 'supported values: "quic", "auto", "http2"'),
    ("log-level-unknown", connector(logLevel="trace"),
     "spec.connector.logLevel", "supported values"),
    ("resources-bad-quantity", connector(resources={"requests": {"cpu": "lots"}}),
     "spec.connector.resources.requests.cpu", "should match"),
    ("toleration-operator-unknown", connector(tolerations=[{"key": "a", "operator": "Matches"}]),
     "spec.connector.tolerations[0].operator", 'supported values: "Exists", "Equal"'),
    ("spread-without-topology-key",
     connector(topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]),
     "spec.connector.topologySpreadConstraints[0].topologyKey", "Required value"),
    ("pod-labels-override-selector", connector(podLabels={"app.kubernetes.io/name": "mine"}),
     "spec.connector.podLabels", "must not set app.kubernetes.io/name"),
    ("pod-labels-reserved-prefix", connector(podLabels={"cftunnel.dev/tunnel": "other"}),
     "spec.connector.podLabels", "cftunnel.dev/* labels"),
    ("pod-label-value-too-long", connector(podLabels={"team": "x" * 64}),
     "spec.connector.podLabels.team", "may not be more than 63"),
    ("pod-annotations-reserved-prefix",
     connector(podAnnotations={"cftunnel.dev/token-hash": "x"}),
     "spec.connector.podAnnotations", "must not set cftunnel.dev/* annotations"),
    ("allowed-from-unknown", {"allowedServices": {"namespaces": {"from": "Any"}}},
     "spec.allowedServices.namespaces.from", 'supported values: "Same", "All", "Selector"'),
    ("selector-missing", {"allowedServices": {"namespaces": {"from": "Selector"}}},
     "spec.allowedServices.namespaces.selector", "required when from is Selector"),
    ("selector-without-from-selector",
     {"allowedServices": {"namespaces": {"from": "All", "selector": {"matchLabels": {"a": "b"}}}}},
     "spec.allowedServices.namespaces.selector", "only used with from: Selector"),
    ("selector-in-without-values",
     {"allowedServices": {"namespaces": {"from": "Selector", "selector": {
         "matchExpressions": [{"key": "team", "operator": "In"}]}}}},
     "spec.allowedServices.namespaces.selector.matchExpressions[0].values",
     "values must be non-empty for operators In and NotIn"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [pytest.param(spec, field, message, id=case) for case, spec, field, message in INVALID],
)
def test_invalid_tunnel_is_refused_naming_the_field(
    controlplane: ControlPlane,
    admission_namespace: str,
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    result = dry_run(controlplane, admission_namespace, tunnel(spec))
    assert result.returncode != 0, f"accepted: {spec}"
    assert f"{field}:" in result.stderr
    assert message in result.stderr


def test_name_longer_than_a_label_value_is_refused(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    result = dry_run(controlplane, admission_namespace, tunnel({}, name="a" * 64))
    assert result.returncode != 0
    assert "metadata.name must be at most 63 characters" in result.stderr


def test_empty_spec_gets_the_defaults(controlplane: ControlPlane, admission_namespace: str) -> None:
    result = dry_run(controlplane, admission_namespace, tunnel())
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec == {
        "connector": {"replicas": 2, "protocol": "quic", "logLevel": "info"},
        "allowedServices": {"namespaces": {"from": "Same"}},
    }


FULL_SPEC: dict[str, Any] = {
    "cloudflare": {"accountId": ACCOUNT_ID, "apiTokenSecretRef": {"name": "cloudflare-api-token"}},
    "tunnelName": "edge-office",
    "tunnelId": TUNNEL_ID,
    "deletionPolicy": "Retain",
    "connector": {
        "replicas": 25,
        "image": "docker.io/cloudflare/cloudflared:2026.8.2",
        "protocol": "http2",
        "logLevel": "warn",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "matchLabelKeys": ["pod-template-hash"],
            }
        ],
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "edge", "app.kubernetes.io/part-of": "edge"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    "allowedServices": {
        "namespaces": {
            "from": "Selector",
            "selector": {
                "matchLabels": {"tunnel-access": "edge"},
                "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
            },
        }
    },
}


def test_full_spec_is_accepted_and_kept(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    result = dry_run(controlplane, admission_namespace, tunnel(FULL_SPEC))
    assert result.returncode == 0, result.stderr
    expected = copy.deepcopy(FULL_SPEC)
    expected["cloudflare"]["apiTokenSecretRef"]["key"] = "token"
    assert json.loads(result.stdout)["spec"] == expected


@pytest.mark.parametrize(
    "image",
    [
        "cloudflare/cloudflared:2025.7.0",
        "cloudflare/cloudflared:2025.11.1",
        "registry.example:5000/mirror/cloudflared:2026.8.2",
        "cloudflare/cloudflared:latest",
        "cloudflare/cloudflared:2024.12.0-custom",
        "cloudflare/cloudflared@sha256:" + "0" * 64,
        "registry.example:5000/cloudflared",
    ],
)
def test_image_floor_accepts_new_releases_digests_and_other_tags(
    controlplane: ControlPlane, admission_namespace: str, image: str
) -> None:
    result = dry_run(controlplane, admission_namespace, tunnel(connector(image=image)))
    assert result.returncode == 0, result.stderr


def test_secret_ref_alone_is_enough_and_key_defaults_to_token(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    spec = {"cloudflare": {"apiTokenSecretRef": {"name": "cf"}}}
    result = dry_run(controlplane, admission_namespace, tunnel(spec))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["cloudflare"] == {
        "apiTokenSecretRef": {"name": "cf", "key": "token"}
    }


# -- spec.tunnelId over time (stored objects) -----------------------------------------------------


def test_tunnel_id_cannot_change_or_be_removed(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    name = "adopted"
    created = apply(controlplane, admission_namespace, tunnel({"tunnelId": TUNNEL_ID}, name))
    assert created.returncode == 0, created.stderr

    changed = apply(controlplane, admission_namespace, tunnel({"tunnelId": OTHER_TUNNEL_ID}, name))
    assert changed.returncode != 0
    assert "spec.tunnelId: Forbidden: spec.tunnelId is immutable once set" in changed.stderr

    cleared = apply(controlplane, admission_namespace, tunnel({"tunnelId": ""}, name))
    assert cleared.returncode != 0
    assert "spec.tunnelId cannot be removed or cleared once set" in cleared.stderr

    removed = controlplane.kubectl(
        "patch", "tunnel", name, "-n", admission_namespace, "--type=json",
        "-p", '[{"op": "remove", "path": "/spec/tunnelId"}]', check=False,
    )  # fmt: skip
    assert removed.returncode != 0
    assert "spec.tunnelId cannot be removed or cleared once set" in removed.stderr

    other_change = apply(
        controlplane,
        admission_namespace,
        tunnel({"tunnelId": TUNNEL_ID, **connector(replicas=3)}, name),
    )
    assert other_change.returncode == 0, other_change.stderr


def test_tunnel_id_can_be_set_later_only_to_the_tunnel_in_status(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    name = "created"
    assert apply(controlplane, admission_namespace, tunnel({}, name)).returncode == 0
    controlplane.kubectl(
        "patch", "tunnel", name, "-n", admission_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"tunnelId": TUNNEL_ID}}),
    )  # fmt: skip

    other = apply(controlplane, admission_namespace, tunnel({"tunnelId": OTHER_TUNNEL_ID}, name))
    assert other.returncode != 0
    assert "spec.tunnelId may only name the tunnel this object already manages" in other.stderr

    same = apply(controlplane, admission_namespace, tunnel({"tunnelId": TUNNEL_ID}, name))
    assert same.returncode == 0, same.stderr


def test_status_keeps_what_the_operator_writes(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    name = "with-status"
    assert apply(controlplane, admission_namespace, tunnel({}, name)).returncode == 0
    status = {
        "observedGeneration": 1,
        "tunnelId": TUNNEL_ID,
        "tunnelName": f"{admission_namespace}-{name}",
        "accountId": ACCOUNT_ID,
        "deletionPolicy": "Delete",
        "cloudflareStatus": "healthy",
        "connectors": 2,
        "replicas": 2,
        "readyReplicas": 1,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ReplicasUnavailable",
             "message": "1 of 2 replicas ready", "lastTransitionTime": "2026-01-02T03:04:05Z",
             "observedGeneration": 1},
            {"type": "AutoscalerConflict", "status": "False", "reason": "NoConflict",
             "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1},
        ],
    }  # fmt: skip
    controlplane.kubectl(
        "patch", "tunnel", name, "-n", admission_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    stored = json.loads(
        controlplane.kubectl("get", "tunnel", name, "-n", admission_namespace, "-o", "json").stdout
    )
    assert stored["status"] == status

    table = controlplane.kubectl("get", "cftun", name, "-n", admission_namespace).stdout
    header, row = table.splitlines()
    assert header.split() == [
        "NAME",
        "TUNNEL",
        "ID",
        "CLOUDFLARE",
        "REPLICAS",
        "AVAILABLE",
        "READY",
        "AGE",
    ]
    assert row.split()[:6] == [name, TUNNEL_ID, "healthy", "2", "1", "False"]


def test_tunnels_are_in_the_cloudflare_category_and_explained(controlplane: ControlPlane) -> None:
    resources = controlplane.kubectl(
        "api-resources", "--categories=cloudflare", "-o", "name"
    ).stdout
    assert set(resources.split()) == {"tunnels.cftunnel.dev", "vpcservices.cftunnel.dev"}
    explained = controlplane.kubectl("explain", "tunnel.spec.connector.replicas").stdout
    assert "1 to 25" in explained
