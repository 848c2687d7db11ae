"""Workers VPC service semantics: the four host shapes, per-type fields, full replacement on
PUT, listing, the per-account limit, and 404s (reference sections 3 and 6)."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from emulator_support import ACCOUNT, OTHER_ACCOUNT, OTHER_TOKEN, UNKNOWN_UUID, error_codes

from cloudflare_emulator import AdminClient, EmulatorServer

SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
IPV4_HOST = {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}}
HOSTNAME_HOST = {"hostname": "db.internal.example", "resolver_network": {"tunnel_id": TUNNEL_ID}}
HTTP = {"type": "http", "name": "web", "host": IPV4_HOST, "http_port": 80, "https_port": 443}
TCP = {"type": "tcp", "name": "db", "host": HOSTNAME_HOST, "tcp_port": 5432}


def _create(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(SERVICES, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def _without_read_only(service: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in service.items() if k not in ("service_id", "created_at", "updated_at")}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _host(**host: Any) -> dict[str, Any]:
    return _with(HTTP, host=host)


LONG_NAME = ".".join(["a" * 63] * 4)  # 255 characters

INVALID_BODIES: dict[str, tuple[Any, str]] = {
    "not an object": (["web"], ""),
    "name missing": (_with(HTTP, name=...), "/name"),
    "name empty": (_with(HTTP, name=""), "/name"),
    "name blank": (_with(HTTP, name="  "), "/name"),
    "name not a string": (_with(HTTP, name=5), "/name"),
    "type missing": (_with(HTTP, type=...), "/type"),
    "type unknown": (_with(HTTP, type="udp"), "/type"),
    "host missing": (_with(HTTP, host=...), "/host"),
    "host not an object": (_with(HTTP, host="10.0.0.1"), "/host"),
    "host empty": (_host(), "/host"),
    "ipv4 invalid": (_host(ipv4="10.0.0.256", network={"tunnel_id": TUNNEL_ID}), "/host/ipv4"),
    "ipv4 holds an ipv6": (_host(ipv4="fd00::1", network={"tunnel_id": TUNNEL_ID}), "/host/ipv4"),
    "ipv4 null": (_host(ipv4=None, network={"tunnel_id": TUNNEL_ID}), "/host/ipv4"),
    "ipv6 invalid": (_host(ipv6="fd00::zz", network={"tunnel_id": TUNNEL_ID}), "/host/ipv6"),
    "ipv6 holds an ipv4": (_host(ipv6="10.0.0.1", network={"tunnel_id": TUNNEL_ID}), "/host/ipv6"),
    "ipv6 with a zone": (
        _host(ipv6="fe80::1%eth0", network={"tunnel_id": TUNNEL_ID}),
        "/host/ipv6",
    ),
    "ip without network": (_host(ipv4="10.0.0.1"), "/host/network"),
    "network not an object": (_host(ipv4="10.0.0.1", network=TUNNEL_ID), "/host/network"),
    "network without tunnel_id": (_host(ipv4="10.0.0.1", network={}), "/host/network/tunnel_id"),
    "tunnel_id not a uuid": (
        _host(ipv4="10.0.0.1", network={"tunnel_id": "tunnel-1"}),
        "/host/network/tunnel_id",
    ),
    "network with resolver_ips": (
        _host(ipv4="10.0.0.1", network={"tunnel_id": TUNNEL_ID, "resolver_ips": []}),
        "/host/network/resolver_ips",
    ),
    "ip with resolver_network": (
        _host(ipv4="10.0.0.1", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host",
    ),
    "hostname mixed with ipv4": (
        _host(hostname="db.example", ipv4="10.0.0.1", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host",
    ),
    "hostname with network": (
        _host(hostname="db.example", network={"tunnel_id": TUNNEL_ID}),
        "/host",
    ),
    "hostname without resolver_network": (_host(hostname="db.example"), "/host"),
    "resolver_network alone": (_host(resolver_network={"tunnel_id": TUNNEL_ID}), "/host"),
    "hostname empty": (
        _host(hostname="", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname too long": (
        _host(hostname=LONG_NAME[:254], resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname with scheme": (
        _host(hostname="https://db.example", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname with path": (
        _host(hostname="db.example/admin", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname with port": (
        _host(hostname="db.example:5432", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname with whitespace": (
        _host(hostname="db example", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname is an ipv4 literal": (
        _host(hostname="10.0.0.1", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "hostname is an ipv6 literal": (
        _host(hostname="fd00::1", resolver_network={"tunnel_id": TUNNEL_ID}),
        "/host/hostname",
    ),
    "resolver_ips not a list": (
        _host(
            hostname="db.example",
            resolver_network={"tunnel_id": TUNNEL_ID, "resolver_ips": "10.0.0.53"},
        ),
        "/host/resolver_network/resolver_ips",
    ),
    "resolver_ips with a name": (
        _host(
            hostname="db.example",
            resolver_network={"tunnel_id": TUNNEL_ID, "resolver_ips": ["dns.local"]},
        ),
        "/host/resolver_network/resolver_ips/0",
    ),
    "host with an unknown key": (
        _host(ipv4="10.0.0.1", network={"tunnel_id": TUNNEL_ID}, port=1),
        "/host/port",
    ),
    "http with tcp_port": (_with(HTTP, tcp_port=5432), "/tcp_port"),
    "http with app_protocol null": (_with(HTTP, app_protocol=None), "/app_protocol"),
    "tcp with http_port": (_with(TCP, http_port=80), "/http_port"),
    "tcp without tcp_port": (_with(TCP, tcp_port=...), "/tcp_port"),
    "tcp_port null": (_with(TCP, tcp_port=None), "/tcp_port"),
    "tcp_port zero": (_with(TCP, tcp_port=0), "/tcp_port"),
    "tcp_port too big": (_with(TCP, tcp_port=65536), "/tcp_port"),
    "tcp_port a string": (_with(TCP, tcp_port="5432"), "/tcp_port"),
    "tcp_port a boolean": (_with(TCP, tcp_port=True), "/tcp_port"),
    "tcp_port a float": (_with(TCP, tcp_port=5432.0), "/tcp_port"),
    "app_protocol unknown": (_with(TCP, app_protocol="redis"), "/app_protocol"),
    "http_port zero": (_with(HTTP, http_port=0), "/http_port"),
    "https_port too big": (_with(HTTP, https_port=70000), "/https_port"),
    "tls_settings a string": (_with(HTTP, tls_settings="verify_full"), "/tls_settings"),
    "tls mode unknown": (
        _with(HTTP, tls_settings={"cert_verification_mode": "strict"}),
        "/tls_settings/cert_verification_mode",
    ),
    "tls mode missing": (_with(HTTP, tls_settings={}), "/tls_settings/cert_verification_mode"),
    "tls with an unknown key": (
        _with(HTTP, tls_settings={"cert_verification_mode": "disabled", "sni": "x"}),
        "/tls_settings/sni",
    ),
    "unknown top-level key": (_with(HTTP, description="web"), "/description"),
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_invalid_bodies_are_refused_on_create_and_replace(api: httpx.Client, case: str) -> None:
    body, pointer = INVALID_BODIES[case]
    created = api.post(SERVICES, json=body)
    assert created.status_code == 400, created.text
    assert error_codes(created) == [1001]
    assert created.json()["errors"][0]["source"]["pointer"] == pointer
    existing = _create(api, HTTP)
    replaced = api.put(f"{SERVICES}/{existing['service_id']}", json=body)
    assert replaced.status_code == 400
    assert error_codes(replaced) == [1001]
    assert api.get(SERVICES).json()["result"] == [existing]  # nothing changed


def test_malformed_json_is_refused(api: httpx.Client) -> None:
    response = api.post(
        SERVICES, content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_codes(response) == [6007]


VALID_BODIES: dict[str, dict[str, Any]] = {
    "ipv4 http with both ports": HTTP,
    "ipv6 http without ports": {
        "type": "http",
        "name": "v6",
        "host": {"ipv6": "2001:db8::1", "network": {"tunnel_id": TUNNEL_ID}},
    },
    "dual stack with null ports and tls": _with(
        HTTP,
        host={"ipv4": "192.0.2.1", "ipv6": "2001:db8::2", "network": {"tunnel_id": TUNNEL_ID}},
        http_port=None,
        https_port=None,
        tls_settings={"cert_verification_mode": "disabled"},
    ),
    "hostname tcp with resolvers and protocol": _with(
        TCP,
        host={
            "hostname": "db.internal.example",
            "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["10.0.0.53", "fd00::53"]},
        },
        app_protocol="mysql",
    ),
    "hostname with null resolver_ips and null tls": _with(
        TCP,
        host={"hostname": "db", "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": None}},
        app_protocol=None,
        tls_settings=None,
    ),
    "hostname of 253 characters": _with(
        TCP, host={"hostname": LONG_NAME[:253], "resolver_network": {"tunnel_id": TUNNEL_ID}}
    ),
}


@pytest.mark.parametrize("case", list(VALID_BODIES))
def test_valid_bodies_are_stored_exactly_as_sent(api: httpx.Client, case: str) -> None:
    body = VALID_BODIES[case]
    created = _create(api, body)
    assert _without_read_only(created) == body
    assert created["created_at"] == created["updated_at"]
    fetched = api.get(f"{SERVICES}/{created['service_id']}").json()["result"]
    assert fetched == created


def test_read_only_fields_in_a_body_are_ignored(api: httpx.Client) -> None:
    created = _create(
        api, {**HTTP, "service_id": UNKNOWN_UUID, "created_at": "2000-01-01T00:00:00Z"}
    )
    assert created["service_id"] != UNKNOWN_UUID
    assert created["created_at"] != "2000-01-01T00:00:00Z"
    assert _without_read_only(created) == HTTP


def test_put_replaces_the_whole_object(api: httpx.Client) -> None:
    created = _create(api, _with(HTTP, tls_settings={"cert_verification_mode": "verify_ca"}))
    path = f"{SERVICES}/{created['service_id']}"
    replacement = {"type": "http", "name": "web", "host": IPV4_HOST, "https_port": 8443}
    replaced = api.put(path, json=replacement).json()["result"]
    assert _without_read_only(replaced) == replacement  # http_port and tls_settings are gone
    assert replaced["service_id"] == created["service_id"]
    assert replaced["created_at"] == created["created_at"]
    assert replaced["updated_at"] > created["updated_at"]
    again = api.put(path, json=replacement).json()["result"]
    assert again["updated_at"] > replaced["updated_at"]
    # The type may change too: it is a full replacement.
    as_tcp = api.put(path, json=TCP).json()["result"]
    assert _without_read_only(as_tcp) == TCP
    assert api.get(path).json()["result"] == as_tcp


def test_unknown_services_are_not_found(api: httpx.Client, server: EmulatorServer) -> None:
    for method in ("GET", "DELETE"):
        response = api.request(method, f"{SERVICES}/{UNKNOWN_UUID}")
        assert response.status_code == 404
        assert error_codes(response) == [7003]
    assert api.put(f"{SERVICES}/{UNKNOWN_UUID}", json=HTTP).status_code == 404
    created = _create(api, HTTP)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as b:
        other = f"/accounts/{OTHER_ACCOUNT}/connectivity/directory/services"
        assert b.get(f"{other}/{created['service_id']}").status_code == 404
        assert b.get(other).json()["result"] == []


def test_delete_answers_a_null_result_and_the_service_is_gone(api: httpx.Client) -> None:
    created = _create(api, TCP)
    response = api.delete(f"{SERVICES}/{created['service_id']}")
    assert response.status_code == 200
    assert response.json() == {"success": True, "errors": [], "messages": [], "result": None}
    assert api.get(f"{SERVICES}/{created['service_id']}").status_code == 404
    assert api.delete(f"{SERVICES}/{created['service_id']}").status_code == 404


def test_list_filters_by_type_and_pages(api: httpx.Client) -> None:
    ids = [_create(api, _with(HTTP, name=f"web-{i}"))["service_id"] for i in range(3)]
    ids += [_create(api, _with(TCP, name=f"db-{i}"))["service_id"] for i in range(2)]
    everything = api.get(SERVICES).json()
    assert [s["service_id"] for s in everything["result"]] == ids
    assert everything["result_info"] == {
        "page": 1,
        "per_page": 1000,
        "count": 5,
        "total_count": 5,
        "total_pages": 1,
    }
    assert [s["name"] for s in api.get(SERVICES, params={"type": "tcp"}).json()["result"]] == [
        "db-0",
        "db-1",
    ]
    page = api.get(SERVICES, params={"per_page": 2, "page": 3}).json()
    assert [s["service_id"] for s in page["result"]] == ids[4:]
    assert page["result_info"]["total_pages"] == 3
    assert api.get(SERVICES, params={"per_page": 2, "page": 4}).json()["result"] == []
    for params in ({"per_page": 0}, {"per_page": 1001}, {"page": 0}, {"type": "udp"}):
        response = api.get(SERVICES, params=params)
        assert (response.status_code, error_codes(response)) == (400, [1002]), params


def test_the_per_account_limit_refuses_one_more(api: httpx.Client, admin: AdminClient) -> None:
    assert admin.settings()["services_per_account"] == 1000  # Cloudflare's documented limit
    admin.update_settings(services_per_account=3)
    created = [_create(api, _with(HTTP, name=f"s{i}")) for i in range(3)]
    refused = api.post(SERVICES, json=HTTP)
    assert refused.status_code == 400
    assert error_codes(refused) == [1030]
    assert "Maximum number of services" in refused.json()["errors"][0]["message"]
    # The limit is per account, and deleting one makes room again.
    with httpx.Client(
        base_url=api.base_url, headers={"Authorization": f"Bearer {OTHER_TOKEN}"}
    ) as b:
        other = f"/accounts/{OTHER_ACCOUNT}/connectivity/directory/services"
        assert b.post(other, json=HTTP).status_code == 200
    assert api.delete(f"{SERVICES}/{created[0]['service_id']}").status_code == 200
    assert api.post(SERVICES, json=HTTP).status_code == 200


def test_known_tunnel_check_is_optional(api: httpx.Client, admin: AdminClient) -> None:
    assert api.post(SERVICES, json=HTTP).status_code == 200  # default: not checked
    admin.update_settings(require_known_tunnel=True)
    assert api.post(SERVICES, json=HTTP).status_code == 400
    tunnel = api.post(f"/accounts/{ACCOUNT}/cfd_tunnel", json={"name": "t"}).json()["result"]
    body = _with(TCP, host={"hostname": "db", "resolver_network": {"tunnel_id": tunnel["id"]}})
    assert api.post(SERVICES, json=body).status_code == 200
