"""Kopf handlers of the Tunnel kind and of its children's changes.

Each handler is a few lines: read the object, take its lock, call the reconcile function,
write the status it returns and post its events. Deployment and autoscaler events wake the
owning Tunnel up (Kubernetes-only run), which is how readiness reaches status and how scale
changes by anyone else are put back within seconds.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import kopf

from cftunnel_operator.api import names
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.handlers.memo import OperatorMemo
from cftunnel_operator.handlers.metrics import metered
from cftunnel_operator.handlers.status import post_events, status_changes
from cftunnel_operator.kube import children
from cftunnel_operator.kube.client import NotFound, resource_type
from cftunnel_operator.reconcile.references import services_using_tunnel
from cftunnel_operator.reconcile.tunnel import (
    PERIODIC_CHECK_COST,
    Mode,
    TunnelObject,
    TunnelOutcome,
    finalize_tunnel,
    reconcile_tunnel,
)

__all__ = ["register"]

TUNNEL = resource_type(names.API_VERSION, names.TUNNEL_KIND)
# "<tunnel>-cloudflared": an autoscaler aimed at a name like this may target a connector.
DEPLOYMENT_SUFFIX = children.deployment_name("")


def _finish(body: Mapping[str, Any], patch: kopf.Patch, outcome: TunnelOutcome) -> None:
    changes = status_changes(body.get("status"), outcome.status.to_body())
    for key, value in changes.items():
        patch.status[key] = value
    post_events(body, outcome.events)
    if outcome.retry_after is not None:
        raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)


async def _reconcile_body(
    memo: OperatorMemo, body: Mapping[str, Any], patch: kopf.Patch, mode: Mode
) -> None:
    tunnel = TunnelObject.from_body(body)
    async with memo.ctx.lock(tunnel.uid):
        outcome = await metered(memo, names.TUNNEL_KIND, reconcile_tunnel(memo.ctx, tunnel, mode))
    _finish(body, patch, outcome)


async def reconcile_by_name(memo: OperatorMemo, namespace: str, name: str) -> None:
    """Run a Kubernetes-only reconcile of a Tunnel from outside its handlers (child events)."""
    ctx = memo.ctx
    try:
        body = await ctx.kube.get(TUNNEL, namespace, name)
    except NotFound:
        return
    if body["metadata"].get("deletionTimestamp"):
        return
    tunnel = TunnelObject.from_body(body)
    if not tunnel.status.tunnel_id:
        return  # Not created yet: the change handlers own the first run.
    async with ctx.lock(tunnel.uid):
        outcome = await metered(
            memo, names.TUNNEL_KIND, reconcile_tunnel(ctx, tunnel, Mode.KUBE_ONLY)
        )
        changes = status_changes(body.get("status"), outcome.status.to_body())
        if changes:
            await ctx.kube.merge_patch(
                TUNNEL, namespace, name, {"status": changes}, subresource="status"
            )
    post_events(body, outcome.events)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the Tunnel handlers (the timer interval comes from the settings)."""
    kind = (names.GROUP, names.VERSION, names.TUNNEL_PLURAL)
    managed = {names.LABEL_MANAGED_BY: names.MANAGED_BY}

    # Handler ids are pinned: Kopf stores progress under them in the objects' annotations.
    @kopf.on.resume(*kind, registry=registry, id="tunnel-resume")
    @kopf.on.create(*kind, registry=registry, id="tunnel")
    async def tunnel_created(
        body: kopf.Body, patch: kopf.Patch, memo: OperatorMemo, **_: Any
    ) -> None:
        await _reconcile_body(memo, body, patch, Mode.FULL)

    @kopf.on.update(*kind, registry=registry, id="tunnel-update")
    async def tunnel_updated(
        body: kopf.Body, patch: kopf.Patch, memo: OperatorMemo, **_: Any
    ) -> None:
        # Connector settings need no Cloudflare call; reconcile upgrades the run to a full one
        # when the spec asks for another Cloudflare tunnel (name, id, account).
        await _reconcile_body(memo, body, patch, Mode.KUBE_ONLY)

    @kopf.timer(
        *kind,
        registry=registry,
        id="tunnel-periodic",
        interval=config.resync_seconds,
        initial_delay=lambda **_: random.uniform(0.5, 1.0) * config.resync_seconds,  # noqa: S311
        idle=config.resync_seconds / 2,
    )
    async def tunnel_periodic(
        body: kopf.Body, patch: kopf.Patch, memo: OperatorMemo, **_: Any
    ) -> None:
        tunnel = TunnelObject.from_body(body)
        if body["metadata"].get("deletionTimestamp") or not tunnel.status.tunnel_id:
            return
        allowance = memo.ctx.periodic
        assert allowance is not None
        # Pace checks per API token: a skipped check runs at its next tick.
        key = tunnel.status.account_id or ""
        if not allowance.try_take(key, PERIODIC_CHECK_COST):
            return
        await _reconcile_body(memo, body, patch, Mode.FULL)

    @kopf.on.delete(*kind, registry=registry, id="tunnel-cleanup")
    async def tunnel_deleted(
        body: kopf.Body, patch: kopf.Patch, memo: OperatorMemo, **_: Any
    ) -> None:
        tunnel = TunnelObject.from_body(body)
        users = await services_using_tunnel(
            memo.ctx, tunnel.namespace, tunnel.name, tunnel.status.tunnel_id
        )
        async with memo.ctx.lock(tunnel.uid):
            outcome = await metered(
                memo, names.TUNNEL_KIND, finalize_tunnel(memo.ctx, tunnel, users)
            )
        if outcome.retry_after is None:
            memo.ctx.forget(tunnel.uid)
        _finish(body, patch, outcome)

    @kopf.on.event(
        "apps", "v1", "deployments", labels=managed, registry=registry, id="tunnel-connector"
    )
    async def connector_changed(
        body: kopf.Body, memo: OperatorMemo, type: str | None, **_: Any
    ) -> None:
        tunnel_name = body["metadata"].get("labels", {}).get(names.LABEL_TUNNEL)
        if tunnel_name and type in (None, "ADDED", "MODIFIED", "DELETED"):
            await reconcile_by_name(memo, body["metadata"]["namespace"], tunnel_name)

    async def autoscaler_changed(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
        spec = body.get("spec") or {}
        target = spec.get("scaleTargetRef") or spec.get("targetRef") or {}
        target_name = str(target.get("name") or "")
        tunnel_name = target_name.removesuffix(DEPLOYMENT_SUFFIX)
        if target_name.endswith(DEPLOYMENT_SUFFIX) and tunnel_name:
            await reconcile_by_name(memo, body["metadata"]["namespace"], tunnel_name)

    for group, version, plural in (
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        ("keda.sh", "v1alpha1", "scaledobjects"),
        ("autoscaling.k8s.io", "v1", "verticalpodautoscalers"),
    ):
        kopf.on.event(group, version, plural, registry=registry, id=f"autoscaler-{plural}")(
            autoscaler_changed
        )
