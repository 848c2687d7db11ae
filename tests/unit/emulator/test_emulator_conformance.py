"""Conformance of the emulator's answers to Cloudflare's schema, and of the schema checker
itself: it must accept what the schema allows (its own examples included) and catch what it
does not (invented keys, wrong enums, broken envelopes)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emulator_support import ACCOUNT, UNKNOWN_UUID
from schema_check import (
    SCHEMA_PATH,
    SchemaMismatchError,
    match_path,
    validate_failure_envelope,
    validate_httpx_response,
    validate_response,
)

from cloudflare_emulator import AdminClient, EmulatorServer

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"
SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
TUNNEL_TEMPLATE = "/accounts/{account_id}/cfd_tunnel/{tunnel_id}"
SERVICE_BODY = {
    "type": "tcp",
    "name": "db",
    "tcp_port": 5432,
    "app_protocol": None,
    "tls_settings": None,
    "host": {"hostname": "db.internal", "resolver_network": {"tunnel_id": UNKNOWN_UUID}},
}


@pytest.fixture
def seen(server: EmulatorServer) -> Iterator[tuple[httpx.Client, set[tuple[str, str, int]]]]:
    """A client recording (method, path template, status) of every validated answer."""
    answers: set[tuple[str, str, int]] = set()

    def record(response: httpx.Response) -> None:
        validate_httpx_response(response)
        template = match_path(response.request.url.path)
        assert template is not None
        answers.add((response.request.method.lower(), template, response.status_code // 100))

    headers = {"Authorization": "Bearer emulator-test-token-account-a"}
    with httpx.Client(
        base_url=server.url, headers=headers, event_hooks={"response": [record]}
    ) as client:
        yield client, answers


def test_every_schema_operation_answers_valid_successes_and_failures(
    seen: tuple[httpx.Client, set[tuple[str, str, int]]], admin: AdminClient
) -> None:
    api, answers = seen
    missing = f"{TUNNELS}/{UNKNOWN_UUID}"
    for method, path in [
        ("GET", missing), ("PATCH", missing), ("DELETE", missing), ("GET", f"{missing}/token"),
        ("GET", f"{missing}/configurations"), ("PUT", f"{missing}/configurations"),
        ("GET", f"{missing}/connections"), ("DELETE", f"{missing}/connections"),
        ("GET", f"{missing}/connectors/{UNKNOWN_UUID}"), ("POST", f"{missing}/management"),
        ("GET", f"{SERVICES}/{UNKNOWN_UUID}"), ("PUT", f"{SERVICES}/{UNKNOWN_UUID}"),
        ("DELETE", f"{SERVICES}/{UNKNOWN_UUID}"), ("POST", SERVICES), ("POST", TUNNELS),
        ("GET", "/user/tokens/verify"),
    ]:  # fmt: skip
        assert api.request(method, path, json={}).status_code >= 400
    assert api.get(TUNNELS, params={"per_page": 0}).status_code == 400
    assert api.get(SERVICES, params={"per_page": 0}).status_code == 400
    unknown_token = {"Authorization": "Bearer unknown"}
    assert api.get(f"/accounts/{ACCOUNT}/tokens/verify", headers=unknown_token).status_code == 401
    admin.create_token("user-token", [ACCOUNT], kind="user")
    user_token = {"Authorization": "Bearer user-token"}
    assert api.get("/user/tokens/verify", headers=user_token).status_code == 200

    tunnel = api.post(TUNNELS, json={"name": "conformance", "config_src": "cloudflare"}).json()[
        "result"
    ]
    path = f"{TUNNELS}/{tunnel['id']}"
    api.get(TUNNELS)
    api.get(path)
    api.patch(path, json={"name": "renamed"})
    api.patch(path, json={"tunnel_secret": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="})
    api.get(f"{path}/token")
    api.put(
        f"{path}/configurations", json={"config": {"ingress": [{"service": "http_status:404"}]}}
    )
    api.get(f"{path}/configurations")
    connector = admin.connect(ACCOUNT, tunnel["id"], 2)[0]
    api.get(f"{path}/connections")
    api.get(f"{path}/connectors/{connector['id']}")
    api.post(f"{path}/management", json={"resources": ["logs"]})
    api.delete(f"{path}/connections")
    api.delete(path)
    api.get(path)
    service = api.post(SERVICES, json=SERVICE_BODY).json()["result"]
    api.get(SERVICES, params={"type": "tcp"})
    api.get(f"{SERVICES}/{service['service_id']}")
    api.put(f"{SERVICES}/{service['service_id']}", json={**SERVICE_BODY, "tcp_port": 3306})
    api.delete(f"{SERVICES}/{service['service_id']}")
    api.get(f"/accounts/{ACCOUNT}/tokens/verify")

    schema = json.loads(SCHEMA_PATH.read_text())
    expected = {
        (method, template, family)
        for template, operations in schema["paths"].items()
        for method in operations
        for family in (2, 4)
    }
    assert expected <= answers, sorted(expected - answers)


def _tunnel(**changes: Any) -> dict[str, Any]:
    tunnel = {
        "id": "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415",
        "account_tag": ACCOUNT,
        "name": "t",
        "config_src": "cloudflare",
        "remote_config": True,
        "status": "inactive",
        "tun_type": "cfd_tunnel",
        "created_at": "2024-12-04T22:03:26.291225Z",
        "deleted_at": None,
        "conns_active_at": None,
        "conns_inactive_at": "2024-12-04T22:03:26.291225Z",
        "connections": [],
        "metadata": {},
    }
    tunnel.update(changes)
    return tunnel


def _ok(result: Any) -> dict[str, Any]:
    return {"success": True, "errors": [], "messages": [], "result": result}


def test_the_checker_accepts_the_current_tunnel_shape() -> None:
    validate_response("GET", TUNNEL_TEMPLATE, 200, _ok(_tunnel()))
    validate_response("GET", TUNNEL_TEMPLATE, 200, _ok(_tunnel(tun_type="magic")))
    credentials = {"AccountTag": ACCOUNT, "TunnelID": "x", "TunnelName": "t", "TunnelSecret": "s"}
    created = _ok(_tunnel(token="eyJ...", credentials_file=credentials))
    validate_response("POST", "/accounts/{account_id}/cfd_tunnel", 200, created)
    validate_response("PATCH", TUNNEL_TEMPLATE, 200, created)


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [
        ("GET", TUNNEL_TEMPLATE, _ok(_tunnel(invented="x"))),
        ("GET", TUNNEL_TEMPLATE, _ok(_tunnel(tun_type="bogus"))),
        ("GET", TUNNEL_TEMPLATE, _ok(_tunnel(config_src="remote"))),
        ("GET", TUNNEL_TEMPLATE, _ok(_tunnel(created_at="yesterday"))),
        # Only create and a secret-rotating PATCH may carry the credentials.
        ("GET", TUNNEL_TEMPLATE, _ok(_tunnel(token="eyJ..."))),
        ("POST", "/accounts/{account_id}/cfd_tunnel", _ok(_tunnel())),
        ("GET", TUNNEL_TEMPLATE, {"success": True, "errors": [], "result": _tunnel()}),
        ("GET", TUNNEL_TEMPLATE, {**_ok(_tunnel()), "success": False}),
        ("GET", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token", _ok({"token": "x"})),
        (
            "GET",
            "/accounts/{account_id}/connectivity/directory/services/{service_id}",
            _ok(
                {
                    **SERVICE_BODY,
                    "host": {
                        "ipv4": "10.0.0.1",
                        "hostname": "x",
                        "network": {"tunnel_id": UNKNOWN_UUID},
                    },
                }
            ),
        ),
        (
            "GET",
            "/accounts/{account_id}/connectivity/directory/services/{service_id}",
            _ok({**SERVICE_BODY, "app_protocol": "redis"}),
        ),
        (
            "GET",
            "/accounts/{account_id}/connectivity/directory/services/{service_id}",
            _ok({**SERVICE_BODY, "type": "udp"}),
        ),
        ("GET", "/user/tokens/verify", _ok({"id": "x", "status": "revoked"})),
    ],
)
def test_the_checker_catches_what_the_schema_forbids(method: str, template: str, body: Any) -> None:
    with pytest.raises(SchemaMismatchError):
        validate_response(method, template, 200, body)


def test_the_checker_accepts_the_schemas_own_examples() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    template = "/accounts/{account_id}/connectivity/directory/services"
    examples = schema["paths"][template]["post"]["responses"]["200"]["content"]["application/json"]
    for example in examples["examples"].values():
        validate_response("POST", template, 200, copy.deepcopy(example["value"]))


def test_failures_are_checked_against_the_failure_envelope() -> None:
    failure = {
        "success": False,
        "errors": [{"code": 7003, "message": "No route"}],
        "messages": [],
        "result": None,
    }
    for status in (400, 404, 429, 503):
        validate_response("GET", TUNNEL_TEMPLATE, status, failure)
        validate_response("GET", "/user/tokens/verify", status, failure)
        validate_response(
            "DELETE", f"{SERVICES.replace(ACCOUNT, '{account_id}')}/{{service_id}}", status, failure
        )
    validate_failure_envelope(failure)
    for broken in (
        {**failure, "result": {}},
        {**failure, "success": True},
        {**failure, "errors": [{"code": 12, "message": "x"}]},
        {**failure, "errors": [{"message": "x"}]},
    ):
        with pytest.raises(SchemaMismatchError):
            validate_response("GET", TUNNEL_TEMPLATE, 404, broken)


def test_paths_match_their_templates() -> None:
    assert match_path(f"/client/v4{TUNNELS}") == "/accounts/{account_id}/cfd_tunnel"
    assert match_path(f"{TUNNELS}/{UNKNOWN_UUID}/token") == (
        "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token"
    )
    assert match_path("/user/tokens/verify") == "/user/tokens/verify"
    assert (
        match_path(f"/accounts/{ACCOUNT}/tokens/verify") == "/accounts/{account_id}/tokens/verify"
    )
    assert match_path("/accounts/x/unknown") is None
