"""Authentication and authorisation: 401 for missing or unknown tokens, 403 for the wrong
account, a disabled or expired token or a missing permission, and the two verify endpoints
(reference section 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emulator_support import (
    ACCOUNT,
    OTHER_ACCOUNT,
    TOKEN,
    UNKNOWN_UUID,
    error_codes,
    validating_client,
)

from cloudflare_emulator import AdminClient, EmulatorServer

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"
SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
TUNNEL = f"{TUNNELS}/{UNKNOWN_UUID}"
SERVICE = f"{SERVICES}/{UNKNOWN_UUID}"


@pytest.fixture
def client_for(server: EmulatorServer) -> Iterator[dict[str, httpx.Client]]:
    """Clients by token, built on demand and closed after the test."""
    clients: dict[str, httpx.Client] = {}

    class _Clients(dict[str, httpx.Client]):
        def __missing__(self, token: str) -> httpx.Client:
            client = clients[token] = validating_client(server.url, token)
            return client

    yield _Clients()
    for client in clients.values():
        client.close()


def test_missing_and_unknown_tokens_are_unauthenticated(server: EmulatorServer) -> None:
    with validating_client(server.url, token=None) as anonymous:
        response = anonymous.get(TUNNELS)
        assert response.status_code == 401
        assert error_codes(response) == [10000]
    with validating_client(server.url, token="nobody") as stranger:
        response = stranger.get(TUNNELS)
        assert response.status_code == 401
        assert error_codes(response) == [10000]


def test_a_malformed_authorization_header_is_a_bad_request(server: EmulatorServer) -> None:
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer two words", TOKEN):
        response = httpx.get(server.url + TUNNELS, headers={"Authorization": header})
        assert response.status_code == 400, header
        error = response.json()["errors"][0]
        assert error["code"] == 6003
        assert error["error_chain"][0]["code"] == 6111


def test_a_token_cannot_reach_another_account(api: httpx.Client) -> None:
    response = api.get(f"/accounts/{OTHER_ACCOUNT}/cfd_tunnel")
    assert response.status_code == 403
    assert error_codes(response) == [9109]
    response = api.get(f"/accounts/{OTHER_ACCOUNT}/connectivity/directory/services")
    assert response.status_code == 403


def test_disabled_and_expired_tokens_are_refused(
    admin: AdminClient, client_for: dict[str, httpx.Client]
) -> None:
    admin.create_token("expiring", [ACCOUNT], expires_on="2001-01-01T00:00:00Z")
    refused = client_for["expiring"].get(TUNNELS)
    assert refused.status_code == 403
    assert error_codes(refused) == [9109]
    admin.create_token("expired", [ACCOUNT], status="expired")
    assert client_for["expired"].get(TUNNELS).status_code == 403

    assert client_for[TOKEN].get(TUNNELS).status_code == 200
    admin.revoke_token(TOKEN)
    assert client_for[TOKEN].get(TUNNELS).status_code == 403
    admin.set_token_status(TOKEN, "active")
    assert client_for[TOKEN].get(TUNNELS).status_code == 200
    admin.delete_token(TOKEN)
    assert client_for[TOKEN].get(TUNNELS).status_code == 401


# (method, path, json body, permission it needs)
PROTECTED: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", TUNNELS, {"name": "t"}, "tunnel:write"),
    ("GET", TUNNELS, None, "tunnel:read"),
    ("GET", TUNNEL, None, "tunnel:read"),
    ("PATCH", TUNNEL, {}, "tunnel:write"),
    ("DELETE", TUNNEL, None, "tunnel:write"),
    ("GET", f"{TUNNEL}/token", None, "tunnel:write"),
    ("GET", f"{TUNNEL}/configurations", None, "tunnel:read"),
    ("PUT", f"{TUNNEL}/configurations", {"config": {}}, "tunnel:write"),
    ("GET", f"{TUNNEL}/connections", None, "tunnel:read"),
    ("DELETE", f"{TUNNEL}/connections", None, "tunnel:write"),
    ("GET", f"{TUNNEL}/connectors/{UNKNOWN_UUID}", None, "tunnel:read"),
    ("POST", f"{TUNNEL}/management", {"resources": ["logs"]}, "tunnel:write"),
    ("POST", SERVICES, {}, "connectivity:admin"),
    ("GET", SERVICES, None, "connectivity:read"),
    ("GET", SERVICE, None, "connectivity:read"),
    ("PUT", SERVICE, {}, "connectivity:admin"),
    ("DELETE", SERVICE, None, "connectivity:admin"),
]
IMPLIED = {"tunnel:read": "tunnel:write", "connectivity:read": "connectivity:admin"}
ALL = ["tunnel:read", "tunnel:write", "connectivity:read", "connectivity:admin"]


@pytest.mark.parametrize(("method", "path", "body", "permission"), PROTECTED)
def test_each_operation_needs_its_permission(
    admin: AdminClient,
    client_for: dict[str, httpx.Client],
    method: str,
    path: str,
    body: object,
    permission: str,
) -> None:
    allowed = [permission, IMPLIED[permission]] if permission in IMPLIED else [permission]
    admin.create_token("without", [ACCOUNT], permissions=[p for p in ALL if p not in allowed])
    refused = client_for["without"].request(method, path, json=body)
    assert refused.status_code == 403
    assert error_codes(refused) == [9109]
    for granted in allowed:
        admin.create_token("with", [ACCOUNT], permissions=[granted])
        answered = client_for["with"].request(method, path, json=body)
        assert answered.status_code not in (401, 403), (granted, answered.text)


def test_account_verify_reports_the_status_of_any_known_account_token(
    admin: AdminClient, client_for: dict[str, httpx.Client]
) -> None:
    verify = f"/accounts/{ACCOUNT}/tokens/verify"
    active = client_for[TOKEN].get(verify).json()["result"]
    assert active["status"] == "active"
    assert len(active["id"]) == 32
    assert set(active) == {"id", "status"}
    admin.revoke_token(TOKEN)
    assert client_for[TOKEN].get(verify).json()["result"] == {
        "id": active["id"],
        "status": "disabled",
    }
    admin.create_token(
        "old", [ACCOUNT], not_before="2000-01-01T00:00:00Z", expires_on="2001-01-01T00:00:00Z"
    )
    expired = client_for["old"].get(verify).json()["result"]
    assert expired["status"] == "expired"
    assert expired["not_before"] == "2000-01-01T00:00:00Z"
    assert expired["expires_on"] == "2001-01-01T00:00:00Z"

    unknown = client_for["nobody"].get(verify)
    assert unknown.status_code == 401
    assert error_codes(unknown) == [1000]
    wrong_account = client_for["old"].get(f"/accounts/{OTHER_ACCOUNT}/tokens/verify")
    assert wrong_account.status_code == 403


def test_user_verify_knows_only_user_tokens(
    server: EmulatorServer, admin: AdminClient, client_for: dict[str, httpx.Client]
) -> None:
    refused = client_for[TOKEN].get("/user/tokens/verify")
    assert refused.status_code == 401
    assert error_codes(refused) == [1000]
    assert refused.json()["errors"][0]["message"] == "Invalid API Token"
    admin.create_token("user", [ACCOUNT], kind="user")
    assert client_for["user"].get("/user/tokens/verify").json()["result"]["status"] == "active"
    assert client_for["user"].get(f"/accounts/{ACCOUNT}/tokens/verify").status_code == 401
    admin.set_token_status("user", "disabled")
    assert client_for["user"].get("/user/tokens/verify").json()["result"]["status"] == "disabled"
    with validating_client(server.url, token=None) as anonymous:
        assert anonymous.get("/user/tokens/verify").status_code == 401
