"""TunnelSpec and TunnelStatus: parsing the Kubernetes shape, defaults, and the derived rules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cftunnel_operator.api import (
    AllowedNamespaces,
    AllowedServices,
    Condition,
    TunnelSpec,
    TunnelStatus,
    cloudflared_release,
    label_selector_matches,
    meets_cloudflared_floor,
)

# What the apiserver stores for `spec: {}` after defaulting.
DEFAULTED_EMPTY_SPEC = {
    "connector": {"replicas": 2, "protocol": "quic", "logLevel": "info"},
    "allowedServices": {"namespaces": {"from": "Same"}},
}

FULL_SPEC: dict[str, Any] = {
    "cloudflare": {
        "accountId": "0123456789abcdef0123456789abcdef",
        "apiTokenSecretRef": {"name": "cloudflare-api-token", "key": "token"},
    },
    "tunnelName": "edge-office",
    "tunnelId": "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415",
    "deletionPolicy": "Delete",
    "connector": {
        "replicas": 3,
        "image": "docker.io/cloudflare/cloudflared:2026.8.2",
        "protocol": "auto",
        "logLevel": "warn",
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": 256}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
            }
        ],
        "priorityClassName": "system-cluster-critical",
        "podLabels": {"team": "edge"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
    },
    "allowedServices": {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"tunnel-access": "edge"}}}
    },
}


class ReadOnlyMapping(Mapping[str, Any]):
    """Stands in for Kopf's read-only spec views."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return ReadOnlyMapping(value) if isinstance(value, Mapping) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_empty_spec_gets_the_crd_defaults() -> None:
    spec = TunnelSpec.from_body({})
    assert spec.connector.replicas == 2
    assert spec.connector.protocol == "quic"
    assert spec.connector.log_level == "info"
    assert spec.allowed_services.namespaces.from_ == "Same"
    assert spec.to_body() == DEFAULTED_EMPTY_SPEC


def test_none_body_is_an_empty_spec() -> None:
    assert TunnelSpec.from_body(None) == TunnelSpec.from_body({})


def test_defaulted_spec_round_trips() -> None:
    assert TunnelSpec.from_body(DEFAULTED_EMPTY_SPEC).to_body() == DEFAULTED_EMPTY_SPEC


def test_full_spec_round_trips_with_camel_case_keys() -> None:
    assert TunnelSpec.from_body(FULL_SPEC).to_body() == FULL_SPEC


def test_full_spec_fields_by_python_name() -> None:
    spec = TunnelSpec.from_body(FULL_SPEC)
    assert spec.cloudflare is not None
    assert spec.cloudflare.account_id == "0123456789abcdef0123456789abcdef"
    assert spec.cloudflare.api_token_secret_ref is not None
    assert spec.cloudflare.api_token_secret_ref.name == "cloudflare-api-token"
    assert spec.tunnel_name == "edge-office"
    assert spec.connector.replicas == 3
    assert spec.connector.node_selector == {"kubernetes.io/os": "linux"}
    assert spec.connector.topology_spread_constraints is not None
    assert spec.connector.pod_labels == {"team": "edge"}
    assert spec.allowed_services.namespaces.selector == {"matchLabels": {"tunnel-access": "edge"}}


def test_kopf_style_read_only_mappings_are_accepted() -> None:
    assert TunnelSpec.from_body(ReadOnlyMapping(FULL_SPEC)).to_body() == FULL_SPEC


def test_models_can_be_built_by_python_name() -> None:
    allowed = AllowedServices(namespaces=AllowedNamespaces(from_="All"))
    spec = TunnelSpec(tunnel_name="x", allowed_services=allowed)
    assert spec.to_body()["allowedServices"] == {"namespaces": {"from": "All"}}


def test_secret_key_defaults_to_token() -> None:
    spec = TunnelSpec.from_body({"cloudflare": {"apiTokenSecretRef": {"name": "cf"}}})
    assert spec.cloudflare is not None
    assert spec.cloudflare.api_token_secret_ref is not None
    assert spec.cloudflare.api_token_secret_ref.key == "token"


def test_unknown_keys_are_ignored() -> None:
    assert TunnelSpec.from_body({"futureField": 1}).to_body() == DEFAULTED_EMPTY_SPEC


def test_empty_tunnel_id_means_create() -> None:
    spec = TunnelSpec.from_body({"tunnelId": ""})
    assert spec.tunnel_id is None
    assert not spec.adopts_existing_tunnel
    assert TunnelSpec.from_body(FULL_SPEC).adopts_existing_tunnel


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"connector": {"replicas": 0}}, "replicas", id="replicas-below-1"),
        pytest.param({"connector": {"replicas": 26}}, "replicas", id="replicas-above-25"),
        pytest.param({"connector": {"protocol": "udp"}}, "protocol", id="unknown-protocol"),
        pytest.param({"deletionPolicy": "Orphan"}, "deletionPolicy", id="unknown-policy"),
        pytest.param({"allowedServices": {"namespaces": {"from": "Any"}}}, "from", id="from"),
    ],
)
def test_invalid_values_are_refused(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TunnelSpec.from_body(body)


@pytest.mark.parametrize(
    ("policy", "adopted", "expected"),
    [
        pytest.param(None, False, "Delete", id="created-defaults-to-delete"),
        pytest.param(None, True, "Retain", id="adopted-defaults-to-retain"),
        pytest.param("Retain", False, "Retain", id="explicit-retain"),
        pytest.param("Delete", True, "Delete", id="explicit-delete-of-adopted"),
    ],
)
def test_effective_deletion_policy(policy: str | None, adopted: bool, expected: str) -> None:
    spec = TunnelSpec.from_body({"deletionPolicy": policy} if policy else {})
    assert spec.effective_deletion_policy(adopted=adopted) == expected


def test_effective_tunnel_name() -> None:
    default = TunnelSpec.from_body({})
    assert default.effective_tunnel_name(namespace="edge", name="office") == "edge-office"
    assert (
        default.effective_tunnel_name(namespace="edge", name="office", prefix="eu1-")
        == "eu1-edge-office"
    )
    named = TunnelSpec.from_body({"tunnelName": "custom"})
    assert named.effective_tunnel_name(namespace="edge", name="office", prefix="eu1-") == "custom"


@pytest.mark.parametrize(
    ("namespaces", "service_namespace", "labels", "allowed"),
    [
        pytest.param({}, "edge", {}, True, id="same-default-same-namespace"),
        pytest.param({}, "shop", {}, False, id="same-default-other-namespace"),
        pytest.param({"from": "All"}, "shop", {}, True, id="all"),
        pytest.param(
            {"from": "Selector", "selector": {"matchLabels": {"access": "edge"}}},
            "shop",
            {"access": "edge"},
            True,
            id="selector-match",
        ),
        pytest.param(
            {"from": "Selector", "selector": {"matchLabels": {"access": "edge"}}},
            "edge",
            {},
            False,
            id="selector-applies-to-own-namespace-too",
        ),
        pytest.param({"from": "Selector", "selector": {}}, "shop", {}, True, id="empty-selector"),
    ],
)
def test_allowed_services(
    namespaces: dict[str, Any], service_namespace: str, labels: dict[str, str], allowed: bool
) -> None:
    spec = TunnelSpec.from_body({"allowedServices": {"namespaces": namespaces}})
    result = spec.allowed_services.namespaces.allows(
        tunnel_namespace="edge", service_namespace=service_namespace, namespace_labels=labels
    )
    assert result is allowed


@pytest.mark.parametrize(
    ("expressions", "labels", "matches"),
    [
        pytest.param(
            [{"key": "env", "operator": "In", "values": ["a", "b"]}], {"env": "b"}, True, id="in"
        ),
        pytest.param(
            [{"key": "env", "operator": "In", "values": ["a"]}], {}, False, id="in-missing"
        ),
        pytest.param(
            [{"key": "env", "operator": "NotIn", "values": ["a"]}], {}, True, id="notin-missing"
        ),
        pytest.param(
            [{"key": "env", "operator": "NotIn", "values": ["a"]}], {"env": "a"}, False, id="notin"
        ),
        pytest.param([{"key": "env", "operator": "Exists"}], {"env": ""}, True, id="exists"),
        pytest.param(
            [{"key": "env", "operator": "DoesNotExist"}], {"env": "a"}, False, id="doesnotexist"
        ),
    ],
)
def test_label_selector_expressions(
    expressions: list[dict[str, Any]], labels: dict[str, str], matches: bool
) -> None:
    assert label_selector_matches({"matchExpressions": expressions}, labels) is matches


@pytest.mark.parametrize(
    ("image", "release", "accepted"),
    [
        pytest.param("cloudflare/cloudflared:2025.7.0", (2025, 7, 0), True, id="floor"),
        pytest.param("cloudflare/cloudflared:2025.10.1", (2025, 10, 1), True, id="two-digit-month"),
        pytest.param("localhost:5000/cloudflared:2026.8.2", (2026, 8, 2), True, id="registry-port"),
        pytest.param("cloudflare/cloudflared:2025.6.9", (2025, 6, 9), False, id="too-old"),
        pytest.param("cloudflare/cloudflared:2024.12.0", (2024, 12, 0), False, id="last-year"),
        pytest.param("cloudflare/cloudflared:latest", None, True, id="non-release-tag"),
        pytest.param("cloudflare/cloudflared@sha256:" + "a" * 64, None, True, id="digest"),
        pytest.param("localhost:5000/cloudflared", None, True, id="no-tag"),
    ],
)
def test_cloudflared_release_floor(
    image: str, release: tuple[int, int, int] | None, accepted: bool
) -> None:
    assert cloudflared_release(image) == release
    assert meets_cloudflared_floor(image) is accepted


def test_status_round_trips() -> None:
    body = {
        "observedGeneration": 3,
        "tunnelId": "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415",
        "tunnelName": "edge-office",
        "accountId": "0123456789abcdef0123456789abcdef",
        "deletionPolicy": "Delete",
        "cloudflareStatus": "healthy",
        "connectors": 2,
        "replicas": 2,
        "readyReplicas": 2,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 3},
        ],
    }  # fmt: skip
    assert TunnelStatus.from_body(body).to_body() == body


def test_status_keeps_cloudflare_statuses_it_does_not_know() -> None:
    assert TunnelStatus.from_body({"cloudflareStatus": "sleepy"}).cloudflare_status == "sleepy"


def test_status_with_condition() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    status = TunnelStatus().with_condition(Condition(type="Ready", status="False"), now)
    assert status.conditions[0].last_transition_time == "2026-01-02T00:00:00Z"
    assert TunnelStatus().conditions == []
