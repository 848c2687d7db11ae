"""Reconcile a VPCService: resolve its tunnel, check that the tunnel admits it, create or replace
the Workers VPC service on Cloudflare, and report all of it in status with the Worker binding.

One idempotent function, :func:`reconcile_vpcservice`, serves every trigger (create, resume,
spec change, periodic drift check, a change of the referenced Tunnel). The same inputs produce
no writes: status is compared before it is written (by the caller), and a run for a change
(``Sync.CHANGES``) calls Cloudflare only when the service it asks for differs from the one
status says was last sent; resume and the periodic check (``Sync.VERIFY``) also read the
service back and undo drift. Deletion is :func:`finalize_vpcservice`.

Cloudflare calls per run: a new object costs exactly one (the create; the service name is
recorded in status first, so that a crash between create and recording the id is repaired by
a lookup by name instead of a duplicate); a spec change costs one (PUT, a full replacement);
a periodic check costs one read, plus a PUT or a create when it finds drift.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydantic import ValidationError

from cftunnel_operator.api import names
from cftunnel_operator.api.common import CloudflareRef
from cftunnel_operator.api.conditions import ConditionType, Reason, find_condition
from cftunnel_operator.api.tunnel import TunnelSpec, TunnelStatus
from cftunnel_operator.api.vpcservice import VPCServiceSpec, VPCServiceStatus, worker_binding
from cftunnel_operator.cloudflare import (
    CloudflareClient,
    CloudflareError,
    CloudflareTransportError,
    NotFoundError,
    ServerError,
    VPCService,
    vpc_service_drifted,
)
from cftunnel_operator.cloudflare import VPCServiceSpec as ServiceRequest
from cftunnel_operator.kube.client import KubeError, resource_type
from cftunnel_operator.reconcile.context import ReconcileContext
from cftunnel_operator.reconcile.credentials import (
    Credentials,
    recheck_after_refusal,
    resolve_credentials,
)
from cftunnel_operator.reconcile.outcome import Event, StatusBuilder
from cftunnel_operator.reconcile.problems import (
    RETRY_OUTAGE,
    Problem,
    problem_from_cloudflare,
    problem_from_kube,
)
from cftunnel_operator.reconcile.vpcservice_body import desired_vpc_service

__all__ = [
    "PERIODIC_CHECK_COST",
    "ResolvedTunnel",
    "Sync",
    "VPCServiceObject",
    "VPCServiceOutcome",
    "finalize_vpcservice",
    "reconcile_vpcservice",
    "tunnel_reference",
]

VPCSERVICE = resource_type(names.API_VERSION, names.VPCSERVICE_KIND)
TUNNEL = resource_type(names.API_VERSION, names.TUNNEL_KIND)
NAMESPACE = resource_type("v1", "Namespace")
SERVICE = resource_type("v1", "Service")

# Cloudflare calls one periodic check costs when nothing drifted (one read of the service).
PERIODIC_CHECK_COST = 1


class Sync(Enum):
    """How much a run asks Cloudflare."""

    CHANGES = "changes"
    """Create, spec change, a change of the Tunnel: send only what status does not show as
    sent already (nothing at all when nothing changed)."""
    VERIFY = "verify"
    """Resume and periodic check: also read the service back, put back edits and recreate it
    when it was deleted."""


@dataclass(frozen=True)
class VPCServiceObject:
    """The parts of a VPCService object that reconcile reads."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: VPCServiceSpec
    status: VPCServiceStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> VPCServiceObject:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            spec=VPCServiceSpec.from_body(body.get("spec")),
            status=VPCServiceStatus.from_body(body.get("status")),
        )

    @property
    def tunnel_key(self) -> tuple[str, str] | None:
        """``(namespace, name)`` of the referenced Tunnel object; None with ``tunnelId``."""
        ref = self.spec.tunnel_ref
        return None if ref is None else (ref.namespace_or(self.namespace), ref.name)


def tunnel_reference(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(namespace, name)`` of the Tunnel a VPCService body references, without validating
    the rest of the spec (for indexing every object, even one this operator refuses)."""
    spec = body.get("spec") or {}
    ref = spec.get("tunnelRef") or {}
    name = ref.get("name")
    if not name:
        return None
    return str(ref.get("namespace") or body["metadata"]["namespace"]), str(name)


@dataclass
class VPCServiceOutcome:
    """What a run decided: the new status, events to post, and when to run again."""

    status: VPCServiceStatus
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    """Seconds until the next try when something is not done yet; None when converged."""
    message: str = ""
    wake_tunnel: tuple[str, str] | None = None
    """A Tunnel whose own status mentions this service (protocol refusal) and should look
    again because that changed."""


@dataclass(frozen=True)
class ResolvedTunnel:
    """The tunnel a VPCService routes through, and where credentials come from."""

    tunnel_id: str
    description: str
    """``Tunnel <namespace>/<name>`` or ``tunnel <id>``, for messages."""
    credentials_fallback: tuple[str, CloudflareRef | None] | None = None
    """The Tunnel's namespace and account/token (for what the VPCService leaves out)."""


async def reconcile_vpcservice(
    ctx: ReconcileContext, service: VPCServiceObject, sync: Sync = Sync.VERIFY
) -> VPCServiceOutcome:
    """Bring the Workers VPC service in line with the VPCService's spec; report in status."""
    state = StatusBuilder(ctx, service.status, service.generation)
    credentials: Credentials | None = None
    try:
        try:
            resolved = await _resolve_tunnel(ctx, service)
            state.set(
                ConditionType.TUNNEL_RESOLVED,
                True,
                Reason.RESOLVED,
                f"{resolved.description} has tunnel id {resolved.tunnel_id}",
            )
            desired = await _desired(ctx, service, resolved)
            credentials = await resolve_credentials(
                ctx,
                service.namespace,
                service.spec.cloudflare,
                fallback=resolved.credentials_fallback,
            )
            service_id = await _ensure_service(ctx, service, credentials, desired, sync, state)
        except KubeError as error:
            raise problem_from_kube(
                error, f"VPCService {service.namespace}/{service.name}"
            ) from None
    except Problem as problem:
        if credentials is not None:
            problem = await recheck_after_refusal(ctx, credentials, problem)
        state.set(problem.condition, False, problem.reason, problem.message, warn=True)
        state.set(ConditionType.READY, False, problem.reason, problem.message)
        state.update(observed_generation=service.generation)
        return VPCServiceOutcome(
            state.status,
            state.events,
            problem.retry_after,
            problem.message,
            _tunnel_to_wake(service, state.status),
        )

    binding = worker_binding(service.spec.effective_binding_name(service.name), service_id)
    state.update(
        service_id=service_id,
        service_name=desired.name,
        tunnel_id=resolved.tunnel_id,
        account_id=credentials.account_id,
        binding=binding,
        observed_generation=service.generation,
    )
    state.set(
        ConditionType.CLOUDFLARE_SYNCED,
        True,
        Reason.SYNCED,
        f"Workers VPC service {desired.name} ({service_id}) matches the spec",
    )
    state.set(
        ConditionType.READY,
        True,
        Reason.AVAILABLE,
        f"Workers VPC service {service_id} routes to {_target(desired)} through "
        f"tunnel {resolved.tunnel_id}; bind it with {binding}",
    )
    return VPCServiceOutcome(
        state.status, state.events, None, "ready", _tunnel_to_wake(service, state.status)
    )


def _target(desired: ServiceRequest) -> str:
    host = desired.host
    address = host.hostname or " and ".join(ip for ip in (host.ipv4, host.ipv6) if ip)
    if desired.type == "tcp":
        return f"{address} port {desired.tcp_port} (tcp)"
    ports = [str(port) for port in (desired.http_port, desired.https_port) if port is not None]
    return f"{address} port {'/'.join(ports)}" if ports else address


def _tunnel_to_wake(service: VPCServiceObject, new: VPCServiceStatus) -> tuple[str, str] | None:
    """The Tunnel to wake when this run started or stopped refusing it for its protocol."""

    def refused(status: VPCServiceStatus) -> bool:
        condition = find_condition(status.conditions, ConditionType.TUNNEL_RESOLVED)
        return condition is not None and condition.reason == Reason.TUNNEL_PROTOCOL_UNSUPPORTED

    if refused(service.status) != refused(new):
        return service.tunnel_key
    return None


async def _resolve_tunnel(ctx: ReconcileContext, service: VPCServiceObject) -> ResolvedTunnel:
    """The tunnel id to route through; raises a Problem on the TunnelResolved condition."""
    spec = service.spec
    if spec.tunnel_ref is None:
        assert spec.tunnel_id is not None  # one of the two: the model and the CRD check it
        return ResolvedTunnel(spec.tunnel_id, f"tunnel {spec.tunnel_id} (spec.tunnelId)")
    key = service.tunnel_key
    assert key is not None
    tunnel_namespace, tunnel_name = key
    described = f"Tunnel {tunnel_namespace}/{tunnel_name}"
    try:
        body = await ctx.kube.get_or_none(TUNNEL, tunnel_namespace, tunnel_name)
    except KubeError as error:
        raise _kube_problem(f"could not read {described}", error) from None
    if body is None:
        raise Problem(
            Reason.WAITING_FOR_TUNNEL,
            f"{described} (spec.tunnelRef) does not exist: waiting for it to be created",
            condition=ConditionType.TUNNEL_RESOLVED,
        )
    tunnel_spec = TunnelSpec.from_body(body.get("spec"))
    tunnel_status = TunnelStatus.from_body(body.get("status"))

    await _check_allowed(ctx, service, tunnel_spec, tunnel_namespace, described)
    if tunnel_spec.connector.protocol == "http2":
        raise Problem(
            Reason.TUNNEL_PROTOCOL_UNSUPPORTED,
            f"{described} runs cloudflared with protocol http2, but Workers VPC needs QUIC: set "
            "spec.connector.protocol to quic (or auto) on the Tunnel",
            condition=ConditionType.TUNNEL_RESOLVED,
        )
    if not tunnel_status.tunnel_id:
        raise Problem(
            Reason.TUNNEL_NOT_READY,
            f"{described} has no Cloudflare tunnel yet (its status.tunnelId is empty): waiting "
            "for it; see the Tunnel's conditions if this lasts",
            condition=ConditionType.TUNNEL_RESOLVED,
        )
    own_account = spec.cloudflare.account_id if spec.cloudflare else None
    tunnel_account = tunnel_status.account_id
    if own_account and tunnel_account and own_account != tunnel_account:
        raise Problem(
            Reason.ACCOUNT_MISMATCH,
            f"{described} is in Cloudflare account {tunnel_account}, but spec.cloudflare.accountId "
            f"is {own_account}: a service must be in its tunnel's account; remove "
            "spec.cloudflare.accountId or use that account",
            condition=ConditionType.TUNNEL_RESOLVED,
        )
    # What the VPCService leaves out comes from the Tunnel: its token Secret and the account
    # its tunnel actually lives in.
    tunnel_ref = tunnel_spec.cloudflare
    fallback = CloudflareRef(
        account_id=tunnel_account or (tunnel_ref.account_id if tunnel_ref else None),
        api_token_secret_ref=tunnel_ref.api_token_secret_ref if tunnel_ref else None,
    )
    return ResolvedTunnel(
        tunnel_status.tunnel_id,
        described,
        credentials_fallback=(tunnel_namespace, fallback),
    )


async def _check_allowed(
    ctx: ReconcileContext,
    service: VPCServiceObject,
    tunnel_spec: TunnelSpec,
    tunnel_namespace: str,
    described: str,
) -> None:
    allowed = tunnel_spec.allowed_services.namespaces
    labels: Mapping[str, str] = {}
    if allowed.from_ == "Selector":
        try:
            namespace = await ctx.kube.get(NAMESPACE, None, service.namespace)
        except KubeError as error:
            raise _kube_problem(f"could not read namespace {service.namespace}", error) from None
        labels = namespace.get("metadata", {}).get("labels") or {}
    if allowed.allows(
        tunnel_namespace=tunnel_namespace,
        service_namespace=service.namespace,
        namespace_labels=labels,
    ):
        return
    if allowed.from_ == "Selector":
        rule = "whose labels match its spec.allowedServices.namespaces.selector"
    else:
        rule = "in its own namespace (spec.allowedServices.namespaces.from: Same)"
    raise Problem(
        Reason.TUNNEL_NOT_ALLOWED,
        f"{described} does not allow VPCServices from namespace {service.namespace}: it admits "
        f"only those {rule}. Change the Tunnel's spec.allowedServices (All, or a Selector that "
        "matches this namespace) or use another tunnel",
        condition=ConditionType.TUNNEL_RESOLVED,
    )


async def _desired(
    ctx: ReconcileContext, service: VPCServiceObject, resolved: ResolvedTunnel
) -> ServiceRequest:
    """The request body; a ``service`` host must name an existing Kubernetes Service."""
    spec = service.spec
    target = spec.host.service
    if target is not None:
        namespace = target.namespace_or(service.namespace)
        try:
            found = await ctx.kube.get_or_none(SERVICE, namespace, target.name)
        except KubeError as error:
            raise _kube_problem(
                f"could not read Service {namespace}/{target.name}", error
            ) from None
        if found is None:
            raise Problem(
                Reason.SERVICE_NOT_FOUND,
                f"Service {namespace}/{target.name} (spec.host.service) does not exist: create "
                "it or fix spec.host.service; the Workers VPC service is made once it exists",
            )
    name = spec.effective_service_name(
        namespace=service.namespace, name=service.name, prefix=ctx.config.tunnel_name_prefix
    )
    try:
        return desired_vpc_service(
            spec,
            service_name=name,
            tunnel_id=resolved.tunnel_id,
            namespace=service.namespace,
            cluster_domain=ctx.config.cluster_domain,
        )
    except ValidationError as error:
        details = "; ".join(str(item["msg"]) for item in error.errors())
        raise Problem(Reason.INVALID_SPEC, f"the spec gives no valid service: {details}") from None


def _sent_matches_status(
    service: VPCServiceObject, desired: ServiceRequest, tunnel_id: str, account: str
) -> bool:
    """Whether status shows that exactly this body was last sent successfully.

    CloudflareSynced is set True only after a create or replace succeeded (or a read found the
    service as wanted); its observedGeneration says for which spec. With the same tunnel id,
    name and account, the body is the same, so a run for a change needs no call.
    """
    status = service.status
    synced = find_condition(status.conditions, ConditionType.CLOUDFLARE_SYNCED)
    return bool(
        synced is not None
        and synced.is_true
        and synced.observed_generation == service.generation
        and status.service_id
        and status.tunnel_id == tunnel_id
        and status.service_name == desired.name
        and status.account_id == account
    )


async def _ensure_service(
    ctx: ReconcileContext,
    service: VPCServiceObject,
    credentials: Credentials,
    desired: ServiceRequest,
    sync: Sync,
    state: StatusBuilder[VPCServiceStatus],
) -> str:
    """Create, replace or check the Workers VPC service; return its id."""
    client, account = credentials.client, credentials.account_id
    status = service.status
    up_to_date = _sent_matches_status(service, desired, desired.host.tunnel_id, account)
    known_id = status.service_id if status.account_id == account else None
    observed: VPCService | None = None
    try:
        if known_id and up_to_date and sync is Sync.CHANGES:
            # Nothing this service asks for changed: drift is the periodic check's business.
            return known_id
        if known_id and not up_to_date:
            # The spec (or the tunnel) changed: PUT replaces the whole object, no read needed.
            try:
                observed = await client.replace_vpc_service(account, known_id, desired)
            except NotFoundError:
                observed = None
        elif known_id:
            try:
                observed = await client.get_vpc_service(account, known_id)
            except NotFoundError:
                observed = None
            if observed is not None and vpc_service_drifted(desired, observed):
                observed = await client.replace_vpc_service(account, known_id, desired)
                state.events.append(
                    Event(
                        "Warning",
                        Reason.SYNCED,
                        f"Workers VPC service {known_id} was changed on Cloudflare; put back "
                        "to the spec (change the VPCService instead)",
                    )
                )
        if known_id and observed is None:
            state.events.append(
                Event(
                    "Warning",
                    Reason.SERVICE_CREATED,
                    f"Workers VPC service {known_id} was deleted on Cloudflare; creating it "
                    "again (the Worker binding gets a new service_id)",
                )
            )
        if observed is None:
            observed = await _find_or_create(ctx, service, client, account, desired, state)
    except CloudflareError as error:
        raise problem_from_cloudflare(error, f"Workers VPC service {desired.name}") from None
    return observed.service_id


async def _find_or_create(
    ctx: ReconcileContext,
    service: VPCServiceObject,
    client: CloudflareClient,
    account: str,
    desired: ServiceRequest,
    state: StatusBuilder[VPCServiceStatus],
) -> VPCService:
    """Create the service; look it up by name first only when status shows an earlier try.

    A create whose answer was lost puts the object in doubt: it waits until Cloudflare has
    surely carried the create out (or not), then keeps one service of its name and deletes any
    duplicate, so that no run ever repeats a create that may still land.
    """
    status = service.status
    observed: VPCService | None = None
    doubted_at = ctx.creates_in_doubt.get(service.uid)
    if doubted_at is not None:
        waited = time.monotonic() - doubted_at
        if waited < ctx.settle_seconds:
            raise Problem(
                Reason.CLOUDFLARE_UNAVAILABLE,
                f"the create of Workers VPC service {desired.name} got no answer; waiting for "
                "Cloudflare to settle before looking for it (never creating it twice)",
                retry_after=ctx.settle_seconds - waited,
            )
        observed = await _keep_one_named(client, account, desired, status.service_id, state)
        ctx.creates_in_doubt.pop(service.uid, None)
    elif status.service_id or status.service_name:
        observed = await client.find_vpc_service(account, desired.name, type=desired.type)
    if observed is not None and vpc_service_drifted(desired, observed):
        observed = await client.replace_vpc_service(account, observed.service_id, desired)
    if observed is None:
        await _record_create_intent(ctx, service, desired.name, account)
        try:
            observed = await client.create_vpc_service(account, desired)
        except (CloudflareTransportError, ServerError) as error:
            # A connection that never opened carried no request: nothing can land later.
            if getattr(error, "request_sent", True):
                ctx.creates_in_doubt[service.uid] = time.monotonic()
            raise
        state.events.append(
            Event(
                "Normal",
                Reason.SERVICE_CREATED,
                f"created Workers VPC service {observed.name} ({observed.service_id})",
            )
        )
    assert observed is not None
    return observed


async def _keep_one_named(
    client: CloudflareClient,
    account: str,
    desired: ServiceRequest,
    recorded_id: str | None,
    state: StatusBuilder[VPCServiceStatus],
) -> VPCService | None:
    """The one service named like ``desired`` (the recorded one, else the oldest); any other of
    that name is a duplicate left by a create in doubt, and is deleted."""
    named = [s for s in await client.list_vpc_services(account) if s.name == desired.name]
    if not named:
        return None
    named.sort(
        key=lambda s: (
            s.service_id != recorded_id,
            s.created_at.timestamp() if s.created_at else float("inf"),
        )
    )
    kept, duplicates = named[0], named[1:]
    for duplicate in duplicates:
        with contextlib.suppress(NotFoundError):
            await client.delete_vpc_service(account, duplicate.service_id)
        state.events.append(
            Event(
                "Warning",
                Reason.SERVICE_CREATED,
                f"deleted duplicate Workers VPC service {duplicate.service_id} named "
                f"{desired.name}, made by a create whose answer was lost; kept {kept.service_id}",
            )
        )
    return kept


async def _record_create_intent(
    ctx: ReconcileContext, service: VPCServiceObject, wanted_name: str, account: str
) -> None:
    """Write the name about to be created into status *before* creating it.

    If the operator dies between Cloudflare's create and the status write that records the id,
    the next run sees this name in status and looks the service up instead of creating a
    second one.
    """
    try:
        await ctx.kube.merge_patch(
            VPCSERVICE,
            service.namespace,
            service.name,
            {"status": {"serviceName": wanted_name, "accountId": account}},
            subresource="status",
        )
    except KubeError as error:
        raise _kube_problem("could not record the service about to be created", error) from None


def _kube_problem(doing: str, error: KubeError) -> Problem:
    return Problem(Reason.PROGRESSING, f"{doing}: {error.message}", retry_after=RETRY_OUTAGE)


async def _deletion_credentials(ctx: ReconcileContext, service: VPCServiceObject) -> Credentials:
    fallback: tuple[str, CloudflareRef | None] | None = None
    key = service.tunnel_key
    if key is not None:
        try:
            body = await ctx.kube.get_or_none(TUNNEL, *key)
        except KubeError as error:
            raise _kube_problem(f"could not read Tunnel {key[0]}/{key[1]}", error) from None
        if body is not None:
            ref = TunnelSpec.from_body(body.get("spec")).cloudflare
            fallback = (key[0], ref)
    return await resolve_credentials(
        ctx,
        service.namespace,
        service.spec.cloudflare,
        fallback=fallback,
        verify=False,
        allow_remembered=True,
    )


async def finalize_vpcservice(
    ctx: ReconcileContext, service: VPCServiceObject
) -> VPCServiceOutcome:
    """Deletion: with policy Delete, delete the Workers VPC service (gone already is done);
    with Retain, leave it on Cloudflare."""
    state = StatusBuilder(ctx, service.status, service.generation)
    status = service.status
    refused = find_condition(status.conditions, ConditionType.TUNNEL_RESOLVED)
    wake = (
        service.tunnel_key
        if refused is not None and refused.reason == Reason.TUNNEL_PROTOCOL_UNSUPPORTED
        else None
    )
    if service.spec.deletion_policy == "Retain":
        return VPCServiceOutcome(state.status, state.events, None, "retained", wake)
    if not status.service_id and not status.service_name:
        return VPCServiceOutcome(state.status, state.events, None, "nothing to delete", wake)
    what = f"Workers VPC service {status.service_id or status.service_name}"
    try:
        credentials = await _deletion_credentials(ctx, service)
        account = status.account_id or credentials.account_id
        service_id = status.service_id
        try:
            if not service_id:
                # A create may have happened before the operator could record its id.
                assert status.service_name is not None
                found = await credentials.client.find_vpc_service(account, status.service_name)
                service_id = found.service_id if found is not None else None
            if service_id:
                await credentials.client.delete_vpc_service(account, service_id)
        except NotFoundError:
            pass  # Already gone: deletion is done.
    except CloudflareError as error:
        problem = problem_from_cloudflare(error, f"deleting {what}")
        state.set(ConditionType.READY, False, problem.reason, problem.message, warn=True)
        return VPCServiceOutcome(state.status, state.events, problem.retry_after, problem.message)
    except Problem as problem:
        message = (
            f"cannot delete {what} on Cloudflare: {problem.message}. Restore the credentials, or "
            "set spec.deletionPolicy: Retain to keep the service and finish"
        )
        state.set(ConditionType.READY, False, problem.reason, message, warn=True)
        return VPCServiceOutcome(state.status, state.events, problem.retry_after, message)
    if service_id:
        state.events.append(
            Event("Normal", Reason.DELETING, f"deleted Workers VPC service {service_id}")
        )
    return VPCServiceOutcome(state.status, state.events, None, "deleted", wake)
