"""The official ``cloudflare`` Python SDK (5.x) as an independent client of the emulator:
it must parse every answer, through the whole life of a tunnel and of each kind of VPC
service. (Every response is also schema-checked by the ``cf`` fixture's event hook.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import cloudflare
import pytest
from emulator_support import ACCOUNT, TOKEN, UNKNOWN_UUID

from cloudflare_emulator import AdminClient, EmulatorServer

TUNNEL_ID = "0191dce4-9ab4-7fce-b660-8e5dec5172da"
SECRET = base64.b64encode(bytes(range(32))).decode()


def _decode_run_token(token: str) -> dict[str, str]:
    return json.loads(base64.b64decode(token))  # type: ignore[no-any-return]


def test_tunnel_life_cycle_through_the_sdk(cf: cloudflare.Cloudflare, admin: AdminClient) -> None:
    tunnels = cf.zero_trust.tunnels.cloudflared

    created = tunnels.create(account_id=ACCOUNT, name="sdk-edge", config_src="cloudflare")
    assert created.id
    assert created.name == "sdk-edge"
    assert created.config_src == "cloudflare"
    assert created.remote_config is True
    assert created.status == "inactive"
    assert created.tun_type == "cfd_tunnel"
    assert created.deleted_at is None
    assert created.connections == []
    # Undeclared in the SDK's types, but kept by its models: the run token on create.
    run_token = created.model_extra["token"]  # type: ignore[index]
    decoded = _decode_run_token(run_token)
    assert decoded["a"] == ACCOUNT
    assert decoded["t"] == created.id
    assert len(base64.b64decode(decoded["s"])) >= 32
    assert created.model_extra["credentials_file"]["TunnelID"] == created.id  # type: ignore[index]
    tunnels.create(account_id=ACCOUNT, name="other-tunnel", config_src="local")

    assert tunnels.token.get(created.id, account_id=ACCOUNT) == run_token
    assert [t.id for t in tunnels.list(account_id=ACCOUNT, name="sdk-edge")] == [created.id]
    assert [t.id for t in tunnels.list(account_id=ACCOUNT, uuid=created.id)] == [created.id]
    assert [t.name for t in tunnels.list(account_id=ACCOUNT, include_prefix="sdk-")] == ["sdk-edge"]
    assert [t.name for t in tunnels.list(account_id=ACCOUNT, exclude_prefix="sdk-")] == [
        "other-tunnel"
    ]
    assert len(list(tunnels.list(account_id=ACCOUNT, is_deleted=False, status="inactive"))) == 2
    assert tunnels.get(created.id, account_id=ACCOUNT).name == "sdk-edge"

    renamed = tunnels.edit(created.id, account_id=ACCOUNT, name="sdk-edge-2")
    assert renamed.name == "sdk-edge-2"
    rotated = tunnels.edit(created.id, account_id=ACCOUNT, tunnel_secret=SECRET)
    new_token = rotated.model_extra["token"]  # type: ignore[index]
    assert _decode_run_token(new_token)["s"] == SECRET
    assert tunnels.token.get(created.id, account_id=ACCOUNT) == new_token

    config = {
        "ingress": [
            {"hostname": "app.example.com", "service": "http://web:80"},
            {"service": "http_status:404"},
        ]
    }
    updated = tunnels.configurations.update(created.id, account_id=ACCOUNT, config=config)  # type: ignore[arg-type]
    assert updated is not None
    assert updated.version == 1
    fetched = tunnels.configurations.get(created.id, account_id=ACCOUNT)
    assert fetched is not None
    assert fetched.version == 1
    assert fetched.config is not None

    admin.connect(ACCOUNT, created.id, 2)
    assert tunnels.get(created.id, account_id=ACCOUNT).status == "healthy"
    clients = list(tunnels.connections.get(created.id, account_id=ACCOUNT))
    assert len(clients) == 2
    assert all(len(c.conns or []) == 4 for c in clients)
    assert all(c.config_version == 1 for c in clients)
    first = clients[0]
    assert first.id is not None
    connector = tunnels.connectors.get(first.id, account_id=ACCOUNT, tunnel_id=created.id)
    assert connector.id == first.id
    assert connector.conns
    assert connector.conns[0].client_id == first.id
    logs_token = tunnels.management.create(created.id, account_id=ACCOUNT, resources=["logs"])
    assert isinstance(logs_token, str)
    assert logs_token.count(".") == 2

    tunnels.connections.delete(created.id, account_id=ACCOUNT, client_id=first.id)
    assert len(list(tunnels.connections.get(created.id, account_id=ACCOUNT))) == 1
    tunnels.connections.delete(created.id, account_id=ACCOUNT)
    assert list(tunnels.connections.get(created.id, account_id=ACCOUNT)) == []
    assert tunnels.get(created.id, account_id=ACCOUNT).status == "down"

    deleted = tunnels.delete(created.id, account_id=ACCOUNT)
    assert deleted.deleted_at is not None
    assert tunnels.get(created.id, account_id=ACCOUNT).deleted_at is not None
    assert [t.id for t in tunnels.list(account_id=ACCOUNT, is_deleted=True)] == [created.id]
    with pytest.raises(cloudflare.NotFoundError):
        tunnels.token.get(created.id, account_id=ACCOUNT)


def test_sdk_follows_tunnel_pages(cf: cloudflare.Cloudflare) -> None:
    tunnels = cf.zero_trust.tunnels.cloudflared
    for index in range(7):
        tunnels.create(account_id=ACCOUNT, name=f"paged-{index}")
    names = [t.name for t in tunnels.list(account_id=ACCOUNT, per_page=3)]
    assert names == [f"paged-{index}" for index in range(7)]


HOSTS: dict[str, dict[str, Any]] = {
    "ipv4": {"ipv4": "10.0.0.5", "network": {"tunnel_id": TUNNEL_ID}},
    "ipv6": {"ipv6": "fd00::5", "network": {"tunnel_id": TUNNEL_ID}},
    "dual-stack": {"ipv4": "10.0.0.5", "ipv6": "fd00::5", "network": {"tunnel_id": TUNNEL_ID}},
    "hostname": {
        "hostname": "orders.internal.example",
        "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["10.0.0.53", "fd00::53"]},
    },
}
TYPE_FIELDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "http": (
        {
            "http_port": 8080,
            "https_port": 8443,
            "tls_settings": {"cert_verification_mode": "verify_ca"},
        },
        {"https_port": 443},
    ),
    "tcp": (
        {"tcp_port": 5432, "app_protocol": "postgresql"},
        {"tcp_port": 3306, "app_protocol": "mysql"},
    ),
}


@pytest.mark.parametrize("service_type", ["http", "tcp"])
@pytest.mark.parametrize("host_kind", list(HOSTS))
def test_vpc_service_life_cycle_through_the_sdk(
    cf: cloudflare.Cloudflare, host_kind: str, service_type: str
) -> None:
    services = cf.connectivity.directory.services
    host = HOSTS[host_kind]
    first_fields, second_fields = TYPE_FIELDS[service_type]

    # The SDK's overloads want TypedDicts; plain dicts built per case go through **params.
    params: dict[str, Any] = {
        "account_id": ACCOUNT,
        "name": f"{host_kind}-{service_type}",
        "type": service_type,
        "host": host,
        **first_fields,
    }
    raw = services.with_raw_response.create(**params)
    created = raw.parse()
    assert created is not None
    assert created.service_id
    stored = raw.http_response.json()["result"]
    assert stored == {
        "service_id": created.service_id,
        "type": service_type,
        "name": f"{host_kind}-{service_type}",
        "host": host,
        **first_fields,
        "created_at": stored["created_at"],
        "updated_at": stored["created_at"],
    }

    fetched = services.get(created.service_id, account_id=ACCOUNT)
    assert fetched is not None
    assert fetched.service_id == created.service_id
    assert fetched.name == f"{host_kind}-{service_type}"
    assert fetched.type == service_type
    same_type: dict[str, Any] = {"type": service_type}
    other_type: dict[str, Any] = {"type": "tcp" if service_type == "http" else "http"}
    listed = list(services.list(account_id=ACCOUNT, **same_type))
    assert [s.service_id for s in listed] == [created.service_id]
    assert list(services.list(account_id=ACCOUNT, **other_type)) == []

    update: dict[str, Any] = {**params, "name": "renamed", **second_fields}
    for key in first_fields.keys() - second_fields.keys():
        del update[key]  # PUT replaces: what is not sent is cleared
    raw_update = services.with_raw_response.update(created.service_id, **update)
    replaced = raw_update.http_response.json()["result"]
    assert raw_update.parse() is not None
    assert {k: v for k, v in replaced.items() if k not in ("created_at", "updated_at")} == {
        "service_id": created.service_id,
        "type": service_type,
        "name": "renamed",
        "host": host,
        **second_fields,
    }
    assert replaced["created_at"] == stored["created_at"]
    assert replaced["updated_at"] > stored["updated_at"]

    services.delete(created.service_id, account_id=ACCOUNT)  # typed to return None
    with pytest.raises(cloudflare.NotFoundError):
        services.get(created.service_id, account_id=ACCOUNT)


def test_token_verify_on_both_endpoints(
    server: EmulatorServer, admin: AdminClient, cf: cloudflare.Cloudflare
) -> None:
    account_result = cf.accounts.tokens.verify(account_id=ACCOUNT)
    assert account_result is not None
    assert account_result.status == "active"
    with pytest.raises(cloudflare.AuthenticationError):
        cf.user.tokens.verify()  # an account-owned token is unknown to the user endpoint

    admin.create_token("user-token", [ACCOUNT], kind="user", expires_on="2999-01-01T00:00:00Z")
    with cloudflare.Cloudflare(api_token="user-token", base_url=server.url, max_retries=0) as user:
        user_result = user.user.tokens.verify()
        assert user_result is not None
        assert user_result.status == "active"
        assert user_result.expires_on is not None
        assert user_result.expires_on.year == 2999
        # A user token reaches the accounts its user belongs to.
        assert list(user.zero_trust.tunnels.cloudflared.list(account_id=ACCOUNT)) == []


def test_sdk_errors_map_to_its_exception_types(
    cf: cloudflare.Cloudflare, admin: AdminClient
) -> None:
    tunnels = cf.zero_trust.tunnels.cloudflared
    with pytest.raises(cloudflare.NotFoundError):
        tunnels.get(UNKNOWN_UUID, account_id=ACCOUNT)
    tunnels.create(account_id=ACCOUNT, name="dup")
    with pytest.raises(cloudflare.ConflictError):
        tunnels.create(account_id=ACCOUNT, name="dup")
    with pytest.raises(cloudflare.BadRequestError):
        tunnels.create(account_id=ACCOUNT, name="")
    admin.set_token_status(TOKEN, "disabled")
    with pytest.raises(cloudflare.PermissionDeniedError):
        tunnels.get(UNKNOWN_UUID, account_id=ACCOUNT)
    admin.set_token_status(TOKEN, "active")
    admin.set_faults(rate_limit_burst=1, retry_after=3)
    with pytest.raises(cloudflare.RateLimitError) as raised:
        tunnels.get(UNKNOWN_UUID, account_id=ACCOUNT)
    assert raised.value.response.headers["retry-after"] == "3"
    admin.set_faults(error_burst=1, error_status=502)
    with pytest.raises(cloudflare.InternalServerError):
        tunnels.get(UNKNOWN_UUID, account_id=ACCOUNT)
