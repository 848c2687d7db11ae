"""VPCService end to end: the operator process against the real apiserver and the emulator.

Each test has its own namespace and Cloudflare account. A VPCService only needs its Tunnel's
Cloudflare id (not a ready connector), so tests wait for ``status.tunnelId`` and go on.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import cloudflare
import pytest

from cftunnel_devtools.controlplane import ControlPlane
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    condition,
    get_object,
    token_secret,
    tunnel_manifest,
    vpcservice_manifest,
    wait_for,
    wait_for_condition,
)

pytestmark = pytest.mark.controlplane

TUNNELS = "tunnels.cftunnel.dev"
VPCSERVICES = "vpcservices.cftunnel.dev"
# The session operator's periodic check interval (tests/conftest.py); its timer waits for
# half of it without changes before it runs.
RESYNC_SECONDS = 8
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def create_tunnel(
    cp: ControlPlane, namespace: str, cf_account: Any, name: str = "office", **spec: Any
) -> str:
    """Apply the token Secret and a Tunnel; return its Cloudflare id once status has it."""
    apply(
        cp,
        token_secret(namespace, cf_account.token),
        tunnel_manifest(namespace, name, account_id=cf_account.account_id, **spec),
    )

    def tunnel_id() -> str | None:
        status = get_object(cp, TUNNELS, namespace, name).get("status") or {}
        return status.get("tunnelId")

    found: str = wait_for(tunnel_id, timeout=60, what=f"Tunnel {name} to get its tunnelId")
    return found


def ready(cp: ControlPlane, namespace: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for_condition(cp, VPCSERVICES, namespace, name, "Ready", timeout=timeout)


def stored_services(cf_account: Any) -> dict[str, dict[str, Any]]:
    """The account's VPC services as the emulator stores them, by id."""
    return {s["service_id"]: s for s in cf_account.admin.vpc_services(cf_account.account_id)}


def wire_fields(service: dict[str, Any]) -> dict[str, Any]:
    """A stored service without the read-only fields: what the operator sent."""
    return {k: v for k, v in service.items() if k not in ("service_id", "created_at", "updated_at")}


def service_requests(cf_account: Any, since: int) -> list[dict[str, Any]]:
    return [
        r
        for r in cf_account.admin.requests(account_id=cf_account.account_id, since_seq=since)
        if r["operation"].startswith("vpc_services.")
    ]


def events_of(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    result = cp.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


@pytest.fixture
def other_namespace(controlplane: ControlPlane, namespace: str) -> Iterator[str]:
    """A second watched namespace for cross-namespace references."""
    name = f"{namespace[:50]}-b{secrets.token_hex(2)}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def sdk(cf_account: Any) -> Iterator[cloudflare.Cloudflare]:
    client = cloudflare.Cloudflare(
        api_token=cf_account.token, base_url=cf_account.api_url, max_retries=0
    )
    with client:
        yield client


def test_each_host_form_sends_the_exact_body_with_one_call_each(
    controlplane: ControlPlane,
    namespace: str,
    cf_account: Any,
    operator: OperatorProcess,
    sdk: cloudflare.Cloudflare,
) -> None:
    tunnel_id = create_tunnel(controlplane, namespace, cf_account)
    controlplane.kubectl(
        "create", "service", "clusterip", "orders-api", "-n", namespace, "--tcp=80:8080"
    )
    ref = {"name": "office"}
    cases: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "ipv4": (
            {"tunnelRef": ref, "host": {"ipv4": "10.0.0.5"}, "ports": {"http": 8080}},
            {
                "type": "http",
                "host": {"ipv4": "10.0.0.5", "network": {"tunnel_id": tunnel_id}},
                "http_port": 8080,
            },
        ),
        "ipv6": (
            {
                "tunnelRef": ref,
                "host": {"ipv6": "fd00::5"},
                "ports": {"https": 8443},
                "tls": {"certVerificationMode": "verify_ca"},
            },
            {
                "type": "http",
                "host": {"ipv6": "fd00::5", "network": {"tunnel_id": tunnel_id}},
                "https_port": 8443,
                "tls_settings": {"cert_verification_mode": "verify_ca"},
            },
        ),
        "dual-stack": (
            {"tunnelRef": ref, "host": {"ipv4": "10.0.0.6", "ipv6": "fd00::6"}},
            {
                "type": "http",
                "host": {
                    "ipv4": "10.0.0.6",
                    "ipv6": "fd00::6",
                    "network": {"tunnel_id": tunnel_id},
                },
            },
        ),
        "hostname": (
            {
                "tunnelRef": ref,
                "type": "tcp",
                "host": {"hostname": "db.internal.example", "resolverIPs": ["10.0.0.53"]},
                "ports": {"tcp": 5432},
                "appProtocol": "postgresql",
            },
            {
                "type": "tcp",
                "host": {
                    "hostname": "db.internal.example",
                    "resolver_network": {"tunnel_id": tunnel_id, "resolver_ips": ["10.0.0.53"]},
                },
                "tcp_port": 5432,
                "app_protocol": "postgresql",
            },
        ),
        "kube-service": (
            {
                "tunnelRef": ref,
                "host": {"service": {"name": "orders-api"}},
                "ports": {"http": 80},
                "bindingName": "ORDERS_API",
            },
            {
                "type": "http",
                "host": {
                    "hostname": f"orders-api.{namespace}.svc.cluster.local",
                    "resolver_network": {"tunnel_id": tunnel_id},
                },
                "http_port": 80,
            },
        ),
    }
    since = cf_account.admin.last_seq()
    apply(
        controlplane,
        *(vpcservice_manifest(namespace, name, **spec) for name, (spec, _) in cases.items()),
    )
    objects = {name: ready(controlplane, namespace, name) for name in cases}

    # The create path: exactly one Cloudflare call per new VPCService. A periodic read may
    # follow once an object has been idle for half the interval, never before. (The log is
    # read before the SDK's reads below add to it.)
    requests = service_requests(cf_account, since)
    creates = [r for r in requests if r["operation"] == "vpc_services.create"]
    assert len(creates) == len(cases)
    first_create = min(r["time"] for r in creates)
    others = [r for r in requests if r["operation"] != "vpc_services.create"]
    assert all(
        r["operation"] == "vpc_services.get" and r["time"] - first_create >= RESYNC_SECONDS / 2
        for r in others
    ), others

    stored = stored_services(cf_account)
    assert len(stored) == len(cases)
    for name, (_, wire) in cases.items():
        status = objects[name]["status"]
        service_id = status["serviceId"]
        assert wire_fields(stored[service_id]) == {"name": f"{namespace}-{name}", **wire}, name
        assert status["tunnelId"] == tunnel_id
        assert status["accountId"] == cf_account.account_id
        binding_name = "ORDERS_API" if name == "kube-service" else name.upper().replace("-", "_")
        assert json.loads(status["binding"]) == {
            "binding": binding_name,
            "service_id": service_id,
            "remote": True,
        }
        for type_ in ("CloudflareSynced", "TunnelResolved"):
            assert condition(objects[name], type_)["status"] == "True"
        assert condition(objects[name], "Ready")["observedGeneration"] == 1
        # An independent client reads the same service back.
        read = sdk.connectivity.directory.services.get(service_id, account_id=cf_account.account_id)
        sent = read.to_dict(exclude_none=True)
        assert wire_fields(sent) == {"name": f"{namespace}-{name}", **wire}, name


def test_port_change_is_one_put_and_an_idle_operator_writes_nothing(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    create_tunnel(controlplane, namespace, cf_account)
    spec = {"tunnelRef": {"name": "office"}, "host": {"ipv4": "10.0.0.5"}, "ports": {"http": 80}}
    apply(controlplane, vpcservice_manifest(namespace, "web", **spec))
    service_id = ready(controlplane, namespace, "web")["status"]["serviceId"]

    since = cf_account.admin.last_seq()
    controlplane.kubectl(
        "patch",
        VPCSERVICES,
        "web",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"ports": {"http": 8080}}}),
    )
    wait_for(
        lambda: stored_services(cf_account)[service_id].get("http_port") == 8080,
        timeout=15,
        what="the new port on Cloudflare",
    )
    obj = wait_for_condition(controlplane, VPCSERVICES, namespace, "web", "Ready", timeout=10)
    wait_for(
        lambda: (
            get_object(controlplane, VPCSERVICES, namespace, "web")["status"].get(
                "observedGeneration"
            )
            == 2
        ),
        timeout=10,
        what="observedGeneration 2",
    )
    writes = [
        r["operation"] for r in service_requests(cf_account, since) if r["method"] in WRITE_METHODS
    ]
    assert writes == ["vpc_services.replace"]
    assert cf_account.admin.count("vpc_services.replace", account_id=cf_account.account_id) == 1

    # Idle: over a window that covers at least one periodic check of the service, nothing
    # is written to Cloudflare (by either object) or to the VPCService.
    obj = get_object(controlplane, VPCSERVICES, namespace, "web")
    version = obj["metadata"]["resourceVersion"]
    since = cf_account.admin.last_seq()
    checked = f"/vpc_services/{service_id}"

    def periodic_check_ran() -> bool:
        return any(
            r["operation"] == "vpc_services.get" and r["path"].endswith(service_id)
            for r in service_requests(cf_account, since)
        )

    wait_for(periodic_check_ran, timeout=3 * RESYNC_SECONDS, what=f"a periodic read of {checked}")
    requests = cf_account.admin.requests(account_id=cf_account.account_id, since_seq=since)
    assert [r for r in requests if r["method"] in WRITE_METHODS] == []
    after = get_object(controlplane, VPCSERVICES, namespace, "web")
    assert after["metadata"]["resourceVersion"] == version


def test_cross_namespace_reference_follows_allowed_services(
    controlplane: ControlPlane,
    namespace: str,
    other_namespace: str,
    cf_account: Any,
    operator: OperatorProcess,
) -> None:
    create_tunnel(controlplane, namespace, cf_account)
    spec = {"tunnelRef": {"name": "office", "namespace": namespace}, "host": {"ipv4": "10.0.0.7"}}
    apply(controlplane, vpcservice_manifest(other_namespace, "api", **spec))
    refused = wait_for_condition(
        controlplane,
        VPCSERVICES,
        other_namespace,
        "api",
        "TunnelResolved",
        "False",
        reason="TunnelNotAllowed",
    )
    assert other_namespace in condition(refused, "TunnelResolved")["message"]
    assert condition(refused, "Ready")["reason"] == "TunnelNotAllowed"
    assert stored_services(cf_account) == {}

    def allow(namespaces: dict[str, Any]) -> None:
        controlplane.kubectl(
            "patch",
            TUNNELS,
            "office",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"allowedServices": {"namespaces": namespaces}}}),
        )

    controlplane.kubectl("label", "namespace", other_namespace, "team=shop")
    allow({"from": "Selector", "selector": {"matchLabels": {"team": "shop"}}})
    ready(controlplane, other_namespace, "api")
    assert len(stored_services(cf_account)) == 1

    allow({"from": "Selector", "selector": {"matchLabels": {"team": "web"}}})
    wait_for_condition(
        controlplane,
        VPCSERVICES,
        other_namespace,
        "api",
        "TunnelResolved",
        "False",
        reason="TunnelNotAllowed",
    )
    allow({"from": "All", "selector": None})
    ready(controlplane, other_namespace, "api")
    assert len(stored_services(cf_account)) == 1


def test_service_created_before_its_tunnel_waits_and_http2_is_refused(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    spec = {"tunnelRef": {"name": "office"}, "host": {"hostname": "api.internal.example"}}
    apply(controlplane, vpcservice_manifest(namespace, "early", **spec))
    wait_for_condition(
        controlplane,
        VPCSERVICES,
        namespace,
        "early",
        "TunnelResolved",
        "False",
        reason="WaitingForTunnel",
    )
    tunnel_id = create_tunnel(controlplane, namespace, cf_account)
    obj = ready(controlplane, namespace, "early")
    assert obj["status"]["tunnelId"] == tunnel_id

    legacy_id = create_tunnel(
        controlplane, namespace, cf_account, "legacy", connector={"protocol": "http2"}
    )
    spec = {"tunnelRef": {"name": "legacy"}, "host": {"ipv4": "10.0.0.8"}}
    apply(controlplane, vpcservice_manifest(namespace, "late", **spec))
    refused = wait_for_condition(
        controlplane,
        VPCSERVICES,
        namespace,
        "late",
        "TunnelResolved",
        "False",
        reason="TunnelProtocolUnsupported",
    )
    assert "http2" in condition(refused, "TunnelResolved")["message"]
    tunnel = wait_for_condition(
        controlplane,
        TUNNELS,
        namespace,
        "legacy",
        "Ready",
        "False",
        reason="TunnelProtocolUnsupported",
    )
    assert f"{namespace}/late" in condition(tunnel, "Ready")["message"]
    reasons = {e["reason"] for e in events_of(controlplane, namespace, "legacy")}
    assert "TunnelProtocolUnsupported" in reasons
    assert all(
        s["host"]["network"]["tunnel_id"] != legacy_id
        for s in stored_services(cf_account).values()
        if "network" in s["host"]
    )

    controlplane.kubectl(
        "patch",
        TUNNELS,
        "legacy",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"connector": {"protocol": "quic"}}}),
    )
    obj = ready(controlplane, namespace, "late")
    assert obj["status"]["tunnelId"] == legacy_id

    def tunnel_no_longer_refuses() -> bool:
        found = condition(get_object(controlplane, TUNNELS, namespace, "legacy"), "Ready")
        return found.get("reason") != "TunnelProtocolUnsupported"

    wait_for(tunnel_no_longer_refuses, timeout=20, what="the Tunnel to drop the refusal")


def test_drift_on_cloudflare_is_put_back_and_a_recreated_tunnel_is_followed(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel_id = create_tunnel(controlplane, namespace, cf_account)
    spec = {"tunnelRef": {"name": "office"}, "host": {"ipv4": "10.0.0.9"}, "ports": {"http": 80}}
    apply(controlplane, vpcservice_manifest(namespace, "drifty", **spec))
    service_id = ready(controlplane, namespace, "drifty")["status"]["serviceId"]
    account = cf_account.account_id
    expected = wire_fields(stored_services(cf_account)[service_id])

    cf_account.admin.edit_vpc_service(account, service_id, {"http_port": 9999})
    wait_for(
        lambda: wire_fields(stored_services(cf_account)[service_id]) == expected,
        timeout=3 * RESYNC_SECONDS,
        what="the edit to be put back",
    )

    cf_account.admin.delete_vpc_service(account, service_id)

    def recreated() -> str | None:
        status = get_object(controlplane, VPCSERVICES, namespace, "drifty")["status"]
        new_id = status.get("serviceId")
        stored = stored_services(cf_account)
        if new_id != service_id and new_id in stored and len(stored) == 1:
            return str(new_id)
        return None

    new_id: str = wait_for(recreated, timeout=3 * RESYNC_SECONDS, what="the service recreated")
    assert wire_fields(stored_services(cf_account)[new_id]) == expected
    assert new_id in get_object(controlplane, VPCSERVICES, namespace, "drifty")["status"]["binding"]

    # The tunnel is deleted on Cloudflare: the Tunnel makes a new one, the service follows.
    cf_account.admin.edit_tunnel(account, tunnel_id, {"deleted_at": "2026-01-01T00:00:00Z"})

    def follows_new_tunnel() -> str | None:
        service = stored_services(cf_account).get(new_id) or {}
        current = service.get("host", {}).get("network", {}).get("tunnel_id")
        return current if current and current != tunnel_id else None

    new_tunnel = wait_for(follows_new_tunnel, timeout=4 * RESYNC_SECONDS, what="the new tunnel id")
    tunnel = get_object(controlplane, TUNNELS, namespace, "office")
    assert tunnel["status"]["tunnelId"] == new_tunnel
    obj = ready(controlplane, namespace, "drifty")
    assert obj["status"]["tunnelId"] == new_tunnel


def test_deleting_a_tunnel_waits_for_its_vpcservices_and_policies_apply(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel_id = create_tunnel(controlplane, namespace, cf_account)
    base = {"tunnelRef": {"name": "office"}, "host": {"ipv4": "10.0.0.10"}}
    apply(
        controlplane,
        vpcservice_manifest(namespace, "gone", **base),
        vpcservice_manifest(namespace, "kept", deletionPolicy="Retain", **base),
    )
    gone = ready(controlplane, namespace, "gone")["status"]["serviceId"]
    kept = ready(controlplane, namespace, "kept")["status"]["serviceId"]

    controlplane.kubectl("delete", TUNNELS, "office", "-n", namespace, "--wait=false")
    tunnel = wait_for_condition(
        controlplane,
        TUNNELS,
        namespace,
        "office",
        "Ready",
        "False",
        reason="InUseByVPCServices",
    )
    message = condition(tunnel, "Ready")["message"]
    assert f"{namespace}/gone" in message
    assert f"{namespace}/kept" in message
    events = events_of(controlplane, namespace, "office")
    assert any(
        e["reason"] == "InUseByVPCServices" and f"{namespace}/gone" in e["message"] for e in events
    )

    controlplane.kubectl("delete", VPCSERVICES, "gone", "kept", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not get_object(controlplane, TUNNELS, namespace, "office"),
        timeout=60,
        what="the Tunnel's deletion to complete",
    )
    assert not get_object(controlplane, VPCSERVICES, namespace, "gone")
    assert not get_object(controlplane, VPCSERVICES, namespace, "kept")
    stored = stored_services(cf_account)
    assert gone not in stored
    assert kept in stored
    live = [t for t in cf_account.admin.tunnels(cf_account.account_id) if not t.get("deleted_at")]
    assert tunnel_id not in [t["id"] for t in live]
