"""Reconcile a Tunnel: the Cloudflare tunnel, its run-token Secret, the cloudflared Deployment,
its PodDisruptionBudget and guard parameters, and the status that reports all of them.

One idempotent function, :func:`reconcile_tunnel`, serves every trigger (create, resume, spec
change, periodic check, a child's change). The same inputs produce no writes: children carry
the hash of what was last applied, and status is compared before it is written (by the caller).
Deletion is :func:`finalize_tunnel`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import SecretStr

from cftunnel_operator.api import names
from cftunnel_operator.api.conditions import ConditionType, Reason
from cftunnel_operator.api.tunnel import TunnelSpec, TunnelStatus
from cftunnel_operator.cloudflare import CloudflareError, NotFoundError, Tunnel
from cftunnel_operator.kube import children, guards
from cftunnel_operator.kube.client import JSON, KubeError, resource_type
from cftunnel_operator.reconcile.context import ReconcileContext
from cftunnel_operator.reconcile.credentials import (
    Credentials,
    recheck_after_refusal,
    resolve_credentials,
)
from cftunnel_operator.reconcile.outcome import Event, StatusBuilder
from cftunnel_operator.reconcile.problems import (
    RETRY_OUTAGE,
    RETRY_WAITING,
    Problem,
    problem_from_cloudflare,
    problem_from_kube,
)
from cftunnel_operator.reconcile.references import services_using_tunnel
from cftunnel_operator.redaction import register_secret

__all__ = [
    "Event",
    "Mode",
    "TunnelObject",
    "TunnelOutcome",
    "finalize_tunnel",
    "reconcile_tunnel",
]

SECRET = resource_type("v1", "Secret")
DEPLOYMENT = resource_type("apps/v1", "Deployment")
PDB = resource_type("policy/v1", "PodDisruptionBudget")
HPA = resource_type("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT = resource_type("keda.sh/v1alpha1", "ScaledObject")
VPA = resource_type("autoscaling.k8s.io/v1", "VerticalPodAutoscaler")
TUNNEL = resource_type(names.API_VERSION, names.TUNNEL_KIND)

ANNOTATION_APPLIED_HASH = "cftunnel.dev/applied-hash"
ANNOTATION_TUNNEL_ID = "cftunnel.dev/tunnel-id"
# How often a deletion looks again while cloudflared replicas are shutting down.
RETRY_STOPPING = 2.0
# Cloudflare calls one periodic check costs (tunnel read + connector list).
PERIODIC_CHECK_COST = 2


class Mode(Enum):
    """How much a run looks at: Cloudflare and Kubernetes, or Kubernetes only."""

    FULL = "full"
    """Create, resume, periodic check, or a spec change that concerns Cloudflare."""
    KUBE_ONLY = "kube-only"
    """A change of the connector settings, or of a child: no Cloudflare call is needed."""


@dataclass(frozen=True)
class TunnelObject:
    """The parts of a Tunnel object that reconcile reads."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: TunnelSpec
    status: TunnelStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TunnelObject:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            spec=TunnelSpec.from_body(body.get("spec")),
            status=TunnelStatus.from_body(body.get("status")),
        )

    @property
    def owner(self) -> children.OwnerRef:
        return children.OwnerRef(name=self.name, namespace=self.namespace, uid=self.uid)


@dataclass
class TunnelOutcome:
    """What a run decided: the new status, events to post, and when to run again."""

    status: TunnelStatus
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    """Seconds until the next try when something is not done yet; None when converged."""
    message: str = ""


def _hash(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _with_applied_hash(desired: JSON) -> JSON:
    """Stamp the desired object with a hash of itself (written only when it changes)."""
    stamped: JSON = json.loads(json.dumps(desired))
    stamped["metadata"].setdefault("annotations", {})[ANNOTATION_APPLIED_HASH] = _hash(desired)
    return stamped


def _applied_hash(observed: Mapping[str, Any] | None) -> str | None:
    if not observed:
        return None
    annotations = observed.get("metadata", {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_APPLIED_HASH)
    return str(value) if value is not None else None


async def reconcile_tunnel(
    ctx: ReconcileContext, tunnel: TunnelObject, mode: Mode = Mode.FULL
) -> TunnelOutcome:
    """Bring Cloudflare and the children in line with the Tunnel's spec; report in status."""
    state = StatusBuilder(ctx, tunnel.status, tunnel.generation)
    if mode is Mode.KUBE_ONLY and _cloudflare_inputs_changed(ctx, tunnel):
        mode = Mode.FULL
    credentials: Credentials | None = None
    try:
        try:
            credentials = await resolve_credentials(ctx, tunnel.namespace, tunnel.spec.cloudflare)
            if mode is Mode.FULL or not tunnel.status.tunnel_id:
                token = await _ensure_cloudflare_tunnel(ctx, tunnel, credentials, state)
            else:
                token = None
                _carry_cloudflare_condition(state)
            tunnel_id = state.status.tunnel_id
            assert tunnel_id is not None  # set by _ensure_cloudflare_tunnel or earlier runs
            token_hash = await _ensure_token_secret(ctx, tunnel, credentials, tunnel_id, token)
        except KubeError as error:
            raise problem_from_kube(error, f"Tunnel {tunnel.namespace}/{tunnel.name}") from None
    except Problem as problem:
        if credentials is not None:
            problem = await recheck_after_refusal(ctx, credentials, problem)
        state.set(problem.condition, False, problem.reason, problem.message, warn=True)
        state.set(ConditionType.READY, False, problem.reason, problem.message)
        state.update(observed_generation=tunnel.generation)
        return TunnelOutcome(state.status, state.events, problem.retry_after, problem.message)

    replicas = tunnel.spec.connector.replicas
    deployment = await _ensure_children(ctx, tunnel, token_hash, replicas, state)
    await _check_autoscalers(ctx, tunnel, state)
    outcome = _summarize(tunnel, state, deployment, replicas)
    return await _refuse_http2_for_vpc_services(ctx, tunnel, state, outcome)


def _carry_cloudflare_condition(state: StatusBuilder[TunnelStatus]) -> None:
    """A Kubernetes-only run leaves the Cloudflare side as it was: the last CloudflareSynced
    verdict holds for this generation too (the change did not concern Cloudflare)."""
    for condition in state.status.conditions:
        if condition.type == ConditionType.CLOUDFLARE_SYNCED:
            state.set(
                ConditionType.CLOUDFLARE_SYNCED,
                condition.is_true,
                Reason(condition.reason),
                condition.message,
            )


def _cloudflare_inputs_changed(ctx: ReconcileContext, tunnel: TunnelObject) -> bool:
    """Whether the spec asks for a different Cloudflare tunnel than the one in status."""
    status = tunnel.status
    if not status.tunnel_id:
        return True
    if tunnel.spec.tunnel_id and tunnel.spec.tunnel_id != status.tunnel_id:
        return True
    wanted_name = tunnel.spec.effective_tunnel_name(
        namespace=tunnel.namespace, name=tunnel.name, prefix=ctx.config.tunnel_name_prefix
    )
    if not tunnel.spec.tunnel_id and status.tunnel_name != wanted_name:
        return True
    account = (tunnel.spec.cloudflare.account_id if tunnel.spec.cloudflare else None) or (
        ctx.config.account_id
    )
    return bool(account and status.account_id and account != status.account_id)


async def _ensure_cloudflare_tunnel(
    ctx: ReconcileContext,
    tunnel: TunnelObject,
    credentials: Credentials,
    state: StatusBuilder[TunnelStatus],
) -> SecretStr | None:
    """Find, adopt or create the Cloudflare tunnel; record its id in status.

    Returns the run token when this run obtained it (create), else None.
    """
    client, account = credentials.client, credentials.account_id
    spec, status = tunnel.spec, tunnel.status
    wanted_name = spec.effective_tunnel_name(
        namespace=tunnel.namespace, name=tunnel.name, prefix=ctx.config.tunnel_name_prefix
    )
    adopted = spec.adopts_existing_tunnel
    token: SecretStr | None = None
    observed: Tunnel | None = None
    known_id = spec.tunnel_id or (status.tunnel_id if status.account_id == account else None)
    try:
        if known_id:
            try:
                observed = await client.get_tunnel(account, known_id)
            except NotFoundError:
                observed = None
            if observed is not None and observed.is_deleted:
                observed = None
            if observed is None and adopted:
                raise Problem(
                    Reason.TUNNEL_NOT_FOUND,
                    f"no live tunnel {known_id} in account {account}: check spec.tunnelId "
                    "(the tunnel to adopt) and spec.cloudflare.accountId",
                )
            if observed is None:
                state.events.append(
                    Event(
                        "Warning",
                        Reason.TUNNEL_DELETED,
                        f"tunnel {known_id} was deleted on Cloudflare; creating a new one",
                    )
                )
        if observed is None:
            # Look up by name first: a crash between create and recording the id must never
            # make a duplicate (the create path of a brand-new object skips this lookup).
            if status.tunnel_id or status.tunnel_name or _create_was_attempted(status):
                observed = await client.find_tunnel(account, wanted_name)
            if observed is None:
                await _record_create_intent(ctx, tunnel, wanted_name, account)
                created = await client.create_tunnel(account, wanted_name)
                observed, token = created.tunnel, created.token
                state.events.append(
                    Event(
                        "Normal",
                        Reason.TUNNEL_CREATED,
                        f"created Cloudflare tunnel {observed.name} ({observed.id})",
                    )
                )
        elif not adopted and observed.name != wanted_name:
            observed = await client.rename_tunnel(account, observed.id, wanted_name)
    except CloudflareError as error:
        raise problem_from_cloudflare(error, f"tunnel {wanted_name}") from None

    connectors = None
    if token is None and observed.status != "inactive":
        try:
            connectors = len(await client.list_connectors(account, observed.id))
        except CloudflareError as error:
            raise problem_from_cloudflare(error, f"connectors of tunnel {observed.id}") from None
    reason = Reason.TUNNEL_ADOPTED if adopted else Reason.SYNCED
    state.update(
        tunnel_id=observed.id,
        tunnel_name=observed.name,
        account_id=account,
        cloudflare_status=observed.status,
        connectors=connectors if connectors is not None else 0,
        deletion_policy=spec.effective_deletion_policy(adopted=adopted),
    )
    state.set(
        ConditionType.CLOUDFLARE_SYNCED,
        True,
        reason,
        f"tunnel {observed.name} ({observed.id}) is {observed.status} on Cloudflare",
    )
    if token is not None:
        register_secret(token.get_secret_value())
    return token


async def _record_create_intent(
    ctx: ReconcileContext, tunnel: TunnelObject, wanted_name: str, account: str
) -> None:
    """Write the name about to be created into status *before* creating it.

    If the operator dies between Cloudflare's create and the status write that records the
    id, the next run sees this name in status and looks the tunnel up instead of creating a
    second one.
    """
    try:
        await ctx.kube.merge_patch(
            TUNNEL,
            tunnel.namespace,
            tunnel.name,
            {"status": {"tunnelName": wanted_name, "accountId": account}},
            subresource="status",
        )
    except KubeError as error:
        raise Problem(
            Reason.PROGRESSING,
            f"could not record the tunnel about to be created: {error.message}",
            retry_after=RETRY_OUTAGE,
        ) from None


def _create_was_attempted(status: TunnelStatus) -> bool:
    return any(c.type == ConditionType.CLOUDFLARE_SYNCED for c in status.conditions)


async def _ensure_token_secret(
    ctx: ReconcileContext,
    tunnel: TunnelObject,
    credentials: Credentials,
    tunnel_id: str,
    token: SecretStr | None,
) -> str:
    """Keep the run token in a Secret owned by the Tunnel; return the token's hash."""
    name = children.token_secret_name(tunnel.name)
    observed = await ctx.kube.get_or_none(SECRET, tunnel.namespace, name)
    current: str | None = None
    if observed is not None:
        annotations = observed.get("metadata", {}).get("annotations") or {}
        raw = (observed.get("data") or {}).get(children.TOKEN_KEY)
        if annotations.get(ANNOTATION_TUNNEL_ID) == tunnel_id and raw:
            current = base64.b64decode(raw).decode()
    if token is None and current is None:
        try:
            token = await credentials.client.get_tunnel_token(credentials.account_id, tunnel_id)
        except CloudflareError as error:
            raise problem_from_cloudflare(error, f"run token of tunnel {tunnel_id}") from None
    if token is not None and token.get_secret_value() != current:
        value = token.get_secret_value()
        register_secret(value)
        desired = children.desired_token_secret(tunnel.owner, value)
        desired["metadata"].setdefault("annotations", {})[ANNOTATION_TUNNEL_ID] = tunnel_id
        await _apply(ctx, desired)
        current = value
    assert current is not None
    return children.token_hash(current)


async def _apply(ctx: ReconcileContext, desired: JSON) -> JSON:
    try:
        return await ctx.kube.apply(desired)
    except KubeError as error:
        kind = desired["kind"]
        raise Problem(
            Reason.PROGRESSING,
            f"could not apply {kind} {desired['metadata']['name']}: {error.message}",
            retry_after=RETRY_OUTAGE,
            condition=ConditionType.CONNECTOR_AVAILABLE,
        ) from None


async def _apply_if_changed(ctx: ReconcileContext, desired: JSON, rtype: Any) -> JSON:
    stamped = _with_applied_hash(desired)
    meta = desired["metadata"]
    observed = await ctx.kube.get_or_none(rtype, meta["namespace"], meta["name"])
    if _applied_hash(observed) == _applied_hash(stamped) and observed is not None:
        return observed
    return await _apply(ctx, stamped)


async def _ensure_children(
    ctx: ReconcileContext,
    tunnel: TunnelObject,
    token_hash: str,
    replicas: int,
    state: StatusBuilder[TunnelStatus],
) -> JSON | None:
    image = tunnel.spec.connector.image or ctx.config.cloudflared_image
    desired = children.desired_deployment(
        tunnel.owner, tunnel.spec.connector, image=image, token_hash=token_hash, replicas=replicas
    )
    try:
        stamped = _with_applied_hash(desired)
        observed = await ctx.kube.get_or_none(
            DEPLOYMENT, tunnel.namespace, desired["metadata"]["name"]
        )
        deployment = observed
        observed_replicas = (observed or {}).get("spec", {}).get("replicas")
        if observed is None or _applied_hash(observed) != _applied_hash(stamped):
            previous = (observed or {}).get("spec", {}).get("replicas")
            deployment = await _apply(ctx, stamped)
            if isinstance(previous, int) and replicas < previous and _applied_hash(observed):
                state.events.append(
                    Event(
                        "Warning",
                        "ReplicasReduced",
                        guards.replicas_lowered_message(
                            desired["metadata"]["name"], previous, replicas
                        ),
                    )
                )
        elif observed_replicas != replicas:
            # Someone else scaled the connector (kubectl scale, an autoscaler): put it back.
            deployment = await ctx.kube.merge_patch(
                DEPLOYMENT,
                tunnel.namespace,
                desired["metadata"]["name"],
                {"spec": {"replicas": replicas}},
                subresource="scale",
            )
            deployment = await ctx.kube.get(
                DEPLOYMENT, tunnel.namespace, desired["metadata"]["name"]
            )
            state.events.append(
                Event(
                    "Warning",
                    Reason.MANUAL_SCALE,
                    guards.replicas_drift_message(
                        desired["metadata"]["name"], int(observed_replicas or 0), replicas
                    ),
                )
            )
        await _apply_if_changed(ctx, children.desired_pdb(tunnel.owner), PDB)
    except KubeError as error:
        raise Problem(
            Reason.PROGRESSING,
            f"could not update the cloudflared Deployment: {error.message}",
            retry_after=RETRY_OUTAGE,
            condition=ConditionType.CONNECTOR_AVAILABLE,
        ) from None
    return deployment


async def _list_optional(ctx: ReconcileContext, rtype: Any, namespace: str) -> list[JSON]:
    """List a kind that may not be installed (KEDA, VPA): absent means none."""
    try:
        return await ctx.kube.list(rtype, namespace)
    except KubeError as error:
        if error.status in (404, 403):
            return []
        raise


async def _check_autoscalers(
    ctx: ReconcileContext, tunnel: TunnelObject, state: StatusBuilder[TunnelStatus]
) -> None:
    deployment_name = children.deployment_name(tunnel.name)
    try:
        conflicts = guards.autoscaler_conflicts(
            deployment_name,
            hpas=await _list_optional(ctx, HPA, tunnel.namespace),
            scaled_objects=await _list_optional(ctx, SCALED_OBJECT, tunnel.namespace),
            vpas=await _list_optional(ctx, VPA, tunnel.namespace),
        )
    except KubeError:
        return  # Keep the last known state; the next run looks again.
    if conflicts:
        first = conflicts[0]
        message = "; ".join(conflict.message for conflict in conflicts)
        state.set(
            ConditionType.AUTOSCALER_CONFLICT,
            True,
            _conflict_reason(first.kind),
            message,
            warn=True,
            abnormal_true=True,
        )
    else:
        state.set(
            ConditionType.AUTOSCALER_CONFLICT,
            False,
            Reason.NO_CONFLICT,
            "no autoscaler targets the cloudflared Deployment",
        )


def _conflict_reason(kind: str) -> Reason:
    return {
        "HorizontalPodAutoscaler": Reason.HORIZONTAL_POD_AUTOSCALER,
        "ScaledObject": Reason.SCALED_OBJECT,
        "VerticalPodAutoscaler": Reason.VERTICAL_POD_AUTOSCALER,
    }.get(kind, Reason.MANUAL_SCALE)


def _summarize(
    tunnel: TunnelObject, state: StatusBuilder[TunnelStatus], deployment: JSON | None, replicas: int
) -> TunnelOutcome:
    deployment_status = (deployment or {}).get("status") or {}
    ready = int(deployment_status.get("readyReplicas") or 0)
    updated = int(deployment_status.get("updatedReplicas") or 0)
    observed_generation = deployment_status.get("observedGeneration")
    generation = (deployment or {}).get("metadata", {}).get("generation")
    state.update(replicas=replicas, ready_replicas=ready, observed_generation=tunnel.generation)
    rolled_out = observed_generation == generation and updated >= replicas
    if ready >= replicas and rolled_out:
        state.set(
            ConditionType.CONNECTOR_AVAILABLE,
            True,
            Reason.AVAILABLE,
            f"{ready}/{replicas} cloudflared replicas ready",
        )
    else:
        state.set(
            ConditionType.CONNECTOR_AVAILABLE,
            False,
            Reason.REPLICAS_UNAVAILABLE,
            f"{ready}/{replicas} cloudflared replicas ready",
        )
    synced = any(
        c.type == ConditionType.CLOUDFLARE_SYNCED and c.is_true for c in state.status.conditions
    )
    available = ready >= replicas and rolled_out
    if synced and available:
        status = state.status
        state.set(
            ConditionType.READY,
            True,
            Reason.AVAILABLE,
            f"tunnel {status.tunnel_name} ({status.tunnel_id}) is {status.cloudflare_status} "
            f"with {ready}/{replicas} connector replicas ready",
        )
        return TunnelOutcome(state.status, state.events, None, "ready")
    message = f"waiting for cloudflared: {ready}/{replicas} replicas ready"
    state.set(ConditionType.READY, False, Reason.PROGRESSING, message)
    # Deployment changes wake the Tunnel up through the child watch; the retry is a backstop.
    return TunnelOutcome(state.status, state.events, None, message)


async def _refuse_http2_for_vpc_services(
    ctx: ReconcileContext,
    tunnel: TunnelObject,
    state: StatusBuilder[TunnelStatus],
    outcome: TunnelOutcome,
) -> TunnelOutcome:
    """Workers VPC needs QUIC: a tunnel on http2 that VPCServices use is not Ready for them.

    The VPCServices refuse such a tunnel themselves (TunnelResolved); this says so on the Tunnel
    too, naming them, since it is the Tunnel's spec that must change.
    """
    if tunnel.spec.connector.protocol != "http2":
        return outcome
    try:
        users = await services_using_tunnel(
            ctx, tunnel.namespace, tunnel.name, state.status.tunnel_id
        )
    except KubeError:
        return outcome  # Keep the last known state; the next run looks again.
    if not users:
        return outcome
    message = (
        f"VPCServices use this tunnel ({', '.join(users)}) but spec.connector.protocol is http2; "
        "Workers VPC needs QUIC: set spec.connector.protocol to quic (or auto)"
    )
    # Compare with the Ready condition as stored, not the one _summarize just set: the
    # transition time and the Warning event must only change when the refusal starts.
    stored = next((c for c in tunnel.status.conditions if c.type == ConditionType.READY), None)
    if stored is not None:
        kept = [stored if c.type == ConditionType.READY else c for c in state.status.conditions]
        state.update(conditions=kept)
    state.set(ConditionType.READY, False, Reason.TUNNEL_PROTOCOL_UNSUPPORTED, message, warn=True)
    return TunnelOutcome(state.status, state.events, outcome.retry_after, message)


async def finalize_tunnel(
    ctx: ReconcileContext, tunnel: TunnelObject, referencing_services: Sequence[str]
) -> TunnelOutcome:
    """Deletion: wait for VPCServices that use the tunnel, then (policy Delete) scale the
    connector to zero, drop its connections and delete the Cloudflare tunnel."""
    state = StatusBuilder(ctx, tunnel.status, tunnel.generation)
    if referencing_services:
        listed = ", ".join(sorted(referencing_services))
        message = f"waiting for VPCServices that use this tunnel to be deleted first: {listed}"
        state.set(ConditionType.READY, False, Reason.IN_USE_BY_VPC_SERVICES, message, warn=True)
        return TunnelOutcome(state.status, state.events, RETRY_WAITING, message)

    policy = tunnel.status.deletion_policy or tunnel.spec.effective_deletion_policy(
        adopted=tunnel.spec.adopts_existing_tunnel
    )
    tunnel_id = tunnel.status.tunnel_id
    # Without an id, a name in status means a create was sent (the name is recorded just
    # before it): its answer may have been lost, so the tunnel is looked up by that name.
    unrecorded_name = None if tunnel_id else tunnel.status.tunnel_name
    if tunnel.spec.adopts_existing_tunnel:
        unrecorded_name = None
    if policy == "Retain" or not (tunnel_id or unrecorded_name):
        return TunnelOutcome(state.status, state.events, None, "retained")
    described = tunnel_id or unrecorded_name

    # Scale cloudflared to zero first: a running replica would reconnect after its
    # connections are dropped and block the delete.
    deployment_name = children.deployment_name(tunnel.name)
    try:
        observed = await ctx.kube.get_or_none(DEPLOYMENT, tunnel.namespace, deployment_name)
        running = int(((observed or {}).get("status") or {}).get("replicas") or 0)
        if observed is not None and observed.get("spec", {}).get("replicas") != 0:
            await ctx.kube.merge_patch(
                DEPLOYMENT,
                tunnel.namespace,
                deployment_name,
                {"spec": {"replicas": 0}},
                subresource="scale",
            )
            running = max(running, 1)
    except KubeError as error:
        message = f"could not scale cloudflared to zero: {error.message}"
        state.set(ConditionType.READY, False, Reason.DELETING, message)
        return TunnelOutcome(state.status, state.events, RETRY_OUTAGE, message)
    if running:
        # Let the replicas finish their graceful shutdown (cloudflared drains for its grace
        # period) before the remaining connections are cut.
        message = f"waiting for {running} cloudflared replicas to stop before deleting the tunnel"
        state.set(ConditionType.READY, False, Reason.DELETING, message)
        return TunnelOutcome(state.status, state.events, RETRY_STOPPING, message)
    try:
        credentials = await resolve_credentials(
            ctx,
            tunnel.namespace,
            tunnel.spec.cloudflare,
            verify=False,
            allow_remembered=True,
        )
        account = tunnel.status.account_id or credentials.account_id
        if not tunnel_id:
            assert unrecorded_name is not None
            found = await credentials.client.find_tunnel(account, unrecorded_name)
            if found is None:
                return TunnelOutcome(state.status, state.events, None, "nothing to delete")
            tunnel_id = found.id
        try:
            await credentials.client.drop_connections(account, tunnel_id)
            await credentials.client.delete_tunnel(account, tunnel_id)
        except NotFoundError:
            pass  # Already gone: deletion is done.
        except CloudflareError as error:
            if "connection" not in error.message.lower():
                raise problem_from_cloudflare(error, f"deleting tunnel {tunnel_id}") from None
            # A connector reconnected between the two calls: cascade drops it with the tunnel.
            with contextlib.suppress(NotFoundError):
                await credentials.client.delete_tunnel(account, tunnel_id, cascade=True)
    except CloudflareError as error:
        problem = problem_from_cloudflare(error, f"deleting tunnel {described}")
        state.set(ConditionType.READY, False, problem.reason, problem.message, warn=True)
        return TunnelOutcome(state.status, state.events, problem.retry_after, problem.message)
    except Problem as problem:
        message = (
            f"cannot delete tunnel {described} on Cloudflare: {problem.message}. Restore the "
            "credentials, or set spec.deletionPolicy: Retain to keep the tunnel and finish"
        )
        state.set(ConditionType.READY, False, problem.reason, message, warn=True)
        return TunnelOutcome(state.status, state.events, problem.retry_after, message)
    state.events.append(Event("Normal", Reason.DELETING, f"deleted Cloudflare tunnel {tunnel_id}"))
    return TunnelOutcome(state.status, state.events, None, "deleted")
