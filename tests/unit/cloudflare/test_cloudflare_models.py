"""The wire models: tolerant parsing of responses, exact request bodies, VPC host shapes and
drift comparison."""

from __future__ import annotations

from typing import Any

import pytest
from cf_fakes import ACCOUNT, SERVICE_ID, TUNNEL_ID, tunnel_json
from pydantic import ValidationError

from cftunnel_operator.cloudflare import (
    Connector,
    TLSSettings,
    TokenVerification,
    Tunnel,
    TunnelConfig,
    TunnelConfiguration,
    VPCService,
    VPCServiceHost,
    VPCServiceSpec,
    vpc_service_drifted,
)

OTHER_TUNNEL = "0191dce4-9ab4-7fce-b660-8e5dec5172da"


# --- tunnels, connectors, configuration, tokens ----------------------------------------


def test_tunnel_ignores_unknown_keys_and_secrets() -> None:
    raw = tunnel_json(
        token="eyJhIjoi-run-token",
        credentials_file={"TunnelSecret": "c2VjcmV0"},
        brand_new_field={"x": 1},
        remote_config=True,
    )
    tunnel = Tunnel.model_validate(raw)
    assert tunnel.id == TUNNEL_ID
    assert tunnel.name == "edge-office"
    assert tunnel.config_src == "cloudflare"
    assert tunnel.status == "inactive"
    assert not tunnel.is_deleted
    dumped = repr(tunnel) + str(tunnel.model_dump())
    assert "run-token" not in dumped
    assert "c2VjcmV0" not in dumped


def test_tunnel_accepts_nulls_for_collections_and_reports_deletion() -> None:
    tunnel = Tunnel.model_validate(
        tunnel_json(connections=None, metadata=None, deleted_at="2025-01-01T00:00:00Z")
    )
    assert tunnel.connections == []
    assert tunnel.metadata == {}
    assert tunnel.is_deleted


def test_connector_counts_live_connections() -> None:
    connector = Connector.model_validate(
        {
            "id": "1bedc50d-42b3-473c-b108-ff3d10c0d925",
            "version": "2026.8.2",
            "arch": "linux_amd64",
            "config_version": 3,
            "features": [],
            "run_at": "2026-08-20T10:00:00Z",
            "conns": [
                {"id": "a", "colo_name": "FRA", "is_pending_reconnect": False},
                {"id": "b", "colo_name": "AMS", "is_pending_reconnect": True},
                {"id": "c", "colo_name": "FRA", "opened_at": "2026-08-20T10:00:01Z"},
            ],
            "something_new": True,
        }
    )
    assert connector.active_connections == 2
    assert connector.conns[0].colo_name == "FRA"


def test_tunnel_configuration_round_trips_camel_case_keys() -> None:
    raw = {
        "tunnel_id": TUNNEL_ID,
        "account_id": ACCOUNT,
        "version": 3,
        "source": "cloudflare",
        "created_at": "2026-08-20T10:00:00Z",
        "config": {
            "ingress": [
                {
                    "hostname": "app.example.com",
                    "service": "http://web.default.svc.cluster.local:80",
                    "originRequest": {"noTLSVerify": False},
                },
                {"service": "http_status:404"},
            ],
            "originRequest": {"connectTimeout": 30},
        },
    }
    configuration = TunnelConfiguration.model_validate(raw)
    assert configuration.version == 3
    assert configuration.config is not None
    assert configuration.config.to_request_body() == {"config": raw["config"]}


def test_tunnel_config_built_by_field_names_serialises_wire_keys() -> None:
    config = TunnelConfig(ingress=[], origin_request={"connectTimeout": 5})
    assert config.to_request_body() == {
        "config": {"ingress": [], "originRequest": {"connectTimeout": 5}}
    }


@pytest.mark.parametrize(
    ("status", "active"), [("active", True), ("disabled", False), ("expired", False)]
)
def test_token_verification_is_active_only_when_active(status: str, active: bool) -> None:
    result = TokenVerification.model_validate(
        {
            "id": "ed17574386854bf78a67040be0a770b0",
            "status": status,
            "expires_on": "2030-01-01T00:00:00Z",
        }
    )
    assert result.is_active is active


# --- VPC service hosts ---------------------------------------------------------------------

HOST_SHAPES: list[tuple[VPCServiceHost, dict[str, Any]]] = [
    (
        VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1"),
        {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}},
    ),
    (
        VPCServiceHost.ip(TUNNEL_ID, ipv6="fe80::1"),
        {"ipv6": "fe80::1", "network": {"tunnel_id": TUNNEL_ID}},
    ),
    (
        VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1", ipv6="fe80::1"),
        {"ipv4": "10.0.0.1", "ipv6": "fe80::1", "network": {"tunnel_id": TUNNEL_ID}},
    ),
    (
        VPCServiceHost.dns(TUNNEL_ID, "db.internal.example"),
        {"hostname": "db.internal.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
    ),
    (
        VPCServiceHost.dns(
            TUNNEL_ID, "db.internal.example", resolver_ips=["10.0.0.53", "fd00::53"]
        ),
        {
            "hostname": "db.internal.example",
            "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["10.0.0.53", "fd00::53"]},
        },
    ),
]


@pytest.mark.parametrize(("host", "wire"), HOST_SHAPES)
def test_each_host_shape_serialises_exactly(host: VPCServiceHost, wire: dict[str, Any]) -> None:
    spec = VPCServiceSpec(name="svc", type="http", host=host)
    assert spec.to_request_body() == {"name": "svc", "type": "http", "host": wire}
    assert VPCServiceHost.model_validate(wire) == host
    assert host.tunnel_id == TUNNEL_ID


def test_empty_resolver_list_is_not_sent() -> None:
    host = VPCServiceHost.dns(TUNNEL_ID, "db.internal.example", resolver_ips=[])
    assert host.model_dump(exclude_none=True) == {
        "hostname": "db.internal.example",
        "resolver_network": {"tunnel_id": TUNNEL_ID},
    }


@pytest.mark.parametrize(
    ("wire", "complaint"),
    [
        ({"network": {"tunnel_id": TUNNEL_ID}}, "needs one of"),
        ({"ipv4": "10.0.0.1"}, "needs network"),
        ({"hostname": "db.example"}, "needs resolver_network"),
        (
            {"ipv4": "10.0.0.1", "hostname": "db.example", "network": {"tunnel_id": TUNNEL_ID}},
            "not both",
        ),
        ({"ipv4": "10.0.0.1", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "needs network"),
        (
            {
                "ipv4": "10.0.0.1",
                "network": {"tunnel_id": TUNNEL_ID},
                "resolver_network": {"tunnel_id": TUNNEL_ID},
            },
            "not resolver_network",
        ),
        (
            {
                "hostname": "db.example",
                "network": {"tunnel_id": TUNNEL_ID},
                "resolver_network": {"tunnel_id": TUNNEL_ID},
            },
            "not network",
        ),
        ({"ipv4": "fe80::1", "network": {"tunnel_id": TUNNEL_ID}}, "not an IPv4"),
        ({"ipv6": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}}, "not an IPv6"),
        ({"ipv4": "10.0.0.300", "network": {"tunnel_id": TUNNEL_ID}}, "not an IP"),
        ({"ipv4": "10.0.0.1", "network": {"tunnel_id": "not-a-uuid"}}, "UUID"),
        (
            {"hostname": "https://db.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
            "bare name",
        ),
        (
            {"hostname": "db.example:5432", "resolver_network": {"tunnel_id": TUNNEL_ID}},
            "bare name",
        ),
        ({"hostname": "db.example/x", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "bare name"),
        ({"hostname": "db example", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "bare name"),
        ({"hostname": "", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "1 to 253"),
        ({"hostname": "a" * 254, "resolver_network": {"tunnel_id": TUNNEL_ID}}, "1 to 253"),
        ({"hostname": "10.0.0.1", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "IP address"),
        ({"hostname": "bad_.-x..", "resolver_network": {"tunnel_id": TUNNEL_ID}}, "valid DNS"),
        (
            {
                "hostname": "db.example",
                "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["dns"]},
            },
            "not an IP",
        ),
    ],
)
def test_invalid_host_shapes_are_refused(wire: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        VPCServiceHost.model_validate(wire)


# --- VPC service specs ------------------------------------------------------------------


def test_http_spec_body_matches_cloudflare_example() -> None:
    spec = VPCServiceSpec(
        name="web-server",
        type="http",
        http_port=8080,
        https_port=8443,
        host=VPCServiceHost.ip("0191dce4-9ab4-7fce-b660-8e5dec5172da", ipv4="10.0.0.1"),
    )
    assert spec.to_request_body() == {
        "type": "http",
        "name": "web-server",
        "http_port": 8080,
        "https_port": 8443,
        "host": {
            "ipv4": "10.0.0.1",
            "network": {"tunnel_id": "0191dce4-9ab4-7fce-b660-8e5dec5172da"},
        },
    }


def test_tcp_spec_body_with_tls_settings() -> None:
    spec = VPCServiceSpec(
        name="postgres-db",
        type="tcp",
        tcp_port=5432,
        app_protocol="postgresql",
        tls_settings=TLSSettings(cert_verification_mode="verify_ca"),
        host=VPCServiceHost.dns(TUNNEL_ID, "db.internal.example", resolver_ips=["10.0.0.53"]),
    )
    assert spec.to_request_body() == {
        "name": "postgres-db",
        "type": "tcp",
        "tcp_port": 5432,
        "app_protocol": "postgresql",
        "tls_settings": {"cert_verification_mode": "verify_ca"},
        "host": {
            "hostname": "db.internal.example",
            "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["10.0.0.53"]},
        },
    }


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"type": "http", "tcp_port": 5432}, "belong to type tcp"),
        ({"type": "http", "app_protocol": "mysql"}, "belong to type tcp"),
        ({"type": "tcp", "tcp_port": 5432, "http_port": 80}, "belong to type http"),
        ({"type": "tcp"}, "needs tcp_port"),
        ({"type": "udp"}, "type"),
        ({"type": "http", "http_port": 0}, "greater than or equal to 1"),
        ({"type": "http", "https_port": 65536}, "less than or equal to 65535"),
        ({"type": "tcp", "tcp_port": 5432, "app_protocol": "redis"}, "app_protocol"),
        ({"type": "http", "tls_settings": {"cert_verification_mode": "sometimes"}}, "one of"),
        ({"type": "http", "name": ""}, "at least 1 character"),
        ({"type": "http", "colour": "blue"}, "Extra inputs"),
    ],
)
def test_invalid_specs_are_refused(fields: dict[str, Any], complaint: str) -> None:
    values = {"name": "svc", "host": VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1"), **fields}
    with pytest.raises(ValidationError, match=complaint):
        VPCServiceSpec.model_validate(values)


def test_service_response_parses_schema_example_with_unknown_keys() -> None:
    service = VPCService.model_validate(
        {
            "service_id": SERVICE_ID,
            "type": "http",
            "name": "web-server",
            "host": {
                "hostname": "api.example.com",
                "resolver_network": {"tunnel_id": "0191dce4-9ab4-7fce-b660-8e5dec5172da"},
            },
            "created_at": "2024-01-15T09:30:00Z",
            "updated_at": "2024-01-15T09:30:00Z",
            "future_field": [1, 2],
        }
    )
    assert service.service_id == SERVICE_ID
    assert service.host.hostname == "api.example.com"
    assert service.tls_settings is None


# --- drift --------------------------------------------------------------------------------


def observed(**fields: Any) -> VPCService:
    return VPCService.model_validate({"service_id": SERVICE_ID, "name": "svc", **fields})


def http_spec(**fields: Any) -> VPCServiceSpec:
    values: dict[str, Any] = {
        "name": "svc",
        "type": "http",
        "host": VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1"),
        **fields,
    }
    return VPCServiceSpec.model_validate(values)


IP_HOST = {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}}


@pytest.mark.parametrize(
    "server_echo",
    [
        {},
        {"http_port": 80, "https_port": 443},
        {"tls_settings": None},
        {"tls_settings": {"cert_verification_mode": "verify_full"}},
        {
            "http_port": 80,
            "https_port": 443,
            "tls_settings": {"cert_verification_mode": "verify_full"},
        },
    ],
)
def test_absent_and_default_compare_equal(server_echo: dict[str, Any]) -> None:
    remote = observed(type="http", host=IP_HOST, **server_echo)
    for desired in (
        http_spec(),
        http_spec(http_port=80, https_port=443),
        http_spec(tls_settings=TLSSettings(cert_verification_mode="verify_full")),
    ):
        assert desired.matches(remote)
        assert not vpc_service_drifted(desired, remote)


def test_addresses_and_names_compare_by_value() -> None:
    desired = VPCServiceSpec(
        name="svc",
        type="tcp",
        tcp_port=5432,
        host=VPCServiceHost.dns(TUNNEL_ID, "DB.Internal.Example.", resolver_ips=["fd00::53"]),
    )
    remote = observed(
        type="tcp",
        tcp_port=5432,
        host={
            "hostname": "db.internal.example",
            "resolver_network": {"tunnel_id": TUNNEL_ID.upper(), "resolver_ips": ["fd00:0:0::53"]},
        },
    )
    assert desired.matches(remote)


@pytest.mark.parametrize(
    ("desired", "remote"),
    [
        (http_spec(name="other"), {"type": "http", "host": IP_HOST}),
        (http_spec(http_port=8080), {"type": "http", "host": IP_HOST}),
        # One port set restricts the scheme; the server's absent https_port must stay absent.
        (http_spec(http_port=80), {"type": "http", "host": IP_HOST}),
        (http_spec(), {"type": "http", "host": IP_HOST, "https_port": 8443}),
        (http_spec(), {"type": "http", "host": {**IP_HOST, "ipv4": "10.0.0.2"}}),
        (
            http_spec(),
            {"type": "http", "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": OTHER_TUNNEL}}},
        ),
        (
            http_spec(),
            {"type": "http", "host": {**IP_HOST, "ipv6": "fe80::1"}},
        ),
        (
            http_spec(),
            {
                "type": "http",
                "host": IP_HOST,
                "tls_settings": {"cert_verification_mode": "disabled"},
            },
        ),
        (
            VPCServiceSpec(
                name="svc",
                type="tcp",
                tcp_port=5432,
                host=VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1"),
            ),
            {"type": "tcp", "host": IP_HOST, "tcp_port": 5432, "app_protocol": "postgresql"},
        ),
        (
            VPCServiceSpec(
                name="svc",
                type="tcp",
                tcp_port=5432,
                host=VPCServiceHost.dns(TUNNEL_ID, "db.example", resolver_ips=["10.0.0.53"]),
            ),
            {
                "type": "tcp",
                "tcp_port": 5432,
                "host": {"hostname": "db.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
            },
        ),
        (http_spec(), {"type": "tcp", "host": IP_HOST, "tcp_port": 80}),
    ],
)
def test_real_differences_are_drift(desired: VPCServiceSpec, remote: dict[str, Any]) -> None:
    assert vpc_service_drifted(desired, observed(**remote))


def test_specs_are_immutable() -> None:
    spec = http_spec()
    with pytest.raises(ValidationError):
        spec.name = "changed"  # type: ignore[misc]
