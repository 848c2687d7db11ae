"""Tunnel end to end: the operator process against the real apiserver and the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    condition,
    get_object,
    token_secret,
    tunnel_manifest,
    wait_for,
    wait_for_condition,
)

pytestmark = pytest.mark.controlplane

TUNNELS = "tunnels.cftunnel.dev"


def live_tunnels(cf_account: Any) -> list[dict[str, Any]]:
    tunnels = cf_account.admin.tunnels(cf_account.account_id)
    return [t for t in tunnels if not t.get("deleted_at")]


def test_tunnel_becomes_ready_with_connector_on_kwok_nodes(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    controlplane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    apply(
        controlplane,
        token_secret(namespace, cf_account.token),
        tunnel_manifest(namespace, "office", account_id=cf_account.account_id),
    )
    tunnel = wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=90)
    status = tunnel["status"]
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["tunnelName"] == f"{namespace}-office"
    assert [t["id"] for t in live_tunnels(cf_account)] == [status["tunnelId"]]
    cf_account.admin.connect(cf_account.account_id, status["tunnelId"], count=2)

    def healthy() -> bool:
        obj = get_object(controlplane, TUNNELS, namespace, "office")
        return obj["status"].get("cloudflareStatus") == "healthy" and obj["status"].get("connectors") == 2

    wait_for(healthy, timeout=60, what="cloudflareStatus healthy")
