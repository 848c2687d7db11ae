"""Kopf handlers of the VPCService kind, and the watch on Tunnels that wakes the VPCServices
using a Tunnel when it changes (gets its id, changes protocol, account or allowedServices).

Every run goes through :func:`reconcile_by_name`: it takes the object's lock, reads the object
afresh (a change handler's body may predate a run the Tunnel watch made meanwhile, and a stale
status could make a second create), reconciles, and writes only the status that changed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf

from cftunnel_operator.api import names
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.handlers import tunnel as tunnel_handlers
from cftunnel_operator.handlers.memo import OperatorMemo
from cftunnel_operator.handlers.metrics import metered
from cftunnel_operator.handlers.status import post_events, status_changes
from cftunnel_operator.kube.client import resource_type
from cftunnel_operator.reconcile.vpcservice import (
    PERIODIC_CHECK_COST,
    Sync,
    VPCServiceObject,
    VPCServiceOutcome,
    finalize_vpcservice,
    reconcile_vpcservice,
    tunnel_reference,
)

__all__ = ["register", "tunnel_fingerprint"]

VPCSERVICE = resource_type(names.API_VERSION, names.VPCSERVICE_KIND)
INDEX = "vpcservices_by_tunnel"
# VPCServices reconciled at once when their Tunnel changes (each still waits for the rate
# budget of its token); Kopf handles the Tunnel's own events after this handler returns.
WAKE_CONCURRENCY = 8
# Last seen fingerprint per Tunnel (namespace, name), to wake its VPCServices only on changes
# that matter to them and not on every connector readiness update.
_TUNNEL_FINGERPRINTS = "tunnel_fingerprints"


def tunnel_fingerprint(body: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What of a Tunnel a VPCService depends on; None when the Tunnel does not exist."""
    if body is None:
        return None
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    return (
        status.get("tunnelId"),
        status.get("accountId"),
        repr(spec.get("cloudflare")),
        (spec.get("connector") or {}).get("protocol"),
        repr(spec.get("allowedServices")),
    )


async def reconcile_by_name(
    memo: OperatorMemo, namespace: str, name: str, sync: Sync
) -> VPCServiceOutcome | None:
    """Reconcile the VPCService as it is now; None when it is gone or being deleted."""
    ctx = memo.ctx
    body = await ctx.kube.get_or_none(VPCSERVICE, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    async with ctx.lock(body["metadata"]["uid"]):
        # Read again under the lock: another run may have written status meanwhile.
        body = await ctx.kube.get_or_none(VPCSERVICE, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        service = VPCServiceObject.from_body(body)
        outcome = await metered(
            memo, names.VPCSERVICE_KIND, reconcile_vpcservice(ctx, service, sync)
        )
        changes = status_changes(body.get("status"), outcome.status.to_body())
        if changes:
            await ctx.kube.merge_patch(
                VPCSERVICE, namespace, name, {"status": changes}, subresource="status"
            )
    post_events(body, outcome.events)
    if outcome.wake_tunnel is not None:
        await tunnel_handlers.reconcile_by_name(memo, *outcome.wake_tunnel)
    return outcome


async def _run(memo: OperatorMemo, body: Mapping[str, Any], sync: Sync) -> None:
    """A change handler's or the timer's run; retries through Kopf when not converged."""
    meta = body["metadata"]
    outcome = await reconcile_by_name(memo, meta["namespace"], meta["name"], sync)
    if outcome is not None and outcome.retry_after is not None:
        raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the VPCService handlers (the timer interval comes from the settings)."""
    kind = (names.GROUP, names.VERSION, names.VPCSERVICE_PLURAL)
    tunnels = (names.GROUP, names.VERSION, names.TUNNEL_PLURAL)

    @kopf.index(*kind, registry=registry, id=INDEX)
    async def vpcservices_by_tunnel(
        body: kopf.Body, **_: Any
    ) -> dict[tuple[str, str], tuple[str, str]] | None:
        tunnel = tunnel_reference(body)
        if tunnel is None:
            return None
        return {tunnel: (body["metadata"]["namespace"], body["metadata"]["name"])}

    @kopf.on.resume(*kind, registry=registry, id="vpcservice-resume")
    async def vpcservice_resumed(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
        # After a restart: look at Cloudflare too, it may have changed meanwhile.
        await _run(memo, body, Sync.VERIFY)

    @kopf.on.create(*kind, registry=registry, id="vpcservice")
    @kopf.on.update(*kind, registry=registry, id="vpcservice")
    async def vpcservice_changed(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
        # A new object costs one create, a changed one one PUT, a label change nothing.
        await _run(memo, body, Sync.CHANGES)

    @kopf.timer(
        *kind,
        registry=registry,
        id="vpcservice-periodic",
        interval=config.resync_seconds,
        initial_delay=lambda **_: random.uniform(0.5, 1.0) * config.resync_seconds,  # noqa: S311
        idle=config.resync_seconds / 2,
    )
    async def vpcservice_periodic(body: kopf.Body, memo: OperatorMemo, **_: Any) -> None:
        status = body.get("status") or {}
        if body["metadata"].get("deletionTimestamp") or not status.get("serviceId"):
            return  # Not created yet: the change handlers (and the Tunnel watch) own it.
        allowance = memo.ctx.periodic
        assert allowance is not None
        # Pace checks per account: a skipped check runs at its next tick.
        if not allowance.try_take(str(status.get("accountId") or ""), PERIODIC_CHECK_COST):
            return
        await _run(memo, body, Sync.VERIFY)

    @kopf.on.delete(*kind, registry=registry, id="vpcservice-cleanup")
    async def vpcservice_deleted(
        body: kopf.Body, patch: kopf.Patch, memo: OperatorMemo, **_: Any
    ) -> None:
        meta = body["metadata"]
        async with memo.ctx.lock(meta["uid"]):
            # The freshest status: a run may have recorded a service after this event's body.
            fresh = await memo.ctx.kube.get_or_none(VPCSERVICE, meta["namespace"], meta["name"])
            current = fresh if fresh is not None else body
            service = VPCServiceObject.from_body(current)
            outcome = await metered(
                memo, names.VPCSERVICE_KIND, finalize_vpcservice(memo.ctx, service)
            )
        for key, value in status_changes(current.get("status"), outcome.status.to_body()).items():
            patch.status[key] = value
        post_events(body, outcome.events)
        if outcome.retry_after is not None:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)
        memo.ctx.forget(service.uid)
        if outcome.wake_tunnel is not None:
            await tunnel_handlers.reconcile_by_name(memo, *outcome.wake_tunnel)

    @kopf.on.event(*tunnels, registry=registry, id="vpcservices-of-tunnel")
    async def tunnel_changed(
        body: kopf.Body,
        memo: OperatorMemo,
        type: str | None,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **kwargs: Any,
    ) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        seen: dict[tuple[str, str], Any] = memo.extras.setdefault(_TUNNEL_FINGERPRINTS, {})
        fingerprint = None if type == "DELETED" else tunnel_fingerprint(body)
        known = key in seen
        previous = seen.pop(key, None)
        if fingerprint is not None:
            seen[key] = fingerprint
        # The initial listing (type None) after a start: the resume handlers run anyway.
        if (type is None and not known) or fingerprint == previous:
            return
        # Kopf injects every index by its id.
        index: kopf.Index[tuple[str, str], tuple[str, str]] = kwargs[INDEX]
        users = sorted(index.get(key, ()))
        limit = asyncio.Semaphore(WAKE_CONCURRENCY)

        async def wake(namespace: str, name: str) -> None:
            async with limit:
                await reconcile_by_name(memo, namespace, name, Sync.CHANGES)

        results = await asyncio.gather(*(wake(*user) for user in users), return_exceptions=True)
        for (namespace, name), result in zip(users, results, strict=True):
            if isinstance(result, Exception):
                # Its own handlers retry it; this wake-up only made it sooner.
                logger.warning(
                    "could not reconcile VPCService %s/%s after its Tunnel changed: %s",
                    namespace,
                    name,
                    result,
                )
