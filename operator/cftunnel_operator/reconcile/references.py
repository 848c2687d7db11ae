"""Which VPCServices use a Tunnel (by ``tunnelRef`` or by its Cloudflare ``tunnelId``).

A Tunnel with ``deletionPolicy: Delete`` waits for them before it deletes the Cloudflare
tunnel, so that no Workers VPC service is left pointing at a tunnel that no longer exists.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from cftunnel_operator.kube.client import KubeError, resource_type
from cftunnel_operator.reconcile.context import ReconcileContext

__all__ = ["services_using_tunnel"]

VPCSERVICE = resource_type("cftunnel.dev/v1alpha1", "VPCService")


def _references(service: dict[str, Any], namespace: str, name: str, tunnel_id: str | None) -> bool:
    spec = service.get("spec") or {}
    ref = spec.get("tunnelRef")
    if ref:
        own = service["metadata"]["namespace"]
        return bool(ref.get("name") == name and (ref.get("namespace") or own) == namespace)
    return bool(tunnel_id and spec.get("tunnelId") == tunnel_id)


async def services_using_tunnel(
    ctx: ReconcileContext, namespace: str, name: str, tunnel_id: str | None
) -> list[str]:
    """``namespace/name`` of every VPCService that uses the tunnel (deleting ones included:
    they still need the tunnel to delete their Cloudflare service)."""
    patterns = ctx.config.watch_namespaces
    literal = [p for p in patterns if not any(ch in p for ch in "*?[!")]
    try:
        if patterns and len(literal) == len(patterns):
            items = [item for ns in literal for item in await ctx.kube.list(VPCSERVICE, ns)]
        else:
            items = await ctx.kube.list(VPCSERVICE)
    except KubeError:
        raise
    found = []
    for item in items:
        item_namespace = item["metadata"]["namespace"]
        if patterns and not any(fnmatch.fnmatchcase(item_namespace, p) for p in patterns):
            continue
        if _references(item, namespace, name, tunnel_id):
            found.append(f"{item_namespace}/{item['metadata']['name']}")
    return sorted(found)
