"""The admin API: request log and counters (by stable operation names), state dump, reset,
edits behind the API's back, auto-connect, and the guarantee that no API token is ever
logged or dumped."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from emulator_support import ACCOUNT, OTHER_ACCOUNT, OTHER_TOKEN, TOKEN, UNKNOWN_UUID, wait_for

from cloudflare_emulator import AdminClient, AdminError, EmulatorServer

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"
SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
SERVICE_BODY = {
    "type": "http",
    "name": "web",
    "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": UNKNOWN_UUID}},
    "http_port": 80,
    "tls_settings": {"cert_verification_mode": "verify_full"},
}
OPERATIONS = {
    "tokens.verify_account",
    "tokens.verify_user",
    "tunnels.create",
    "tunnels.list",
    "tunnels.get",
    "tunnels.edit",
    "tunnels.delete",
    "tunnels.token",
    "tunnels.configurations.get",
    "tunnels.configurations.put",
    "tunnels.connections.list",
    "tunnels.connections.delete",
    "tunnels.connector.get",
    "tunnels.management.create",
    "vpc_services.create",
    "vpc_services.list",
    "vpc_services.get",
    "vpc_services.replace",
    "vpc_services.delete",
}


def _exercise_every_operation(api: httpx.Client, admin: AdminClient) -> None:
    api.get(f"/accounts/{ACCOUNT}/tokens/verify")
    api.get("/user/tokens/verify")
    tunnel = api.post(TUNNELS, json={"name": "all-ops"}).json()["result"]
    path = f"{TUNNELS}/{tunnel['id']}"
    api.get(TUNNELS)
    api.get(path)
    api.patch(path, json={"name": "all-ops-2"})
    api.get(f"{path}/token")
    api.get(f"{path}/configurations")
    api.put(f"{path}/configurations", json={"config": {}})
    connector = admin.connect(ACCOUNT, tunnel["id"], 1)[0]
    api.get(f"{path}/connections")
    api.get(f"{path}/connectors/{connector['id']}")
    api.delete(f"{path}/connections")
    api.post(f"{path}/management", json={"resources": ["logs"]})
    api.delete(path)
    service = api.post(SERVICES, json=SERVICE_BODY).json()["result"]
    api.get(SERVICES)
    api.get(f"{SERVICES}/{service['service_id']}")
    api.put(f"{SERVICES}/{service['service_id']}", json=SERVICE_BODY)
    api.delete(f"{SERVICES}/{service['service_id']}")


def test_every_operation_is_logged_under_its_stable_name(
    api: httpx.Client, admin: AdminClient
) -> None:
    _exercise_every_operation(api, admin)
    records = admin.requests()
    assert {r["operation"] for r in records} == OPERATIONS
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    first = records[0]
    assert set(first) >= {"seq", "time", "method", "path", "operation", "status", "account_id"}
    assert first["method"] == "GET"
    assert first["path"].startswith("/client/v4/accounts/")
    assert first["account_id"] == ACCOUNT
    assert isinstance(first["time"], float)
    counters = admin.counters()
    assert counters["tokens.verify_user"] == {"401": 1}
    assert counters["tunnels.create"] == {"200": 1}
    assert admin.count("tunnels.get") == 1
    assert admin.count("tunnels.get", 404) == 0


def test_log_filters_and_clearing(
    api: httpx.Client, admin: AdminClient, server: EmulatorServer
) -> None:
    api.get(TUNNELS)
    mark = admin.last_seq()
    api.get(TUNNELS)
    api.get(f"{TUNNELS}/{UNKNOWN_UUID}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as b:
        b.get(f"/accounts/{OTHER_ACCOUNT}/cfd_tunnel")
        b.get("/no/such/route")
    since = admin.requests(since_seq=mark)
    assert [r["operation"] for r in since] == [
        "tunnels.list",
        "tunnels.get",
        "tunnels.list",
        "unknown",
    ]
    assert [r["status"] for r in since] == [200, 404, 200, 404]
    # A request without an account in its path is filed under its token's account.
    assert since[-1]["account_id"] == OTHER_ACCOUNT
    assert len(admin.requests(account_id=OTHER_ACCOUNT)) == 2
    assert admin.counters(account_id=ACCOUNT) == {
        "tunnels.list": {"200": 2},
        "tunnels.get": {"404": 1},
    }
    admin.clear_requests()
    assert admin.requests() == []
    assert admin.counters() == {}
    api.get(TUNNELS)
    assert admin.requests()[0]["seq"] > mark  # sequence numbers never restart


def test_no_api_token_appears_in_the_log_or_the_state_dump(
    server: EmulatorServer, admin: AdminClient
) -> None:
    secret = "s3cr3t-token-value-that-must-never-leak"
    admin.seed(ACCOUNT, secret)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as client:
        client.post(TUNNELS, json={"name": "leak-check"})
        client.get(f"/accounts/{OTHER_ACCOUNT}/cfd_tunnel")  # 403
        client.get("/user/tokens/verify")  # 401
    admin.revoke_token(secret)
    dumps = json.dumps([admin.requests(), admin.counters(), admin.state(), admin.faults()])
    assert secret not in dumps
    assert "leak-check" in dumps  # the dump does show the stored objects


def test_state_dump_shows_stored_objects_and_connectors(
    api: httpx.Client, admin: AdminClient
) -> None:
    tunnel = api.post(TUNNELS, json={"name": "dumped"}).json()["result"]
    service = api.post(SERVICES, json=SERVICE_BODY).json()["result"]
    admin.connect(ACCOUNT, tunnel["id"], 2)
    state = admin.state()
    assert set(state["accounts"]) == {ACCOUNT, OTHER_ACCOUNT}
    [stored] = admin.tunnels(ACCOUNT)
    assert stored["id"] == tunnel["id"]
    assert stored["status"] == "healthy"
    assert len(stored["connectors"]) == 2
    assert stored["configuration"]["version"] == 0
    assert tunnel["credentials_file"]["TunnelSecret"] not in json.dumps(state)
    assert admin.vpc_services(ACCOUNT) == [service]
    assert {t["kind"] for t in state["tokens"]} == {"account"}


def test_reset_forgets_everything_or_keeps_credentials(
    api: httpx.Client, admin: AdminClient
) -> None:
    api.post(TUNNELS, json={"name": "to-forget"})
    admin.set_faults(latency_ms=1)
    admin.reset(keep_credentials=True)
    assert api.get(TUNNELS).json()["result"] == []
    assert admin.faults()["latency_ms"] == 0
    assert admin.requests()[-1]["operation"] == "tunnels.list"
    admin.reset()
    assert api.get(TUNNELS).status_code == 401
    assert admin.accounts() == []


def test_raw_service_edits_bypass_validation(api: httpx.Client, admin: AdminClient) -> None:
    service = api.post(SERVICES, json=SERVICE_BODY).json()["result"]
    edited = admin.edit_vpc_service(
        ACCOUNT, service["service_id"], {"http_port": 8080, "tls_settings": None, "surprise": 1}
    )
    assert edited["http_port"] == 8080
    assert "tls_settings" not in edited
    assert edited["surprise"] == 1
    assert edited["updated_at"] > service["updated_at"]
    fetched = api.get(f"{SERVICES}/{service['service_id']}").json()
    assert fetched["result"] == edited
    admin.delete_vpc_service(ACCOUNT, service["service_id"])
    assert api.get(f"{SERVICES}/{service['service_id']}").status_code == 404
    with pytest.raises(AdminError) as raised:
        admin.edit_vpc_service(ACCOUNT, service["service_id"], {})
    assert raised.value.status == 404


def test_raw_tunnel_edits_simulate_dashboard_changes(api: httpx.Client, admin: AdminClient) -> None:
    tunnel = api.post(TUNNELS, json={"name": "dash"}).json()["result"]
    admin.edit_tunnel(ACCOUNT, tunnel["id"], {"name": "renamed-in-dashboard"})
    assert api.get(f"{TUNNELS}/{tunnel['id']}").json()["result"]["name"] == "renamed-in-dashboard"
    admin.edit_tunnel(ACCOUNT, tunnel["id"], {"deleted_at": "2030-01-01T00:00:00Z"})
    assert api.get(TUNNELS, params={"is_deleted": "false"}).json()["result"] == []
    with pytest.raises(AdminError):
        admin.edit_tunnel(ACCOUNT, tunnel["id"], {"status": "healthy"})


def test_connector_admin_errors(admin: AdminClient, api: httpx.Client) -> None:
    with pytest.raises(AdminError) as raised:
        admin.connect(ACCOUNT, UNKNOWN_UUID, 1)
    assert raised.value.status == 404
    tunnel = api.post(TUNNELS, json={"name": "c"}).json()["result"]
    with pytest.raises(AdminError):
        admin.connect(ACCOUNT, tunnel["id"], 101)
    connectors = admin.connect(ACCOUNT, tunnel["id"], 1, version="2025.7.0", arch="linux_arm64")
    assert connectors[0]["version"] == "2025.7.0"
    assert connectors[0]["arch"] == "linux_arm64"
    assert connectors[0]["conns"][0]["client_version"] == "2025.7.0"


def test_auto_connect_attaches_connectors_to_new_remote_tunnels(
    api: httpx.Client, admin: AdminClient
) -> None:
    admin.set_auto_connect(2, delay_seconds=0.05)
    remote = api.post(TUNNELS, json={"name": "remote", "config_src": "cloudflare"}).json()["result"]
    local = api.post(TUNNELS, json={"name": "local"}).json()["result"]
    assert remote["status"] == "inactive"

    def healthy() -> dict[str, Any] | None:
        current: dict[str, Any] = api.get(f"{TUNNELS}/{remote['id']}").json()["result"]
        return current if current["status"] == "healthy" else None

    wait_for(healthy)
    assert len(api.get(f"{TUNNELS}/{remote['id']}/connections").json()["result"]) == 2
    assert api.get(f"{TUNNELS}/{local['id']}").json()["result"]["status"] == "inactive"
    # Connections dropped through the API stay dropped, so the tunnel can be deleted.
    api.delete(f"{TUNNELS}/{remote['id']}/connections")
    assert api.delete(f"{TUNNELS}/{remote['id']}").status_code == 200


def test_unknown_admin_endpoints_and_bad_bodies(server: EmulatorServer, admin: AdminClient) -> None:
    response = httpx.get(server.admin_url + "/nope")
    assert response.status_code == 404
    assert "error" in response.json()
    assert httpx.post(server.admin_url + "/tokens", content=b"[").status_code == 400
    with pytest.raises(AdminError):
        admin.create_token("t", [ACCOUNT], kind="robot")
    with pytest.raises(AdminError):
        admin.create_token("t", [ACCOUNT], permissions=["dns:edit"])
    with pytest.raises(AdminError):
        admin.update_settings(services_per_account=0)
    with pytest.raises(AdminError):
        admin.set_token_status("never-created", "disabled")


def test_user_tokens_and_token_updates(api: httpx.Client, admin: AdminClient) -> None:
    view = admin.create_token("multi", [ACCOUNT, "abcdefabcdefabcdefabcdefabcdefab"], kind="user")
    assert view["kind"] == "user"
    assert "abcdefabcdefabcdefabcdefabcdefab" in admin.accounts()
    updated = admin.update_token("multi", permissions=["tunnel:read"], account_ids=[ACCOUNT])
    assert updated["permissions"] == ["tunnel:read"]
    assert updated["id"] == view["id"]
    assert TOKEN not in json.dumps(updated)
