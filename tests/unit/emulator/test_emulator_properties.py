"""Property-based checks of the VPC-service endpoints with generated bodies, valid and
invalid: never a 5xx, every answer matches the schema (the ``api`` client's event hook), and
valid bodies round-trip exactly through create, get, list and replace."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import httpx
from emulator_support import ACCOUNT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
READ_ONLY = ("service_id", "created_at", "updated_at")

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,  # no example database written into the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

tunnel_ids = st.uuids().map(str)
ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(str)
ports = st.integers(min_value=1, max_value=65535)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


def _not_an_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


def _not_blank(name: str) -> bool:
    return name.strip() != ""


def _tls(mode: str) -> dict[str, str]:
    return {"cert_verification_mode": mode}


# Named functions rather than lambdas in map/filter: Hypothesis reads a lambda's source to
# describe it, which costs more than the whole request round trip.
hostnames = st.lists(label, min_size=1, max_size=4).map(".".join).filter(_not_an_ip)
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(_not_blank)


@st.composite
def hosts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ipv4", "ipv6", "dual", "hostname"]))
    if kind == "hostname":
        network: dict[str, Any] = {"tunnel_id": draw(tunnel_ids)}
        resolvers = draw(
            st.one_of(st.just("absent"), st.none(), st.lists(ipv4s | ipv6s, max_size=3))
        )
        if resolvers != "absent":
            network["resolver_ips"] = resolvers
        return {"hostname": draw(hostnames), "resolver_network": network}
    host: dict[str, Any] = {}
    if kind in ("ipv4", "dual"):
        host["ipv4"] = draw(ipv4s)
    if kind in ("ipv6", "dual"):
        host["ipv6"] = draw(ipv6s)
    host["network"] = {"tunnel_id": draw(tunnel_ids)}
    return host


def _optional(
    draw: st.DrawFn, body: dict[str, Any], key: str, values: st.SearchStrategy[Any]
) -> None:
    if draw(st.booleans()):
        body[key] = draw(values)


@st.composite
def valid_services(draw: st.DrawFn) -> dict[str, Any]:
    service_type = draw(st.sampled_from(["http", "tcp"]))
    body: dict[str, Any] = {"type": service_type, "name": draw(names), "host": draw(hosts())}
    tls = st.none() | st.sampled_from(["verify_full", "verify_ca", "disabled"]).map(_tls)
    _optional(draw, body, "tls_settings", tls)
    if service_type == "http":
        _optional(draw, body, "http_port", st.none() | ports)
        _optional(draw, body, "https_port", st.none() | ports)
    else:
        body["tcp_port"] = draw(ports)
        _optional(draw, body, "app_protocol", st.sampled_from([None, "postgresql", "mysql"]))
    return body


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=8), children, max_size=3
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    _containers,
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "name",
        "type",
        "host",
        "tls_settings",
        "http_port",
        "https_port",
        "tcp_port",
        "app_protocol",
        "ipv4",
        "ipv6",
        "hostname",
        "network",
        "resolver_network",
        "extra",
    ]
)


@st.composite
def mutated_services(draw: st.DrawFn) -> Any:
    """Mostly-valid bodies with one thing broken (or arbitrary JSON now and then)."""
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(json_values)
    body = copy.deepcopy(draw(valid_services()))
    target = body["host"] if draw(st.booleans()) else body
    action = draw(st.sampled_from(["drop", "set", "add"]))
    if action == "drop" and target:
        target.pop(draw(st.sampled_from(sorted(target))))
    else:
        target[draw(field_names)] = draw(json_values)
    return body


def _stored(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in READ_ONLY}


@PROPERTY_SETTINGS
@given(first=valid_services(), second=valid_services())
def test_valid_bodies_round_trip(
    api: httpx.Client, first: dict[str, Any], second: dict[str, Any]
) -> None:
    created = api.post(SERVICES, json=first)
    assert created.status_code == 200, created.text
    result = created.json()["result"]
    assert _stored(result) == first
    path = f"{SERVICES}/{result['service_id']}"
    try:
        assert api.get(path).json()["result"] == result
        listed = api.get(SERVICES, params={"type": first["type"]}).json()["result"]
        assert result in listed
        replaced = api.put(path, json=second)
        assert replaced.status_code == 200, replaced.text
        assert _stored(replaced.json()["result"]) == second
        assert api.get(path).json()["result"] == replaced.json()["result"]
    finally:
        assert api.delete(path).status_code == 200


@PROPERTY_SETTINGS
@given(body=mutated_services())
def test_any_body_gets_a_well_formed_answer_and_never_a_server_error(
    api: httpx.Client, body: Any
) -> None:
    created = api.post(SERVICES, json=body)
    assert created.status_code in (200, 400), created.text
    if created.status_code == 400:
        assert created.json()["errors"][0]["code"] == 1001
        return
    # The mutation happened to keep the body valid: it must then round-trip like any other.
    result = created.json()["result"]
    assert _stored(result) == {k: v for k, v in body.items() if k not in READ_ONLY}
    path = f"{SERVICES}/{result['service_id']}"
    replaced = api.put(path, json=body)
    assert replaced.status_code == 200
    assert api.delete(path).status_code == 200
