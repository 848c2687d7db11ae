"""The client end to end against the Cloudflare API emulator: every operation, pagination,
every error class the emulator can produce, retries and `retry-after`, the rate budget against
the emulator's own limiter, and no token in logs or exception text.

One emulator serves the module; every test gets a fresh account and token. Tests that change
the emulator's global settings (rate limit, faults) put them back when they finish.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr

from cftunnel_operator.cloudflare import (
    AuthenticationError,
    CloudflareClient,
    CloudflareClients,
    CloudflareError,
    CloudflareTransportError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    TLSSettings,
    TunnelConfig,
    VPCServiceHost,
    VPCServiceSpec,
    vpc_service_drifted,
)
from cloudflare_emulator import AdminClient, EmulatorServer

FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(port=0) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: EmulatorServer) -> Iterator[AdminClient]:
    with AdminClient(server.admin_url) as client:
        yield client


@dataclass
class Account:
    account_id: str
    token: str
    clients: CloudflareClients

    @property
    def client(self) -> CloudflareClient:
        return self.clients.for_token(SecretStr(self.token))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def fresh(admin: AdminClient) -> Iterator[None]:
    """Puts the emulator's global knobs back after the test."""
    yield
    admin.clear_faults()
    admin.restore_rate_limit()


def make_account(
    admin: AdminClient,
    server: EmulatorServer,
    http: httpx.AsyncClient,
    *,
    retry: RetryPolicy = FAST_RETRY,
    rate_limit: int = 1000,
    window_seconds: float = 300.0,
    **token_options: object,
) -> Account:
    account_id = uuid.uuid4().hex
    token = "cf-" + secrets.token_urlsafe(30)
    admin.seed(account_id, token, **token_options)  # type: ignore[arg-type]
    clients = CloudflareClients(http, server.url, rate_limit, window_seconds, retry=retry)
    return Account(account_id, token, clients)


@pytest.fixture
def account(admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient) -> Account:
    return make_account(admin, server, http)


def ip_spec(name: str, tunnel_id: str, **fields: object) -> VPCServiceSpec:
    return VPCServiceSpec.model_validate(
        {
            "name": name,
            "type": "http",
            "host": VPCServiceHost.ip(tunnel_id, ipv4="10.0.0.5"),
            **fields,
        }
    )


# --- tokens -------------------------------------------------------------------------------


async def test_verify_account_token(account: Account, admin: AdminClient) -> None:
    result = await account.client.verify_token(account.account_id)
    assert result.is_active
    assert admin.count("tokens.verify_account", account_id=account.account_id) == 1
    assert admin.count("tokens.verify_user", account_id=account.account_id) == 0


async def test_verify_user_token_falls_back_to_user_endpoint(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    account = make_account(admin, server, http, kind="user")
    result = await account.client.verify_token(account.account_id)
    assert result.is_active
    assert admin.count("tokens.verify_account", 401, account_id=account.account_id) == 1


async def test_verify_reports_a_disabled_token(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    account = make_account(admin, server, http, status="disabled")
    result = await account.client.verify_token(account.account_id)
    assert result.status == "disabled"
    assert not result.is_active


# --- tunnels ------------------------------------------------------------------------------


async def test_tunnel_lifecycle(account: Account, admin: AdminClient) -> None:
    client, account_id = account.client, account.account_id
    created = await client.create_tunnel(account_id, "edge-office")
    tunnel = created.tunnel
    assert tunnel.name == "edge-office"
    assert tunnel.config_src == "cloudflare"
    assert tunnel.status == "inactive"
    # The run token came with the create result: no extra GET.
    assert admin.count("tunnels.token", account_id=account_id) == 0
    decoded = json.loads(base64.b64decode(created.token.get_secret_value()))
    assert decoded["t"] == tunnel.id
    assert decoded["a"] == account_id

    assert (await client.get_tunnel(account_id, tunnel.id)).id == tunnel.id
    found = await client.find_tunnel(account_id, "edge-office")
    assert found is not None
    assert found.id == tunnel.id
    assert await client.find_tunnel(account_id, "edge") is None
    assert await client.get_tunnel_token(account_id, tunnel.id) == created.token

    assert await client.list_connectors(account_id, tunnel.id) == []
    admin.connect(account_id, tunnel.id, count=2)
    connectors = await client.list_connectors(account_id, tunnel.id)
    assert len(connectors) == 2
    assert all(connector.active_connections > 0 for connector in connectors)
    assert (await client.get_tunnel(account_id, tunnel.id)).status == "healthy"

    with pytest.raises(InvalidRequestError) as refused:
        await client.delete_tunnel(account_id, tunnel.id)
    assert refused.value.status_code == 400

    await client.drop_connections(account_id, tunnel.id, client_id=connectors[0].id)
    remaining = await client.list_connectors(account_id, tunnel.id)
    assert [c.id for c in remaining] == [connectors[1].id]
    await client.drop_connections(account_id, tunnel.id)
    assert await client.list_connectors(account_id, tunnel.id) == []

    await client.delete_tunnel(account_id, tunnel.id)
    deleted = await client.get_tunnel(account_id, tunnel.id)
    assert deleted.is_deleted
    assert await client.find_tunnel(account_id, "edge-office") is None
    assert [t.id for t in await client.list_tunnels(account_id, is_deleted=True)] == [tunnel.id]
    with pytest.raises(NotFoundError):
        await client.get_tunnel_token(account_id, tunnel.id)


async def test_rename_tunnel(account: Account) -> None:
    client, account_id = account.client, account.account_id
    created = await client.create_tunnel(account_id, "before")
    renamed = await client.rename_tunnel(account_id, created.tunnel.id, "after")
    assert (renamed.id, renamed.name) == (created.tunnel.id, "after")
    assert await client.find_tunnel(account_id, "before") is None
    # The secret is untouched: the run token still works for the renamed tunnel.
    assert await client.get_tunnel_token(account_id, created.tunnel.id) == created.token
    await client.create_tunnel(account_id, "taken")
    with pytest.raises(ConflictError):
        await client.rename_tunnel(account_id, created.tunnel.id, "taken")


async def test_delete_with_cascade_removes_a_connected_tunnel(
    account: Account, admin: AdminClient
) -> None:
    client, account_id = account.client, account.account_id
    created = await client.create_tunnel(account_id, "cascading")
    admin.connect(account_id, created.tunnel.id, count=1)
    await client.delete_tunnel(account_id, created.tunnel.id, cascade=True)
    assert (await client.get_tunnel(account_id, created.tunnel.id)).is_deleted


async def test_duplicate_live_tunnel_name_is_a_conflict(account: Account) -> None:
    await account.client.create_tunnel(account.account_id, "twice")
    with pytest.raises(ConflictError) as caught:
        await account.client.create_tunnel(account.account_id, "twice")
    assert caught.value.status_code == 409
    assert caught.value.codes == [1013]


async def test_tunnel_configuration_round_trip(account: Account) -> None:
    client, account_id = account.client, account.account_id
    tunnel = (await client.create_tunnel(account_id, "configured")).tunnel
    config = TunnelConfig.model_validate(
        {
            "ingress": [
                {
                    "hostname": "app.example.com",
                    "service": "http://web.default.svc.cluster.local:80",
                    "originRequest": {"noTLSVerify": False},
                },
                {"service": "http_status:404"},
            ]
        }
    )
    written = await client.update_tunnel_configuration(account_id, tunnel.id, config)
    read = await client.get_tunnel_configuration(account_id, tunnel.id)
    assert read.config == config == written.config
    assert read.version == written.version


async def test_tunnel_listing_reads_every_page(account: Account, admin: AdminClient) -> None:
    client, account_id = account.client, account.account_id
    names = [f"paged-{i}" for i in range(7)]
    for name in names:
        await client.create_tunnel(account_id, name)
    await client.create_tunnel(account_id, "other")
    listed = await client.list_tunnels(account_id, include_prefix="paged-", per_page=3)
    assert sorted(t.name for t in listed) == names
    assert admin.count("tunnels.list", account_id=account_id) == 3


# --- VPC services -------------------------------------------------------------------------

HOSTS: dict[str, Callable[[str], VPCServiceHost]] = {
    "ipv4": lambda tunnel: VPCServiceHost.ip(tunnel, ipv4="10.0.0.5"),
    "ipv6": lambda tunnel: VPCServiceHost.ip(tunnel, ipv6="fd00::5"),
    "dual": lambda tunnel: VPCServiceHost.ip(tunnel, ipv4="10.0.0.5", ipv6="fd00::5"),
    "hostname": lambda tunnel: VPCServiceHost.dns(
        tunnel, "db.internal.example", resolver_ips=["10.0.0.53"]
    ),
}


@pytest.mark.parametrize("shape", sorted(HOSTS))
async def test_vpc_service_lifecycle(account: Account, shape: str) -> None:
    client, account_id = account.client, account.account_id
    tunnel = (await client.create_tunnel(account_id, f"vpc-{shape}")).tunnel
    desired = VPCServiceSpec(name=f"svc-{shape}", type="http", host=HOSTS[shape](tunnel.id))
    created = await client.create_vpc_service(account_id, desired)
    assert desired.matches(created)
    assert desired.matches(await client.get_vpc_service(account_id, created.service_id))

    changed = VPCServiceSpec(
        name=f"svc-{shape}",
        type="tcp",
        tcp_port=5432,
        app_protocol="postgresql",
        tls_settings=TLSSettings(cert_verification_mode="verify_ca"),
        host=HOSTS[shape](tunnel.id),
    )
    assert vpc_service_drifted(changed, created)
    replaced = await client.replace_vpc_service(account_id, created.service_id, changed)
    assert replaced.service_id == created.service_id
    assert changed.matches(replaced)
    # PUT is a full replacement: nothing of the http form survives.
    assert replaced.http_port is None
    assert replaced.https_port is None

    found = await client.find_vpc_service(account_id, f"svc-{shape}")
    assert found is not None
    assert found.service_id == created.service_id
    assert [s.name for s in await client.list_vpc_services(account_id, type="tcp")] == [
        f"svc-{shape}"
    ]
    assert await client.list_vpc_services(account_id, type="http") == []

    await client.delete_vpc_service(account_id, created.service_id)
    with pytest.raises(NotFoundError):
        await client.get_vpc_service(account_id, created.service_id)
    assert await client.find_vpc_service(account_id, f"svc-{shape}") is None


async def test_dashboard_edit_is_seen_as_drift(account: Account, admin: AdminClient) -> None:
    client, account_id = account.client, account.account_id
    tunnel = (await client.create_tunnel(account_id, "drifting")).tunnel
    desired = ip_spec("drifting", tunnel.id, http_port=8080)
    created = await client.create_vpc_service(account_id, desired)
    admin.edit_vpc_service(account_id, created.service_id, {"http_port": 9090})
    observed = await client.get_vpc_service(account_id, created.service_id)
    assert vpc_service_drifted(desired, observed)
    repaired = await client.replace_vpc_service(account_id, created.service_id, desired)
    assert not vpc_service_drifted(desired, repaired)


async def test_vpc_service_listing_reads_every_page(account: Account, admin: AdminClient) -> None:
    client, account_id = account.client, account.account_id
    tunnel_id = str(uuid.uuid4())
    for index in range(5):
        await client.create_vpc_service(account_id, ip_spec(f"svc-{index}", tunnel_id))
    listed = await client.list_vpc_services(account_id, per_page=2)
    assert sorted(s.name for s in listed) == [f"svc-{i}" for i in range(5)]
    assert admin.count("vpc_services.list", account_id=account_id) == 3


# --- errors -------------------------------------------------------------------------------


async def test_unknown_token_is_an_authentication_error(
    server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    clients = CloudflareClients(http, server.url, retry=NO_RETRY)
    client = clients.for_token(SecretStr("never-issued-" + secrets.token_hex(8)))
    with pytest.raises(AuthenticationError) as caught:
        await client.list_tunnels(uuid.uuid4().hex)
    assert caught.value.status_code == 401


async def test_malformed_token_is_an_invalid_request(
    server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    client = CloudflareClients(http, server.url, retry=NO_RETRY).for_token(SecretStr("two words"))
    with pytest.raises(InvalidRequestError) as caught:
        await client.get_tunnel(uuid.uuid4().hex, str(uuid.uuid4()))
    assert caught.value.status_code == 400
    assert "Invalid format for Authorization header" in str(caught.value)
    assert "two words" not in str(caught.value)


async def test_missing_permission_and_foreign_account_are_permission_denied(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    reader = make_account(admin, server, http, permissions=["tunnel:read"])
    with pytest.raises(PermissionDeniedError) as caught:
        await reader.client.create_tunnel(reader.account_id, "not-allowed")
    assert caught.value.status_code == 403
    assert await reader.client.list_tunnels(reader.account_id) == []
    with pytest.raises(PermissionDeniedError):
        await reader.client.list_tunnels(uuid.uuid4().hex)


async def test_disabled_token_is_permission_denied(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient
) -> None:
    account = make_account(admin, server, http)
    admin.revoke_token(account.token)
    with pytest.raises(PermissionDeniedError):
        await account.client.list_tunnels(account.account_id)


async def test_unknown_ids_are_not_found(account: Account) -> None:
    client, account_id = account.client, account.account_id
    with pytest.raises(NotFoundError):
        await client.get_tunnel(account_id, str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await client.delete_vpc_service(account_id, str(uuid.uuid4()))


async def test_service_limit_is_an_invalid_request(
    account: Account, admin: AdminClient, fresh: None
) -> None:
    admin.update_settings(services_per_account=1)
    try:
        tunnel_id = str(uuid.uuid4())
        await account.client.create_vpc_service(account.account_id, ip_spec("one", tunnel_id))
        with pytest.raises(InvalidRequestError) as caught:
            await account.client.create_vpc_service(account.account_id, ip_spec("two", tunnel_id))
        assert caught.value.codes == [1030]
    finally:
        admin.update_settings(services_per_account=1000)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_injected_server_errors_are_server_errors(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None, status: int
) -> None:
    account = make_account(admin, server, http, retry=NO_RETRY)
    admin.set_faults(error_burst=1, error_status=status, account_id=account.account_id)
    with pytest.raises(ServerError) as caught:
        await account.client.list_tunnels(account.account_id)
    assert caught.value.status_code == status


async def test_injected_429_is_rate_limited_with_retry_after(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None
) -> None:
    account = make_account(admin, server, http, retry=NO_RETRY)
    admin.set_faults(rate_limit_burst=1, retry_after=3, account_id=account.account_id)
    with pytest.raises(RateLimitedError) as caught:
        await account.client.list_tunnels(account.account_id)
    assert caught.value.retry_after == 3.0
    assert account.client.budget.paused_for() > 2.0


async def test_dropped_connections_are_transport_errors(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None
) -> None:
    account = make_account(admin, server, http, retry=NO_RETRY)
    admin.set_faults(drop_rate=1.0, account_id=account.account_id)
    with pytest.raises(CloudflareTransportError) as caught:
        await account.client.list_tunnels(account.account_id)
    assert caught.value.request_sent


async def test_transport_errors_when_nothing_listens(http: httpx.AsyncClient) -> None:
    clients = CloudflareClients(http, "http://127.0.0.1:9/client/v4", retry=NO_RETRY)
    with pytest.raises(CloudflareTransportError) as caught:
        await clients.for_token(SecretStr("x")).list_tunnels(uuid.uuid4().hex)
    assert not caught.value.request_sent


# --- retries --------------------------------------------------------------------------------


async def test_reads_are_retried_through_server_errors_and_drops(
    account: Account, admin: AdminClient, fresh: None
) -> None:
    admin.set_faults(error_burst=2, account_id=account.account_id)
    assert await account.client.list_tunnels(account.account_id) == []
    assert admin.count("tunnels.list", 503, account_id=account.account_id) == 2
    admin.set_faults(drop_rate=0.5, seed=3, account_id=account.account_id)
    for _ in range(5):
        await account.client.list_tunnels(account.account_id)
    assert admin.count("tunnels.list", 0, account_id=account.account_id) > 0


async def test_create_after_a_refused_attempt_looks_up_then_creates_once(
    account: Account, admin: AdminClient, fresh: None
) -> None:
    admin.set_faults(error_burst=1, operations=["tunnels.create"], account_id=account.account_id)
    created = await account.client.create_tunnel(account.account_id, "after-503")
    counts = admin.counters(account_id=account.account_id)
    assert counts["tunnels.create"] == {"503": 1, "200": 1}
    assert counts["tunnels.list"] == {"200": 1}
    assert [t.id for t in await account.client.list_tunnels(account.account_id)] == [
        created.tunnel.id
    ]


async def test_create_whose_answer_was_lost_returns_the_existing_tunnel(
    account: Account, admin: AdminClient, fresh: None
) -> None:
    # As if an earlier attempt created the tunnel and its answer never arrived.
    existing = await account.client.create_tunnel(account.account_id, "lost-answer")
    admin.set_faults(error_burst=1, operations=["tunnels.create"], account_id=account.account_id)
    again = await account.client.create_tunnel(account.account_id, "lost-answer")
    assert again.tunnel.id == existing.tunnel.id
    assert again.token == existing.token
    counts = admin.counters(account_id=account.account_id)
    assert counts["tunnels.create"] == {"200": 1, "503": 1}  # never a blind second POST
    assert "409" not in counts["tunnels.create"]


async def test_create_is_never_blindly_repeated_over_dropped_connections(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None
) -> None:
    account = make_account(
        admin, server, http, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01)
    )
    admin.set_faults(
        drop_rate=1.0, operations=["vpc_services.create"], account_id=account.account_id
    )
    with pytest.raises(CloudflareTransportError):
        await account.client.create_vpc_service(
            account.account_id, ip_spec("dropped", str(uuid.uuid4()))
        )
    counts = admin.counters(account_id=account.account_id)
    # Service names are not unique: after the lookup finds nothing the create is not repeated
    # (a dropped create may still be carried out), it is left to the caller's next run.
    assert counts["vpc_services.create"] == {"0": 1}
    assert counts["vpc_services.list"] == {"200": 1}


async def test_retry_after_is_honoured_by_every_caller_of_the_token(
    account: Account, admin: AdminClient, fresh: None
) -> None:
    admin.set_faults(
        rate_limit_burst=1,
        retry_after=1,
        operations=["tunnels.list"],
        account_id=account.account_id,
    )
    client = account.client
    started = time.monotonic()
    first = asyncio.create_task(client.list_tunnels(account.account_id))
    await asyncio.sleep(0.2)  # the 429 has arrived and paused the token
    assert client.budget.paused_for() > 0
    await client.verify_token(account.account_id)  # another caller, another operation
    assert time.monotonic() - started >= 1.0
    await first
    assert time.monotonic() - started >= 1.0
    records = admin.requests(account_id=account.account_id)
    refused = next(r for r in records if r["status"] == 429)
    later = [r for r in records if r["seq"] > refused["seq"]]
    assert later
    assert all(r["time"] >= refused["time"] + 0.95 for r in later)


async def test_the_emulators_own_rate_limit_is_waited_out(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None
) -> None:
    # The client's budget (default, far larger) does not know the limit; the 429s teach it.
    account = make_account(admin, server, http)
    admin.set_rate_limit(limit=5, window_seconds=2)
    for _ in range(8):
        await account.client.list_tunnels(account.account_id)
    assert admin.count("tunnels.list", 200, account_id=account.account_id) == 8
    assert admin.count("tunnels.list", 429, account_id=account.account_id) >= 1


async def test_budget_keeps_200_concurrent_calls_under_the_emulators_limit(
    admin: AdminClient, server: EmulatorServer, http: httpx.AsyncClient, fresh: None
) -> None:
    admin.set_rate_limit(limit=50, window_seconds=10)
    account = make_account(admin, server, http, rate_limit=50, window_seconds=10)
    client, account_id = account.client, account.account_id
    started = time.monotonic()
    results = await asyncio.gather(*(client.list_tunnels(account_id) for _ in range(200)))
    elapsed = time.monotonic() - started
    assert results == [[]] * 200
    counts = admin.counters(account_id=account_id)
    assert counts == {"tunnels.list": {"200": 200}}  # not a single 429
    # 200 requests at 50 per 10 s: three full windows of waiting.
    assert elapsed >= 29.0


# --- secrets --------------------------------------------------------------------------------


async def test_no_token_in_logs_or_errors(
    admin: AdminClient,
    server: EmulatorServer,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    fresh: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = make_account(
        admin, server, http, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)
    )
    client, account_id = account.client, account.account_id
    created = await client.create_tunnel(account_id, "secret-keeping")
    run_token = created.token.get_secret_value()
    await client.get_tunnel_token(account_id, created.tunnel.id)
    errors: list[CloudflareError] = []

    async def failing(call: Awaitable[object]) -> None:
        try:
            await call
        except CloudflareError as error:
            errors.append(error)

    await failing(client.create_tunnel(account_id, "secret-keeping"))  # 409
    await failing(client.get_tunnel(account_id, str(uuid.uuid4())))  # 404
    for faults in (
        {"error_burst": 2},
        {"rate_limit_burst": 2, "retry_after": 1},
        {"drop_rate": 1.0},
    ):
        admin.set_faults(account_id=account_id, **faults)
        await failing(client.list_tunnels(account_id))
    admin.clear_faults()
    admin.revoke_token(account.token)
    await failing(client.list_tunnels(account_id))  # 403
    admin.delete_token(account.token)
    await failing(client.list_tunnels(account_id))  # 401
    await failing(client.verify_token(account_id))

    assert {type(error) for error in errors} == {
        ConflictError,
        NotFoundError,
        ServerError,
        RateLimitedError,
        CloudflareTransportError,
        PermissionDeniedError,
        AuthenticationError,
    }
    # The admin API names tokens in its URLs (httpx logs those); only the API traffic counts.
    api_log = [
        record.getMessage()
        for record in caplog.records
        if "/__emulator/" not in record.getMessage()
    ]
    assert any("/cfd_tunnel" in line for line in api_log)
    texts = [*api_log, repr(client), repr(account.clients), repr(created)]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    everything = "\n".join(texts)
    assert account.token not in everything
    assert run_token not in everything
