"""Helpers for fault tests: a Cloudflare emulator run as a process of its own (so that it can be
killed and restarted on its state file), fleets of Tunnels and VPCServices, the checks every
fault test makes, and arithmetic on the emulator's request log.

The checks follow the design's promise under injected faults: no duplicate Cloudflare object,
nothing left behind after deletion, and no token in any log line, event or status. Waiting is
done with deadlines (:func:`cftunnel_devtools.testing.wait_for`), never with fixed sleeps.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from cftunnel_devtools.controlplane import ControlPlane
from cftunnel_devtools.processes import EmulatorProcess
from cftunnel_devtools.testing import (
    condition,
    token_secret,
    tunnel_manifest,
    vpcservice_manifest,
    wait_for,
)

__all__ = [
    "TUNNELS",
    "VPCSERVICES",
    "EmulatorProcess",
    "assert_no_duplicates",
    "assert_no_secret_in",
    "delete_all",
    "events",
    "fleet",
    "live_tunnels",
    "max_in_window",
    "mismatches",
    "namespace_objects",
    "run_tokens",
    "statuses",
    "stored_services",
    "wait_all_gone",
    "wait_all_ready",
    "wait_converged",
]

TUNNELS = "tunnels.cftunnel.dev"
VPCSERVICES = "vpcservices.cftunnel.dev"
MANAGED_BY = "app.kubernetes.io/managed-by=cftunnel-operator"


def fleet(
    namespace: str,
    account_id: str,
    token: str,
    count: int,
    *,
    replicas: int = 1,
) -> list[dict[str, Any]]:
    """The token Secret, ``count`` Tunnels ``tunnel-<i>`` and as many VPCServices ``service-<i>``,
    each service on the tunnel of the same number."""
    objects: list[dict[str, Any]] = [token_secret(namespace, token)]
    for index in range(count):
        objects.append(
            tunnel_manifest(
                namespace,
                f"tunnel-{index}",
                account_id=account_id,
                connector={"replicas": replicas},
            )
        )
    for index in range(count):
        objects.append(
            vpcservice_manifest(
                namespace,
                f"service-{index}",
                tunnelRef={"name": f"tunnel-{index}"},
                host={"ipv4": f"10.0.0.{index + 1}"},
                ports={"http": 8080},
            )
        )
    return objects


def namespace_objects(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Every Tunnel and VPCService in the namespace."""
    out = cp.kubectl("get", f"{TUNNELS},{VPCSERVICES}", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def _describe(item: Mapping[str, Any]) -> str:
    ready = condition(item, "Ready")
    meta = item["metadata"]
    deleting = " (deleting)" if meta.get("deletionTimestamp") else ""
    return (
        f"{item['kind']}/{meta['name']}{deleting}: {ready.get('status')} {ready.get('reason')} "
        f"{ready.get('message')}"
    )


def wait_all_ready(cp: ControlPlane, namespace: str, count: int, *, timeout: float) -> None:
    """Wait until the namespace holds ``count`` Tunnels and VPCServices, every one Ready."""
    pending: list[str] = []

    def check() -> bool:
        items = namespace_objects(cp, namespace)
        pending[:] = [_describe(i) for i in items if condition(i, "Ready").get("status") != "True"]
        return len(items) == count and not pending

    try:
        wait_for(check, timeout=timeout, what=f"{count} objects Ready in {namespace}", interval=1)
    except Exception as error:
        raise AssertionError(f"{error}; not ready: {pending}") from None


def delete_all(cp: ControlPlane, namespace: str) -> None:
    """Delete every Tunnel and VPCService of the namespace without waiting."""
    cp.kubectl("delete", f"{TUNNELS},{VPCSERVICES}", "--all", "-n", namespace, "--wait=false")


def wait_all_gone(cp: ControlPlane, namespace: str, *, timeout: float) -> None:
    """Wait until no Tunnel or VPCService is left (every finalizer has been removed)."""
    left: list[str] = []

    def check() -> bool:
        left[:] = [_describe(i) for i in namespace_objects(cp, namespace)]
        return not left

    try:
        wait_for(check, timeout=timeout, what=f"every object gone from {namespace}", interval=1)
    except Exception as error:
        raise AssertionError(f"{error}; left: {left}") from None


def live_tunnels(admin: Any, account_id: str) -> list[dict[str, Any]]:
    """The account's tunnels that are not deleted."""
    return [t for t in admin.tunnels(account_id) if not t.get("deleted_at")]


def stored_services(admin: Any, account_id: str) -> list[dict[str, Any]]:
    """The account's Workers VPC services (a deleted service is gone from the store)."""
    services: list[dict[str, Any]] = admin.vpc_services(account_id)
    return services


def assert_no_duplicates(admin: Any, account_id: str) -> None:
    """No two live tunnels, and no two Workers VPC services, share a name."""
    for kind, names in (
        ("tunnels", Counter(t["name"] for t in live_tunnels(admin, account_id))),
        ("VPC services", Counter(s["name"] for s in stored_services(admin, account_id))),
    ):
        twice = {name: count for name, count in names.items() if count > 1}
        assert not twice, f"duplicate {kind} on Cloudflare: {twice}"


def events(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def run_tokens(cp: ControlPlane, namespace: str) -> list[str]:
    """The run tokens in the namespace's token Secrets (read them before deleting the Tunnels)."""
    out = cp.kubectl("get", "secrets", "-n", namespace, "-l", MANAGED_BY, "-o", "json").stdout
    tokens = []
    for item in json.loads(out)["items"]:
        raw = (item.get("data") or {}).get("token")
        if raw:
            tokens.append(base64.b64decode(raw).decode())
    return tokens


def statuses(cp: ControlPlane, namespace: str) -> str:
    """Every Tunnel's and VPCService's status in the namespace, as one JSON text."""
    return json.dumps([item.get("status") for item in namespace_objects(cp, namespace)])


def assert_no_secret_in(texts: Mapping[str, str], secrets: Iterable[str]) -> None:
    """No secret appears in any of the texts (operator logs, events, status)."""
    wanted = [secret for secret in secrets if secret]
    assert wanted, "no secret to look for"
    for where, text in texts.items():
        for index, secret in enumerate(wanted):
            assert secret not in text, f"secret #{index} found in {where}"


def max_in_window(moments: Iterable[float], window: float) -> int:
    """The largest number of moments inside any interval ``(t - window, t]``."""
    ordered = sorted(moments)
    best = 0
    start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def mismatches(cp: ControlPlane, namespace: str, admin: Any, account_id: str) -> list[str]:
    """Where status and Cloudflare disagree: a Tunnel whose tunnelId is not a live tunnel, a
    VPCService whose serviceId is not stored or that routes through another tunnel than its
    Tunnel's. Empty once everything has converged."""
    live = {t["id"] for t in live_tunnels(admin, account_id)}
    services = {s["service_id"]: s for s in stored_services(admin, account_id)}
    items = namespace_objects(cp, namespace)
    tunnel_ids = {
        i["metadata"]["name"]: (i.get("status") or {}).get("tunnelId")
        for i in items
        if i["kind"] == "Tunnel"
    }
    found = []
    for item in items:
        name, status = item["metadata"]["name"], item.get("status") or {}
        if item["kind"] == "Tunnel":
            if status.get("tunnelId") not in live:
                found.append(f"Tunnel {name}: {status.get('tunnelId')} is not a live tunnel")
            continue
        stored = services.get(status.get("serviceId") or "")
        if stored is None:
            found.append(f"VPCService {name}: {status.get('serviceId')} is not stored")
            continue
        host = stored.get("host") or {}
        routed = (host.get("network") or host.get("resolver_network") or {}).get("tunnel_id")
        ref = ((item.get("spec") or {}).get("tunnelRef") or {}).get("name")
        if ref is not None and routed != tunnel_ids.get(ref):
            found.append(f"VPCService {name}: routes through {routed}, not {tunnel_ids.get(ref)}")
    return found


def wait_converged(
    cp: ControlPlane, namespace: str, admin: Any, account_id: str, count: int, *, timeout: float
) -> None:
    """Wait until ``count`` objects are Ready and status agrees with Cloudflare."""
    wait_all_ready(cp, namespace, count, timeout=timeout)
    left: list[str] = []

    def check() -> bool:
        left[:] = mismatches(cp, namespace, admin, account_id)
        return not left

    try:
        wait_for(check, timeout=timeout, what="status to agree with Cloudflare", interval=1)
    except Exception as error:
        raise AssertionError(f"{error}; disagreements: {left}") from None
    wait_all_ready(cp, namespace, count, timeout=timeout)
