"""Tunnel semantics of the emulator: defaults, conflicts, soft delete, cascade, connector-driven
status, listing filters and pages, configuration versions (reference sections 2 and 6)."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from emulator_support import ACCOUNT, OTHER_ACCOUNT, OTHER_TOKEN, UNKNOWN_UUID, error_codes

from cloudflare_emulator import AdminClient, EmulatorServer

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"


def _create(api: httpx.Client, name: str, **body: Any) -> dict[str, Any]:
    response = api.post(TUNNELS, json={"name": name, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _get(api: httpx.Client, tunnel_id: str) -> dict[str, Any]:
    response = api.get(f"{TUNNELS}/{tunnel_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _names(api: httpx.Client, **params: Any) -> list[str]:
    response = api.get(TUNNELS, params=params)
    assert response.status_code == 200, response.text
    return [t["name"] for t in response.json()["result"]]


def test_create_defaults_to_a_locally_managed_tunnel_with_a_generated_secret(
    api: httpx.Client,
) -> None:
    tunnel = _create(api, "plain")
    assert tunnel["config_src"] == "local"
    assert tunnel["remote_config"] is False
    assert tunnel["status"] == "inactive"
    assert tunnel["conns_active_at"] is None
    assert tunnel["conns_inactive_at"] == tunnel["created_at"]
    assert tunnel["account_tag"] == ACCOUNT
    assert tunnel["metadata"] == {}
    token = json.loads(base64.b64decode(tunnel["token"]))
    assert set(token) == {"a", "s", "t"}
    assert len(base64.b64decode(token["s"], validate=True)) >= 32
    assert tunnel["credentials_file"] == {
        "AccountTag": ACCOUNT,
        "TunnelID": tunnel["id"],
        "TunnelName": "plain",
        "TunnelSecret": token["s"],
    }
    # Ordinary reads do not carry the credentials.
    assert "token" not in _get(api, tunnel["id"])
    assert "credentials_file" not in _get(api, tunnel["id"])


def test_a_given_secret_is_used_and_the_token_endpoint_returns_the_same_token(
    api: httpx.Client,
) -> None:
    secret = base64.b64encode(b"k" * 40).decode()
    tunnel = _create(api, "with-secret", tunnel_secret=secret, config_src="cloudflare")
    assert json.loads(base64.b64decode(tunnel["token"]))["s"] == secret
    assert api.get(f"{TUNNELS}/{tunnel['id']}/token").json()["result"] == tunnel["token"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({}, "/name"),
        ({"name": ""}, "/name"),
        ({"name": "   "}, "/name"),
        ({"name": 7}, "/name"),
        ({"name": "x", "config_src": "remote"}, "/config_src"),
        ({"name": "x", "tunnel_secret": "not base64!"}, "/tunnel_secret"),
        ({"name": "x", "tunnel_secret": base64.b64encode(b"short").decode()}, "/tunnel_secret"),
        ({"name": "x", "tunnel_secret": 12}, "/tunnel_secret"),
        ({"name": "x", "colour": "blue"}, "/colour"),
        (["name"], ""),
    ],
)
def test_invalid_create_bodies_are_refused(api: httpx.Client, body: Any, pointer: str) -> None:
    response = api.post(TUNNELS, json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == pointer


def test_malformed_json_is_refused(api: httpx.Client) -> None:
    response = api.post(TUNNELS, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_codes(response) == [6007]


def test_duplicate_live_name_conflicts_but_a_deleted_name_is_free(api: httpx.Client) -> None:
    first = _create(api, "taken")
    response = api.post(TUNNELS, json={"name": "taken"})
    assert response.status_code == 409
    assert error_codes(response) == [1013]
    other = _create(api, "other")
    rename = api.patch(f"{TUNNELS}/{other['id']}", json={"name": "taken"})
    assert rename.status_code == 409
    assert error_codes(rename) == [1013]
    assert api.delete(f"{TUNNELS}/{first['id']}").status_code == 200
    assert _create(api, "taken")["id"] != first["id"]


def test_unknown_ids_and_other_accounts_tunnels_are_not_found(
    api: httpx.Client, server: EmulatorServer
) -> None:
    tunnel = _create(api, "mine")
    for path in ("", "/token", "/configurations", "/connections", f"/connectors/{UNKNOWN_UUID}"):
        response = api.get(f"{TUNNELS}/{UNKNOWN_UUID}{path}")
        assert (response.status_code, error_codes(response)) == (404, [7003]), path
    assert api.patch(f"{TUNNELS}/{UNKNOWN_UUID}", json={"name": "x"}).status_code == 404
    assert api.delete(f"{TUNNELS}/{UNKNOWN_UUID}").status_code == 404
    assert api.get(f"{TUNNELS}/not-a-uuid").status_code == 404
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as b:
        response = b.get(f"/accounts/{OTHER_ACCOUNT}/cfd_tunnel/{tunnel['id']}")
        assert response.status_code == 404


def test_soft_delete_keeps_the_tunnel_readable_and_listable(api: httpx.Client) -> None:
    kept = _create(api, "kept")
    gone = _create(api, "gone")
    deleted = api.delete(f"{TUNNELS}/{gone['id']}").json()["result"]
    assert deleted["deleted_at"] is not None
    assert deleted["id"] == gone["id"]
    assert _get(api, gone["id"])["deleted_at"] == deleted["deleted_at"]
    assert _names(api) == ["kept", "gone"]
    assert _names(api, is_deleted="false") == ["kept"]
    assert _names(api, is_deleted="true") == ["gone"]
    assert api.get(TUNNELS, params={"is_deleted": "maybe"}).status_code == 400
    # Everything but reading answers 404 for a deleted tunnel, a second delete included.
    assert api.delete(f"{TUNNELS}/{gone['id']}").status_code == 404
    assert api.patch(f"{TUNNELS}/{gone['id']}", json={"name": "again"}).status_code == 404
    assert api.get(f"{TUNNELS}/{gone['id']}/token").status_code == 404
    assert _get(api, kept["id"])["deleted_at"] is None


def test_status_follows_simulated_connectors(api: httpx.Client, admin: AdminClient) -> None:
    tunnel = _create(api, "status", config_src="cloudflare")
    connectors = admin.connect(ACCOUNT, tunnel["id"], 3)
    assert len(connectors) == 3
    assert all(len(c["conns"]) == 4 for c in connectors)
    conn = connectors[0]["conns"][0]
    assert conn["client_id"] == connectors[0]["id"]
    assert conn["is_pending_reconnect"] is False
    assert len({c["colo_name"] for c in connectors[0]["conns"]}) == 2
    up = _get(api, tunnel["id"])
    assert up["status"] == "healthy"
    assert up["conns_active_at"]
    assert up["conns_inactive_at"] is None
    assert up["connections"] == []  # deprecated field: connectors come from /connections
    listed = api.get(f"{TUNNELS}/{tunnel['id']}/connections").json()["result"]
    assert [c["id"] for c in listed] == [c["id"] for c in connectors]
    one = api.get(f"{TUNNELS}/{tunnel['id']}/connectors/{connectors[1]['id']}").json()["result"]
    assert one == connectors[1]
    assert _names(api, status="healthy") == ["status"]

    assert admin.disconnect(ACCOUNT, tunnel["id"]) == 3
    down = _get(api, tunnel["id"])
    assert down["status"] == "down"
    assert down["conns_active_at"] is None
    assert down["conns_inactive_at"] is not None
    assert _names(api, status="down") == ["status"]
    assert api.get(TUNNELS, params={"status": "sleepy"}).status_code == 400


def test_connections_delete_drops_one_connector_or_all(
    api: httpx.Client, admin: AdminClient
) -> None:
    tunnel = _create(api, "conns")
    connectors = admin.connect(ACCOUNT, tunnel["id"], 2)
    path = f"{TUNNELS}/{tunnel['id']}/connections"
    response = api.delete(path, params={"client_id": connectors[0]["id"]})
    assert response.status_code == 200
    assert response.json()["result"] == {}
    assert [c["id"] for c in api.get(path).json()["result"]] == [connectors[1]["id"]]
    assert api.delete(path, params={"client_id": UNKNOWN_UUID}).status_code == 200  # idempotent
    assert api.delete(path).status_code == 200
    assert api.get(path).json()["result"] == []
    assert _get(api, tunnel["id"])["status"] == "down"


def test_delete_is_refused_while_connectors_exist_unless_cascade(
    api: httpx.Client, admin: AdminClient
) -> None:
    tunnel = _create(api, "busy")
    admin.connect(ACCOUNT, tunnel["id"], 1)
    refused = api.delete(f"{TUNNELS}/{tunnel['id']}")
    assert refused.status_code == 400
    assert error_codes(refused) == [1022]
    assert "active connections" in refused.json()["errors"][0]["message"]
    assert _get(api, tunnel["id"])["deleted_at"] is None
    cascaded = api.delete(f"{TUNNELS}/{tunnel['id']}", params={"cascade": "true"})
    assert cascaded.status_code == 200
    assert cascaded.json()["result"]["deleted_at"]
    assert api.get(f"{TUNNELS}/{tunnel['id']}/connections").json()["result"] == []


def test_list_pages_and_per_page_bounds(api: httpx.Client) -> None:
    for index in range(25):
        _create(api, f"t{index:02d}")
    first = api.get(TUNNELS).json()
    assert len(first["result"]) == 20  # default page size
    assert first["result_info"] == {
        "page": 1,
        "per_page": 20,
        "count": 20,
        "total_count": 25,
        "total_pages": 2,
    }
    second = api.get(TUNNELS, params={"page": 2}).json()
    assert [t["name"] for t in second["result"]] == [f"t{i}" for i in range(20, 25)]
    assert second["result_info"]["count"] == 5
    assert api.get(TUNNELS, params={"page": 3}).json()["result"] == []
    assert len(api.get(TUNNELS, params={"per_page": 1000}).json()["result"]) == 25
    assert api.get(TUNNELS, params={"per_page": 7, "page": 4}).json()["result_info"]["count"] == 4
    for params in (
        {"per_page": 0},
        {"per_page": 1001},
        {"page": 0},
        {"page": "x"},
        {"per_page": "1.5"},
    ):
        response = api.get(TUNNELS, params=params)
        assert response.status_code == 400, params
        assert error_codes(response) == [1002]


def test_list_filters(api: httpx.Client) -> None:
    alpha = _create(api, "vpc1-alpha")
    _create(api, "vpc1-beta")
    _create(api, "edge-gamma")
    assert _names(api, name="vpc1-beta") == ["vpc1-beta"]
    assert _names(api, name="vpc1") == []
    assert _names(api, uuid=alpha["id"]) == ["vpc1-alpha"]
    assert _names(api, include_prefix="vpc1-") == ["vpc1-alpha", "vpc1-beta"]
    assert _names(api, exclude_prefix="vpc1-") == ["edge-gamma"]
    assert _names(api, existed_at=alpha["created_at"]) == ["vpc1-alpha"]
    assert _names(api, existed_at="2000-01-01T00:00:00Z") == []
    assert api.get(TUNNELS, params={"existed_at": "yesterday"}).status_code == 400


def test_edit_renames_and_only_a_secret_rotation_returns_credentials(api: httpx.Client) -> None:
    tunnel = _create(api, "before")
    renamed = api.patch(f"{TUNNELS}/{tunnel['id']}", json={"name": "after"}).json()["result"]
    assert renamed["name"] == "after"
    assert "token" not in renamed
    assert api.patch(f"{TUNNELS}/{tunnel['id']}", json={}).json()["result"]["name"] == "after"
    secret = base64.b64encode(b"s" * 32).decode()
    rotated = api.patch(f"{TUNNELS}/{tunnel['id']}", json={"tunnel_secret": secret}).json()[
        "result"
    ]
    assert rotated["token"] != tunnel["token"]
    assert rotated["credentials_file"]["TunnelSecret"] == secret
    assert api.get(f"{TUNNELS}/{tunnel['id']}/token").json()["result"] == rotated["token"]
    bad = api.patch(f"{TUNNELS}/{tunnel['id']}", json={"config_src": "cloudflare"})
    assert bad.status_code == 400


def test_configuration_versions_increment_and_reach_connectors(
    api: httpx.Client, admin: AdminClient
) -> None:
    tunnel = _create(api, "configured", config_src="cloudflare")
    path = f"{TUNNELS}/{tunnel['id']}/configurations"
    empty = api.get(path).json()["result"]
    assert empty["version"] == 0
    assert empty["config"] is None
    assert empty["tunnel_id"] == tunnel["id"]
    connector = admin.connect(ACCOUNT, tunnel["id"], 1)[0]
    assert connector["config_version"] == 0
    config = {
        "ingress": [
            {"hostname": "a.example.com", "service": "http://a:80"},
            {"service": "http_status:404"},
        ]
    }
    for expected in (1, 2):
        result = api.put(path, json={"config": config}).json()["result"]
        assert result["version"] == expected
        assert result["config"] == config
    assert api.get(path).json()["result"]["version"] == 2
    listed = api.get(f"{TUNNELS}/{tunnel['id']}/connections").json()["result"]
    assert listed[0]["config_version"] == 2
    no_catch_all = {"config": {"ingress": [{"hostname": "a.example.com", "service": "http://a"}]}}
    assert api.put(path, json=no_catch_all).status_code == 400
    assert api.put(path, json={"config": {"ingress": [{"hostname": "x"}]}}).status_code == 400
    assert api.put(path, json={"config": "yaml"}).status_code == 400


def test_management_token_needs_the_logs_resource(api: httpx.Client) -> None:
    tunnel = _create(api, "managed")
    path = f"{TUNNELS}/{tunnel['id']}/management"
    assert api.post(path, json={"resources": ["logs"]}).status_code == 200
    assert api.post(path, json={"resources": ["metrics"]}).status_code == 400
    assert api.post(path, json={}).status_code == 400


def test_unknown_routes_and_methods_answer_with_the_failure_envelope(api: httpx.Client) -> None:
    response = api.get(f"/accounts/{ACCOUNT}/cfd_tunnels")
    assert response.status_code == 404
    assert error_codes(response) == [7003]
    assert response.json()["result"] is None
    assert response.json()["success"] is False
    assert api.get("/nothing/here").status_code == 404
    wrong_method = api.put(TUNNELS, json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json()["success"] is False
