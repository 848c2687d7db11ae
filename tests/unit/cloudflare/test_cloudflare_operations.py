"""Each operation sends the documented request and reads the documented answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cf_fakes import (
    ACCOUNT,
    SERVICE_ID,
    TUNNEL_ID,
    Harness,
    failure,
    ok,
    request_json,
    tunnel_json,
)
from pydantic import SecretStr

from cftunnel_operator.cloudflare import (
    OPERATIONS,
    AuthenticationError,
    CloudflareClients,
    InvalidRequestError,
    PermissionDeniedError,
    RateBudget,
    ServerError,
    TunnelConfig,
    VPCServiceHost,
    VPCServiceSpec,
    token_fingerprint,
)

MakeHarness = Callable[..., Harness]
PREFIX = "/client/v4"
TUNNELS = f"{PREFIX}/accounts/{ACCOUNT}/cfd_tunnel"
SERVICES = f"{PREFIX}/accounts/{ACCOUNT}/connectivity/directory/services"
VERIFY = {"id": "ed17574386854bf78a67040be0a770b0", "status": "active"}


def service_json(name: str = "svc", service_id: str = SERVICE_ID, **extra: Any) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "name": name,
        "type": "http",
        "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}},
        "created_at": "2024-01-15T09:30:00Z",
        "updated_at": "2024-01-15T09:30:00Z",
        **extra,
    }


def spec(name: str = "svc") -> VPCServiceSpec:
    return VPCServiceSpec(
        name=name, type="http", http_port=8080, host=VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1")
    )


# --- tokens -------------------------------------------------------------------------------


async def test_verify_uses_account_endpoint_first_with_bearer_token(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(lambda request: ok(VERIFY))
    result = await harness.client().verify_token(ACCOUNT)
    assert result.is_active
    (request,) = harness.seen
    assert request.method == "GET"
    assert request.url.path == f"{PREFIX}/accounts/{ACCOUNT}/tokens/verify"
    assert request.headers["authorization"].startswith("Bearer tok-")
    assert harness.observer.operations == ["tokens.verify_account"]


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_verify_falls_back_to_user_endpoint(make_harness: MakeHarness, status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(f"{PREFIX}/accounts/"):
            return failure(status, 9109, "Invalid access token")
        return ok({**VERIFY, "status": "disabled"})

    harness = make_harness(handler)
    result = await harness.client().verify_token(ACCOUNT)
    assert not result.is_active
    assert harness.observer.operations == ["tokens.verify_account", "tokens.verify_user"]
    assert harness.seen[1].url.path == f"{PREFIX}/user/tokens/verify"


async def test_verify_reports_account_error_when_both_endpoints_refuse(
    make_harness: MakeHarness,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(f"{PREFIX}/accounts/"):
            return failure(403, 9109, "not allowed on this account")
        return failure(401, 1000, "Invalid API Token")

    harness = make_harness(handler)
    with pytest.raises(PermissionDeniedError, match="not allowed on this account"):
        await harness.client().verify_token(ACCOUNT)


async def test_verify_without_account_uses_user_endpoint(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: failure(401, 1000, "Invalid API Token"))
    with pytest.raises(AuthenticationError):
        await harness.client().verify_token()
    assert harness.observer.operations == ["tokens.verify_user"]


# --- tunnels ------------------------------------------------------------------------------


async def test_create_tunnel_sends_remote_config_and_takes_token_from_result(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
        lambda request: ok(
            tunnel_json(token="eyJhIjoi-token", credentials_file={"TunnelSecret": "x"})
        )
    )
    created = await harness.client().create_tunnel(ACCOUNT, "edge-office")
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("POST", TUNNELS)
    assert request_json(request) == {"name": "edge-office", "config_src": "cloudflare"}
    assert created.tunnel.id == TUNNEL_ID
    assert created.token.get_secret_value() == "eyJhIjoi-token"
    assert harness.observer.operations == ["tunnels.create"]


async def test_create_tunnel_fetches_token_when_result_lacks_it(make_harness: MakeHarness) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return ok(tunnel_json())
        assert request.url.path == f"{TUNNELS}/{TUNNEL_ID}/token"
        return ok("eyJ-from-get")

    harness = make_harness(handler)
    created = await harness.client().create_tunnel(
        ACCOUNT, "edge-office", tunnel_secret=SecretStr("c2VjcmV0")
    )
    assert created.token.get_secret_value() == "eyJ-from-get"
    assert request_json(harness.seen[0])["tunnel_secret"] == "c2VjcmV0"
    assert harness.observer.operations == ["tunnels.create", "tunnels.token"]


async def test_get_tunnel(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(tunnel_json(status="healthy")))
    tunnel = await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert tunnel.status == "healthy"
    assert harness.seen[0].url.path == f"{TUNNELS}/{TUNNEL_ID}"


async def test_find_tunnel_asks_for_live_tunnels_by_exact_name(make_harness: MakeHarness) -> None:
    harness = make_harness(
        lambda request: ok(
            [tunnel_json(name="edge-office-2", tunnel_id="x"), tunnel_json()],
            result_info={"page": 1, "per_page": 1000, "count": 2, "total_count": 2},
        )
    )
    found = await harness.client().find_tunnel(ACCOUNT, "edge-office")
    assert found is not None
    assert found.id == TUNNEL_ID
    params = harness.seen[0].url.params
    assert params["name"] == "edge-office"
    assert params["is_deleted"] == "false"
    assert params["page"] == "1"
    assert harness.observer.operations == ["tunnels.list"]


async def test_find_tunnel_returns_none_when_absent(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok([], result_info={"page": 1, "count": 0}))
    assert await harness.client().find_tunnel(ACCOUNT, "edge-office") is None


def paged(items: list[dict[str, Any]], *, with_total: bool, server_max: int | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        per_page = int(request.url.params["per_page"])
        if server_max is not None:
            per_page = min(per_page, server_max)
        chunk = items[(page - 1) * per_page : page * per_page]
        info: dict[str, Any] = {"page": page, "per_page": per_page, "count": len(chunk)}
        if with_total:
            info["total_count"] = len(items)
        return ok(chunk, result_info=info)

    return handler


@pytest.mark.parametrize("total", [0, 1, 4, 5, 6, 11])
@pytest.mark.parametrize("with_total", [True, False])
async def test_list_tunnels_reads_every_page(
    make_harness: MakeHarness, total: int, with_total: bool
) -> None:
    items = [tunnel_json(name=f"t{i}", tunnel_id=f"id-{i}") for i in range(total)]
    harness = make_harness(paged(items, with_total=with_total))
    tunnels = await harness.client().list_tunnels(ACCOUNT, per_page=5)
    assert [tunnel.name for tunnel in tunnels] == [f"t{i}" for i in range(total)]
    pages = [int(request.url.params["page"]) for request in harness.seen]
    # A full last page needs one more (empty) read unless total_count says it was the last.
    full_last_page = total % 5 == 0 and total > 0 and not with_total
    assert len(pages) == total // 5 + (1 if total % 5 or full_last_page or total == 0 else 0)
    assert pages == list(range(1, len(pages) + 1))


async def test_list_tunnels_follows_a_server_capped_page_size(make_harness: MakeHarness) -> None:
    items = [tunnel_json(name=f"t{i}", tunnel_id=f"id-{i}") for i in range(7)]
    harness = make_harness(paged(items, with_total=False, server_max=3))
    tunnels = await harness.client().list_tunnels(ACCOUNT)
    assert len(tunnels) == 7
    assert len(harness.seen) == 3


async def test_list_tunnels_passes_filters(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok([], result_info={"count": 0}))
    await harness.client().list_tunnels(
        ACCOUNT, is_deleted=True, include_prefix="vpc1-", exclude_prefix="old-"
    )
    params = harness.seen[0].url.params
    assert params["is_deleted"] == "true"
    assert params["include_prefix"] == "vpc1-"
    assert params["exclude_prefix"] == "old-"
    assert "name" not in params


async def test_rename_tunnel_patches_the_name_only(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(tunnel_json(name="edge-office-2")))
    renamed = await harness.client().rename_tunnel(ACCOUNT, TUNNEL_ID, "edge-office-2")
    assert renamed.name == "edge-office-2"
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("PATCH", f"{TUNNELS}/{TUNNEL_ID}")
    assert request_json(request) == {"name": "edge-office-2"}
    assert harness.observer.operations == ["tunnels.edit"]


async def test_rename_is_retried_like_an_idempotent_request(make_harness: MakeHarness) -> None:
    answers = [failure(502, 1, "bad gateway"), ok(tunnel_json(name="again"))]
    harness = make_harness(lambda request: answers.pop(0))
    await harness.client().rename_tunnel(ACCOUNT, TUNNEL_ID, "again")
    assert [r.method for r in harness.seen] == ["PATCH", "PATCH"]


@pytest.mark.parametrize(("cascade", "query"), [(False, ""), (True, "cascade=true")])
async def test_delete_tunnel(make_harness: MakeHarness, cascade: bool, query: str) -> None:
    harness = make_harness(lambda request: ok(tunnel_json(deleted_at="2025-01-01T00:00:00Z")))
    await harness.client().delete_tunnel(ACCOUNT, TUNNEL_ID, cascade=cascade)
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("DELETE", f"{TUNNELS}/{TUNNEL_ID}")
    assert request.url.query.decode() == query
    assert request.content == b""


async def test_get_tunnel_token_is_secret(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok("eyJhIjoiNWFi"))
    token = await harness.client().get_tunnel_token(ACCOUNT, TUNNEL_ID)
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == "eyJhIjoiNWFi"
    assert "eyJ" not in repr(token)
    assert harness.seen[0].url.path == f"{TUNNELS}/{TUNNEL_ID}/token"


async def test_list_connectors(make_harness: MakeHarness) -> None:
    connector = {
        "id": "1bedc50d-42b3-473c-b108-ff3d10c0d925",
        "version": "2026.8.2",
        "conns": [{"id": "c1", "colo_name": "FRA"}] * 4,
    }
    harness = make_harness(lambda request: ok([connector, {**connector, "id": "other"}]))
    connectors = await harness.client().list_connectors(ACCOUNT, TUNNEL_ID)
    assert [c.id for c in connectors] == [connector["id"], "other"]
    assert connectors[0].active_connections == 4
    assert harness.seen[0].url.path == f"{TUNNELS}/{TUNNEL_ID}/connections"
    assert harness.observer.operations == ["tunnels.connections.list"]


@pytest.mark.parametrize(("client_id", "query"), [(None, ""), ("abc", "client_id=abc")])
async def test_drop_connections(
    make_harness: MakeHarness, client_id: str | None, query: str
) -> None:
    harness = make_harness(lambda request: ok(None))
    await harness.client().drop_connections(ACCOUNT, TUNNEL_ID, client_id=client_id)
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("DELETE", f"{TUNNELS}/{TUNNEL_ID}/connections")
    assert request.url.query.decode() == query
    assert harness.observer.operations == ["tunnels.connections.delete"]


async def test_tunnel_configuration_get_and_put(make_harness: MakeHarness) -> None:
    stored: dict[str, Any] = {"ingress": []}

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal stored
        if request.method == "PUT":
            stored = request_json(request)["config"]
        return ok({"tunnel_id": TUNNEL_ID, "version": 2, "source": "cloudflare", "config": stored})

    harness = make_harness(handler)
    config = TunnelConfig.model_validate(
        {
            "ingress": [
                {"hostname": "a.example", "service": "http://web:80"},
                {"service": "http_status:404"},
            ]
        }
    )
    updated = await harness.client().update_tunnel_configuration(ACCOUNT, TUNNEL_ID, config)
    assert updated.config == config
    assert request_json(harness.seen[0]) == {
        "config": {
            "ingress": [
                {"hostname": "a.example", "service": "http://web:80"},
                {"service": "http_status:404"},
            ]
        }
    }
    read = await harness.client().get_tunnel_configuration(ACCOUNT, TUNNEL_ID)
    assert read.version == 2
    assert harness.observer.operations == [
        "tunnels.configurations.put",
        "tunnels.configurations.get",
    ]


# --- VPC services -------------------------------------------------------------------------


async def test_create_vpc_service_posts_exact_body(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(service_json(http_port=8080)))
    service = await harness.client().create_vpc_service(ACCOUNT, spec())
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("POST", SERVICES)
    assert request_json(request) == {
        "name": "svc",
        "type": "http",
        "http_port": 8080,
        "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}},
    }
    assert service.service_id == SERVICE_ID
    assert spec().matches(service)


async def test_replace_vpc_service_puts_full_body(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(service_json(name="renamed")))
    desired = VPCServiceSpec(
        name="renamed",
        type="tcp",
        tcp_port=5432,
        app_protocol="postgresql",
        host=VPCServiceHost.dns(TUNNEL_ID, "db.internal.example"),
    )
    await harness.client().replace_vpc_service(ACCOUNT, SERVICE_ID, desired)
    (request,) = harness.seen
    assert (request.method, request.url.path) == ("PUT", f"{SERVICES}/{SERVICE_ID}")
    assert request_json(request) == desired.to_request_body()
    assert set(request_json(request)) == {"name", "type", "host", "tcp_port", "app_protocol"}


async def test_get_and_delete_vpc_service(make_harness: MakeHarness) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(200)  # the schema documents no body
        return ok(service_json())

    harness = make_harness(handler)
    client = harness.client()
    assert (await client.get_vpc_service(ACCOUNT, SERVICE_ID)).name == "svc"
    await client.delete_vpc_service(ACCOUNT, SERVICE_ID)
    assert [(r.method, r.url.path) for r in harness.seen] == [
        ("GET", f"{SERVICES}/{SERVICE_ID}"),
        ("DELETE", f"{SERVICES}/{SERVICE_ID}"),
    ]
    assert harness.observer.operations == ["vpc_services.get", "vpc_services.delete"]


async def test_delete_vpc_service_accepts_null_result_envelope(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(None))
    await harness.client().delete_vpc_service(ACCOUNT, SERVICE_ID)


async def test_list_vpc_services_pages_and_filters_by_type(make_harness: MakeHarness) -> None:
    items = [service_json(name=f"s{i}", service_id=f"id-{i}") for i in range(12)]
    harness = make_harness(paged(items, with_total=True))
    services = await harness.client().list_vpc_services(ACCOUNT, type="http", per_page=5)
    assert [s.name for s in services] == [f"s{i}" for i in range(12)]
    assert [r.url.params["type"] for r in harness.seen] == ["http"] * 3
    assert harness.observer.operations == ["vpc_services.list"] * 3


async def test_find_vpc_service_by_name(make_harness: MakeHarness) -> None:
    items = [service_json(name=f"s{i}", service_id=f"id-{i}") for i in range(3)]
    harness = make_harness(paged(items, with_total=True))
    found = await harness.client().find_vpc_service(ACCOUNT, "s2")
    assert found is not None
    assert found.service_id == "id-2"
    assert await harness.client().find_vpc_service(ACCOUNT, "missing") is None


# --- plumbing -----------------------------------------------------------------------------


async def test_ids_are_quoted_into_the_path(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: failure(404, 7003, "No route"))
    with pytest.raises(Exception, match="404"):
        await harness.client().get_tunnel(ACCOUNT, "../../user/tokens?x=1")
    assert harness.seen[0].url.raw_path.decode() == (f"{TUNNELS}/..%2F..%2Fuser%2Ftokens%3Fx%3D1")


@pytest.mark.parametrize("bad", [("", TUNNEL_ID), (ACCOUNT, "")])
async def test_empty_ids_are_refused_before_sending(
    make_harness: MakeHarness, bad: tuple[str, str]
) -> None:
    harness = make_harness(lambda request: ok(tunnel_json()))
    with pytest.raises(ValueError, match="must not be empty"):
        await harness.client().get_tunnel(*bad)
    assert harness.seen == []


async def test_every_operation_name_is_a_stable_one(make_harness: MakeHarness) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/verify"):
            return ok(VERIFY)
        if path.endswith("/token"):
            return ok("eyJ")
        if path.endswith("/connections"):
            return ok([])
        if path.endswith("/configurations"):
            return ok({"config": {"ingress": []}})
        if "/connectivity/" in path:
            if request.method == "GET" and path.endswith("/services"):
                return ok([service_json()], result_info={"count": 1})
            return ok(service_json())
        if request.method == "GET" and path.endswith("/cfd_tunnel"):
            return ok([tunnel_json()], result_info={"count": 1})
        return ok(tunnel_json())

    harness = make_harness(handler)
    client = harness.client()
    await client.verify_token(ACCOUNT)
    await client.verify_token()
    await client.create_tunnel(ACCOUNT, "edge-office")
    await client.get_tunnel(ACCOUNT, TUNNEL_ID)
    await client.find_tunnel(ACCOUNT, "edge-office")
    await client.rename_tunnel(ACCOUNT, TUNNEL_ID, "edge-office")
    await client.get_tunnel_token(ACCOUNT, TUNNEL_ID)
    await client.list_connectors(ACCOUNT, TUNNEL_ID)
    await client.drop_connections(ACCOUNT, TUNNEL_ID)
    await client.get_tunnel_configuration(ACCOUNT, TUNNEL_ID)
    await client.update_tunnel_configuration(ACCOUNT, TUNNEL_ID, TunnelConfig())
    await client.delete_tunnel(ACCOUNT, TUNNEL_ID)
    await client.create_vpc_service(ACCOUNT, spec())
    await client.get_vpc_service(ACCOUNT, SERVICE_ID)
    await client.find_vpc_service(ACCOUNT, "svc")
    await client.replace_vpc_service(ACCOUNT, SERVICE_ID, spec())
    await client.delete_vpc_service(ACCOUNT, SERVICE_ID)
    seen = set(harness.observer.operations)
    assert seen == set(OPERATIONS)


async def test_registry_gives_one_client_and_budget_per_token() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: ok(None))) as http:
        clients = CloudflareClients(http, "https://cf.test/client/v4", 50, 10)
        first = clients.for_token(SecretStr("token-a"))
        assert clients.for_token(SecretStr("token-a")) is first
        second = clients.for_token(SecretStr("token-b"))
        assert second is not first
        assert second.budget is not first.budget
        assert isinstance(first.budget, RateBudget)
        assert (first.budget.limit, first.budget.window_seconds) == (50, 10.0)
        budgets = clients.budgets()
        assert set(budgets) == {
            token_fingerprint(SecretStr("token-a")),
            token_fingerprint(SecretStr("token-b")),
        }
        assert "token-a" not in repr(clients) + repr(first) + str(dict(budgets))


async def test_server_errors_after_retries_surface(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: failure(503, 1, "down"))
    with pytest.raises(ServerError):
        await harness.client().get_vpc_service(ACCOUNT, SERVICE_ID)
    assert len(harness.seen) == 5


async def test_invalid_request_is_not_retried(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: failure(400, 1002, "bad host"))
    with pytest.raises(InvalidRequestError):
        await harness.client().replace_vpc_service(ACCOUNT, SERVICE_ID, spec())
    assert len(harness.seen) == 1
