"""reconcile_vpcservice and finalize_vpcservice against the Cloudflare emulator (in process)
and an in-memory Kubernetes API: calls per path, crash recovery, drift, refusals, deletion."""

from __future__ import annotations

import base64
import copy
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from cftunnel_operator.cloudflare import CloudflareClients
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.kube.client import NotFound, ResourceType
from cftunnel_operator.reconcile.context import ReconcileContext
from cftunnel_operator.reconcile.vpcservice import (
    Sync,
    VPCServiceObject,
    VPCServiceOutcome,
    finalize_vpcservice,
    reconcile_vpcservice,
)
from cloudflare_emulator import AdminClient, EmulatorServer

TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
NEW_TUNNEL_ID = "0191dce4-9ab4-7fce-b660-8e5dec5172da"


class FakeKube:
    """The part of KubeApi reconcile uses, over a dict; counts writes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.writes = 0

    def put(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(rtype.plural, meta.get("namespace"), meta["name"])] = copy.deepcopy(obj)

    async def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(rtype.plural, namespace, name)])
        except KeyError:
            raise NotFound(404, "NotFound", f"{rtype.plural} {name} not found") from None

    async def get_or_none(
        self, rtype: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self.get(rtype, namespace, name)
        except NotFound:
            return None

    async def list(self, rtype: ResourceType, namespace: str | None = None) -> list[Any]:
        return [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in self.objects.items()
            if plural == rtype.plural and (namespace is None or ns == namespace)
        ]

    async def merge_patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        self.writes += 1
        obj = self.objects[(rtype.plural, namespace, name)]
        _merge(obj, patch)
        return copy.deepcopy(obj)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


TUNNELS = ResourceType("cftunnel.dev", "v1alpha1", "tunnels")
VPCSERVICES = ResourceType("cftunnel.dev", "v1alpha1", "vpcservices")
SECRETS = ResourceType("", "v1", "secrets")
SERVICES = ResourceType("", "v1", "services")
NAMESPACES = ResourceType("", "v1", "namespaces", namespaced=False)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


@pytest.fixture
def account(server: EmulatorServer) -> tuple[str, str, AdminClient]:
    admin = AdminClient(server.admin_url)
    account_id, token = uuid.uuid4().hex, secrets.token_urlsafe(24)
    admin.seed(account_id, token)
    return account_id, token, admin


@pytest.fixture
async def ctx(
    server: EmulatorServer, account: tuple[str, str, AdminClient]
) -> AsyncIterator[ReconcileContext]:
    _account_id, token, _ = account
    kube = FakeKube()
    kube.put(
        SECRETS,
        {
            "metadata": {"name": "cf", "namespace": "edge"},
            "data": {"token": base64.b64encode(token.encode()).decode()},
        },
    )
    kube.put(NAMESPACES, {"metadata": {"name": "edge", "labels": {}}})
    kube.put(NAMESPACES, {"metadata": {"name": "shop", "labels": {"team": "shop"}}})
    async with httpx.AsyncClient() as http:
        config = OperatorConfig(cloudflare_api_url=server.url, cluster_domain="cluster.local")
        yield ReconcileContext(
            config=config,
            kube=kube,
            clouds=CloudflareClients(http, server.url),
        )


def tunnel(
    account_id: str,
    *,
    namespace: str = "edge",
    tunnel_id: str | None = TUNNEL_ID,
    protocol: str = "quic",
    allowed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status = {"tunnelId": tunnel_id, "accountId": account_id} if tunnel_id else {}
    return {
        "metadata": {"name": "office", "namespace": namespace},
        "spec": {
            "cloudflare": {"accountId": account_id, "apiTokenSecretRef": {"name": "cf"}},
            "connector": {"protocol": protocol},
            "allowedServices": {"namespaces": allowed or {"from": "Same"}},
        },
        "status": status,
    }


def vpcservice(namespace: str = "edge", **spec: Any) -> dict[str, Any]:
    body_spec = {
        "tunnelRef": {"name": "office", "namespace": "edge"},
        "host": {"ipv4": "10.0.0.5"},
        "ports": {"http": 8080},
        **spec,
    }
    return {
        "metadata": {"name": "orders", "namespace": namespace, "uid": "u-1", "generation": 1},
        "spec": body_spec,
    }


def kube_of(ctx: ReconcileContext) -> FakeKube:
    kube = ctx.kube
    assert isinstance(kube, FakeKube)
    return kube


async def run(
    ctx: ReconcileContext, body: dict[str, Any], sync: Sync = Sync.VERIFY
) -> tuple[VPCServiceOutcome, dict[str, Any]]:
    """One run as the handlers do it: read the stored object, reconcile, write the status."""
    kube = kube_of(ctx)
    meta = body["metadata"]
    key = ("vpcservices", meta["namespace"], meta["name"])
    if key not in kube.objects:
        kube.put(VPCSERVICES, body)
    stored = copy.deepcopy(kube.objects[key])
    outcome = await reconcile_vpcservice(ctx, VPCServiceObject.from_body(stored), sync)
    kube.objects[key]["status"] = outcome.status.to_body()
    return outcome, copy.deepcopy(kube.objects[key])


def service_ops(admin: AdminClient, account_id: str, since: int = 0) -> list[str]:
    return [
        r["operation"]
        for r in admin.requests(account_id=account_id, since_seq=since)
        if r["operation"].startswith("vpc_services.")
    ]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in obj.get("status", {}).get("conditions", []):
        if item["type"] == type_:
            return dict(item)
    return {}


async def test_new_service_costs_one_call_and_publishes_the_binding(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    outcome, obj = await run(ctx, vpcservice())
    assert outcome.retry_after is None
    assert service_ops(admin, account_id) == ["vpc_services.create"]
    stored = admin.vpc_services(account_id)
    assert len(stored) == 1
    status = obj["status"]
    assert status["serviceId"] == stored[0]["service_id"]
    assert status["tunnelId"] == TUNNEL_ID
    assert status["accountId"] == account_id
    assert status["serviceName"] == "edge-orders"
    assert status["binding"] == (
        f'{{"binding":"ORDERS","service_id":"{status["serviceId"]}","remote":true}}'
    )
    for type_ in ("Ready", "CloudflareSynced", "TunnelResolved"):
        assert condition(obj, type_)["status"] == "True", type_
        assert condition(obj, type_)["observedGeneration"] == 1
    assert [e.reason for e in outcome.events] == ["ServiceCreated"]


async def test_unchanged_runs_make_no_writes(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, first = await run(ctx, vpcservice())
    writes = kube_of(ctx).writes
    since = admin.last_seq()
    outcome, second = await run(ctx, first, Sync.CHANGES)
    assert service_ops(admin, account_id, since) == []
    outcome, third = await run(ctx, second, Sync.VERIFY)
    assert service_ops(admin, account_id, since) == ["vpc_services.get"]
    assert third["status"] == first["status"]
    assert outcome.events == []
    assert kube_of(ctx).writes == writes


async def test_crash_after_create_is_repaired_by_name_without_duplicate(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    body = vpcservice()
    kube_of(ctx).put(VPCSERVICES, body)
    outcome, _ = await run(ctx, body)
    # The status write that recorded the id was lost; only the intent made it.
    kube_of(ctx).objects[("vpcservices", "edge", "orders")]["status"] = {
        "serviceName": "edge-orders",
        "accountId": account_id,
    }
    since = admin.last_seq()
    _again, obj = await run(ctx, body)
    assert service_ops(admin, account_id, since) == ["vpc_services.list"]
    assert len(admin.vpc_services(account_id)) == 1
    assert obj["status"]["serviceId"] == outcome.status.service_id


async def test_spec_change_is_one_put(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, obj = await run(ctx, vpcservice())
    obj["spec"]["ports"] = {"http": 9090}
    obj["metadata"]["generation"] = 2
    kube_of(ctx).put(VPCSERVICES, obj)
    since = admin.last_seq()
    _, after = await run(ctx, obj)
    assert service_ops(admin, account_id, since) == ["vpc_services.replace"]
    assert admin.vpc_services(account_id)[0]["http_port"] == 9090
    assert condition(after, "CloudflareSynced")["observedGeneration"] == 2


async def test_tunnel_recreated_with_new_id_replaces_the_service_when_woken(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, obj = await run(ctx, vpcservice())
    kube_of(ctx).put(TUNNELS, tunnel(account_id, tunnel_id=NEW_TUNNEL_ID))
    since = admin.last_seq()
    _, after = await run(ctx, obj, Sync.CHANGES)
    assert service_ops(admin, account_id, since) == ["vpc_services.replace"]
    assert admin.vpc_services(account_id)[0]["host"]["network"]["tunnel_id"] == NEW_TUNNEL_ID
    assert after["status"]["tunnelId"] == NEW_TUNNEL_ID


async def test_drift_on_cloudflare_is_put_back(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, obj = await run(ctx, vpcservice())
    service_id = obj["status"]["serviceId"]
    admin.edit_vpc_service(account_id, service_id, {"http_port": 1234})
    outcome, obj = await run(ctx, obj)
    assert admin.vpc_services(account_id)[0]["http_port"] == 8080
    assert [e.type for e in outcome.events] == ["Warning"]
    admin.delete_vpc_service(account_id, service_id)
    since = admin.last_seq()
    outcome, obj = await run(ctx, obj)
    assert service_ops(admin, account_id, since) == [
        "vpc_services.get",
        "vpc_services.list",
        "vpc_services.create",
    ]
    assert obj["status"]["serviceId"] != service_id
    assert obj["status"]["serviceId"] in obj["status"]["binding"]


@pytest.mark.parametrize(
    ("tunnel_body", "reason"),
    [
        pytest.param(None, "WaitingForTunnel", id="missing"),
        pytest.param({"tunnel_id": None}, "TunnelNotReady", id="no-id-yet"),
        pytest.param({"protocol": "http2"}, "TunnelProtocolUnsupported", id="http2"),
    ],
)
async def test_tunnel_problems_wait_without_calling_cloudflare(
    ctx: ReconcileContext,
    account: tuple[str, str, AdminClient],
    tunnel_body: dict[str, Any] | None,
    reason: str,
) -> None:
    account_id, _, admin = account
    if tunnel_body is not None:
        kube_of(ctx).put(TUNNELS, tunnel(account_id, **tunnel_body))
    outcome, obj = await run(ctx, vpcservice())
    assert outcome.retry_after is not None
    assert condition(obj, "TunnelResolved")["reason"] == reason
    assert condition(obj, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "False",
        "reason": reason,
        "message": condition(obj, "TunnelResolved")["message"],
        "observedGeneration": 1,
        "lastTransitionTime": None,
    }
    assert service_ops(admin, account_id) == []
    assert [e.reason for e in outcome.events] == [reason]
    if reason == "TunnelProtocolUnsupported":
        assert outcome.wake_tunnel == ("edge", "office")


@pytest.mark.parametrize(
    ("allowed", "ok"),
    [
        pytest.param({"from": "Same"}, False, id="same"),
        pytest.param({"from": "All"}, True, id="all"),
        pytest.param(
            {"from": "Selector", "selector": {"matchLabels": {"team": "shop"}}}, True, id="match"
        ),
        pytest.param(
            {"from": "Selector", "selector": {"matchLabels": {"team": "web"}}}, False, id="other"
        ),
    ],
)
async def test_cross_namespace_reference_follows_allowed_services(
    ctx: ReconcileContext,
    account: tuple[str, str, AdminClient],
    allowed: dict[str, Any],
    ok: bool,
) -> None:
    account_id, _, _ = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id, allowed=allowed))
    _, obj = await run(ctx, vpcservice(namespace="shop"))
    resolved = condition(obj, "TunnelResolved")
    assert resolved["status"] == ("True" if ok else "False")
    if not ok:
        assert resolved["reason"] == "TunnelNotAllowed"
        assert "namespace shop" in resolved["message"]
    else:
        # The token Secret came from the Tunnel's namespace.
        assert condition(obj, "Ready")["status"] == "True"


async def test_missing_kubernetes_service_is_reported_then_used(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    body = vpcservice(host={"service": {"name": "orders-api"}})
    _, obj = await run(ctx, body)
    assert condition(obj, "Ready")["reason"] == "ServiceNotFound"
    assert "edge/orders-api" in condition(obj, "Ready")["message"]
    assert service_ops(admin, account_id) == []
    kube_of(ctx).put(SERVICES, {"metadata": {"name": "orders-api", "namespace": "edge"}})
    _outcome, obj = await run(ctx, obj)
    assert condition(obj, "Ready")["status"] == "True"
    host = admin.vpc_services(account_id)[0]["host"]
    assert host == {
        "hostname": "orders-api.edge.svc.cluster.local",
        "resolver_network": {"tunnel_id": TUNNEL_ID},
    }


async def test_unmanaged_tunnel_id_needs_own_credentials(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    spec = {"tunnelId": NEW_TUNNEL_ID, "tunnelRef": None}
    body = vpcservice(**spec)
    del body["spec"]["tunnelRef"]
    _, obj = await run(ctx, body)
    assert condition(obj, "Ready")["reason"] == "CredentialsMissing"
    obj["spec"]["cloudflare"] = {"accountId": account_id, "apiTokenSecretRef": {"name": "cf"}}
    kube_of(ctx).put(VPCSERVICES, obj)
    _, obj = await run(ctx, obj)
    assert condition(obj, "Ready")["status"] == "True"
    assert admin.vpc_services(account_id)[0]["host"]["network"]["tunnel_id"] == NEW_TUNNEL_ID


async def test_deletion_deletes_or_retains(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, obj = await run(ctx, vpcservice())
    retained = copy.deepcopy(obj)
    retained["spec"]["deletionPolicy"] = "Retain"
    outcome = await finalize_vpcservice(ctx, VPCServiceObject.from_body(retained))
    assert outcome.retry_after is None
    assert len(admin.vpc_services(account_id)) == 1
    outcome = await finalize_vpcservice(ctx, VPCServiceObject.from_body(obj))
    assert outcome.retry_after is None
    assert admin.vpc_services(account_id) == []
    # Gone already (404) is done too.
    outcome = await finalize_vpcservice(ctx, VPCServiceObject.from_body(obj))
    assert outcome.retry_after is None


async def test_deletion_after_lost_id_finds_the_service_by_name(
    ctx: ReconcileContext, account: tuple[str, str, AdminClient]
) -> None:
    account_id, _, admin = account
    kube_of(ctx).put(TUNNELS, tunnel(account_id))
    _, obj = await run(ctx, vpcservice())
    obj["status"] = {"serviceName": "edge-orders", "accountId": account_id}
    outcome = await finalize_vpcservice(ctx, VPCServiceObject.from_body(obj))
    assert outcome.retry_after is None
    assert admin.vpc_services(account_id) == []
