"""Which Tunnel changes wake the VPCServices that use it: only those a VPCService depends on."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cftunnel_operator.handlers.vpcservice import tunnel_fingerprint
from cftunnel_operator.reconcile.vpcservice import tunnel_reference

TUNNEL: dict[str, Any] = {
    "metadata": {"name": "office", "namespace": "edge"},
    "spec": {
        "connector": {"replicas": 2, "protocol": "quic"},
        "allowedServices": {"namespaces": {"from": "Same"}},
    },
    "status": {"tunnelId": "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415", "readyReplicas": 1},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(TUNNEL)
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return body


@pytest.mark.parametrize(
    "change",
    [
        ("status.tunnelId", "0191dce4-9ab4-7fce-b660-8e5dec5172da"),
        ("status.accountId", "0123456789abcdef0123456789abcdef"),
        ("spec.connector.protocol", "http2"),
        ("spec.allowedServices", {"namespaces": {"from": "All"}}),
        ("spec.cloudflare", {"accountId": "0123456789abcdef0123456789abcdef"}),
    ],
)
def test_changes_a_vpcservice_depends_on_change_the_fingerprint(change: tuple[str, Any]) -> None:
    assert tunnel_fingerprint(changed(*change)) != tunnel_fingerprint(TUNNEL)


@pytest.mark.parametrize(
    "change",
    [
        ("status.readyReplicas", 2),
        ("status.cloudflareStatus", "healthy"),
        ("spec.connector.replicas", 3),
        ("status.conditions", [{"type": "Ready", "status": "True"}]),
    ],
)
def test_connector_and_health_changes_do_not(change: tuple[str, Any]) -> None:
    assert tunnel_fingerprint(changed(*change)) == tunnel_fingerprint(TUNNEL)


def test_a_missing_tunnel_has_no_fingerprint() -> None:
    assert tunnel_fingerprint(None) is None


def test_tunnel_reference_defaults_to_the_own_namespace() -> None:
    body = {
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"tunnelRef": {"name": "office"}},
    }
    assert tunnel_reference(body) == ("shop", "office")
    body["spec"]["tunnelRef"]["namespace"] = "edge"
    assert tunnel_reference(body) == ("edge", "office")
    assert tunnel_reference({"metadata": body["metadata"], "spec": {"tunnelId": "x"}}) is None
