"""Helpers for integration tests, the demo and the benchmark: build manifests, apply them with
kubectl, read objects back and wait on conditions with a deadline (never a fixed sleep)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from cftunnel_devtools.controlplane import ControlPlane, wait_until

__all__ = [
    "apply",
    "condition",
    "get_object",
    "token_secret",
    "tunnel_manifest",
    "vpcservice_manifest",
    "wait_for",
    "wait_for_condition",
]

GROUP = "cftunnel.dev"
API_VERSION = "cftunnel.dev/v1alpha1"


def apply(cp: ControlPlane, *objects: Mapping[str, Any], server_side: bool = False) -> None:
    """``kubectl apply`` the objects (as one List)."""
    doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    args = ["apply", "-f", "-"]
    if server_side:
        args += ["--server-side", "--field-manager=test"]
    cp.kubectl(*args, input=json.dumps(doc))


def token_secret(
    namespace: str,
    token: str,
    *,
    name: str = "cloudflare-api-token",
    key: str = "token",
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {key: base64.b64encode(token.encode()).decode()},
    }


def tunnel_manifest(
    namespace: str,
    name: str,
    *,
    account_id: str | None = None,
    secret: str | None = "cloudflare-api-token",  # noqa: S107 - a Secret name
    key: str = "token",
    **spec: Any,
) -> dict[str, Any]:
    body_spec: dict[str, Any] = dict(spec)
    cloudflare: dict[str, Any] = {}
    if account_id:
        cloudflare["accountId"] = account_id
    if secret:
        cloudflare["apiTokenSecretRef"] = {"name": secret, "key": key}
    if cloudflare:
        body_spec["cloudflare"] = cloudflare
    return {
        "apiVersion": API_VERSION,
        "kind": "Tunnel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body_spec,
    }


def vpcservice_manifest(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "VPCService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


def get_object(cp: ControlPlane, resource: str, namespace: str, name: str) -> dict[str, Any]:
    """The object as a dict, or an empty dict when it does not exist."""
    result = cp.kubectl("get", resource, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float = 60,
    what: str = "a condition",
    interval: float = 0.3,
) -> Any:
    """Poll ``check`` until it returns something truthy; return that value."""
    found: list[Any] = []

    def probe() -> bool:
        value = check()
        if value:
            found.append(value)
            return True
        return False

    wait_until(probe, timeout=timeout, what=what, interval=interval)
    return found[-1]


def wait_for_condition(
    cp: ControlPlane,
    resource: str,
    namespace: str,
    name: str,
    type_: str,
    status: str = "True",
    *,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until the object's condition has the status (and reason); return the object."""
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = get_object(cp, resource, namespace, name)
        found = condition(last, type_)
        if found.get("status") == status and (reason is None or found.get("reason") == reason):
            return last
        return None

    try:
        result: dict[str, Any] = wait_for(
            check, timeout=timeout, what=f"{resource}/{name} {type_}={status} {reason or ''}"
        )
    except Exception as error:
        raise AssertionError(f"{error}; last status: {json.dumps(last.get('status'))}") from None
    return result
