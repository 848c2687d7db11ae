"""The Cloudflare request body built from a VPCService spec: every host form, both types, and
nothing sent that the spec leaves out (Cloudflare then applies its own defaults)."""

from __future__ import annotations

from typing import Any

import pytest

from cftunnel_operator.api.vpcservice import VPCServiceSpec
from cftunnel_operator.cloudflare import VPCService, vpc_service_drifted
from cftunnel_operator.reconcile.vpcservice_body import desired_vpc_service, host_name

TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
SERVICE_ID = "550e8400-e29b-41d4-a716-446655440000"


def body(spec: dict[str, Any], *, cluster_domain: str = "cluster.local") -> dict[str, Any]:
    parsed = VPCServiceSpec.from_body({"tunnelRef": {"name": "office"}, **spec})
    request = desired_vpc_service(
        parsed,
        service_name="shop-orders",
        tunnel_id=TUNNEL_ID,
        namespace="shop",
        cluster_domain=cluster_domain,
    )
    return request.to_request_body()


@pytest.mark.parametrize(
    ("host", "wire_host"),
    [
        pytest.param(
            {"ipv4": "10.0.0.5"},
            {"ipv4": "10.0.0.5", "network": {"tunnel_id": TUNNEL_ID}},
            id="ipv4",
        ),
        pytest.param(
            {"ipv6": "fd00::5"},
            {"ipv6": "fd00::5", "network": {"tunnel_id": TUNNEL_ID}},
            id="ipv6",
        ),
        pytest.param(
            {"ipv4": "10.0.0.5", "ipv6": "fd00::5"},
            {"ipv4": "10.0.0.5", "ipv6": "fd00::5", "network": {"tunnel_id": TUNNEL_ID}},
            id="dual-stack",
        ),
        pytest.param(
            {"hostname": "orders.internal.example"},
            {"hostname": "orders.internal.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
            id="hostname",
        ),
        pytest.param(
            {"hostname": "orders.internal.example", "resolverIPs": ["10.0.0.53", "fd00::53"]},
            {
                "hostname": "orders.internal.example",
                "resolver_network": {
                    "tunnel_id": TUNNEL_ID,
                    "resolver_ips": ["10.0.0.53", "fd00::53"],
                },
            },
            id="hostname-with-resolvers",
        ),
        pytest.param(
            {"hostname": "orders.internal.example", "resolverIPs": []},
            {"hostname": "orders.internal.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
            id="hostname-empty-resolvers",
        ),
        pytest.param(
            {"service": {"name": "orders"}},
            {
                "hostname": "orders.shop.svc.cluster.local",
                "resolver_network": {"tunnel_id": TUNNEL_ID},
            },
            id="service-own-namespace",
        ),
        pytest.param(
            {"service": {"name": "orders", "namespace": "db"}, "resolverIPs": ["10.96.0.10"]},
            {
                "hostname": "orders.db.svc.cluster.local",
                "resolver_network": {"tunnel_id": TUNNEL_ID, "resolver_ips": ["10.96.0.10"]},
            },
            id="service-other-namespace-with-resolver",
        ),
    ],
)
def test_each_host_form_nests_the_tunnel_where_cloudflare_expects(
    host: dict[str, Any], wire_host: dict[str, Any]
) -> None:
    assert body({"host": host}) == {"name": "shop-orders", "type": "http", "host": wire_host}


def test_service_host_uses_the_configured_cluster_domain() -> None:
    sent = body({"host": {"service": {"name": "orders"}}}, cluster_domain="corp.internal")
    assert sent["host"]["hostname"] == "orders.shop.svc.corp.internal"


def test_host_name_is_none_for_ip_hosts() -> None:
    spec = VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": {"ipv4": "10.0.0.5"}})
    assert host_name(spec.host, namespace="shop", cluster_domain="cluster.local") is None


def test_http_ports_and_tls_are_sent_by_their_wire_names() -> None:
    sent = body(
        {
            "host": {"ipv4": "10.0.0.5"},
            "ports": {"http": 8080, "https": 8443},
            "tls": {"certVerificationMode": "verify_ca"},
        }
    )
    assert sent == {
        "name": "shop-orders",
        "type": "http",
        "host": {"ipv4": "10.0.0.5", "network": {"tunnel_id": TUNNEL_ID}},
        "http_port": 8080,
        "https_port": 8443,
        "tls_settings": {"cert_verification_mode": "verify_ca"},
    }


def test_only_one_http_port_sends_only_that_port() -> None:
    sent = body({"host": {"ipv4": "10.0.0.5"}, "ports": {"https": 443}})
    assert sent["https_port"] == 443
    assert "http_port" not in sent


def test_tcp_sends_port_and_app_protocol_and_no_http_ports() -> None:
    sent = body(
        {
            "type": "tcp",
            "host": {"hostname": "db.internal.example"},
            "ports": {"tcp": 5432},
            "appProtocol": "postgresql",
        }
    )
    assert sent == {
        "name": "shop-orders",
        "type": "tcp",
        "host": {"hostname": "db.internal.example", "resolver_network": {"tunnel_id": TUNNEL_ID}},
        "tcp_port": 5432,
        "app_protocol": "postgresql",
    }


def test_tcp_without_app_protocol_leaves_it_out() -> None:
    sent = body({"type": "tcp", "host": {"ipv4": "10.0.0.5"}, "ports": {"tcp": 3306}})
    assert "app_protocol" not in sent
    assert sent["tcp_port"] == 3306


def test_spec_defaults_are_not_sent() -> None:
    assert body({"host": {"ipv4": "10.0.0.5"}}) == {
        "name": "shop-orders",
        "type": "http",
        "host": {"ipv4": "10.0.0.5", "network": {"tunnel_id": TUNNEL_ID}},
    }


def test_cloudflare_echoing_defaults_is_not_drift() -> None:
    spec = VPCServiceSpec.from_body({"tunnelRef": {"name": "office"}, "host": {"ipv4": "10.0.0.5"}})
    desired = desired_vpc_service(
        spec,
        service_name="shop-orders",
        tunnel_id=TUNNEL_ID,
        namespace="shop",
        cluster_domain="cluster.local",
    )
    echoed = VPCService.model_validate(
        {
            **desired.to_request_body(),
            "service_id": SERVICE_ID,
            "http_port": 80,
            "https_port": 443,
            "tls_settings": {"cert_verification_mode": "verify_full"},
        }
    )
    assert not vpc_service_drifted(desired, echoed)


def test_a_new_tunnel_id_is_drift() -> None:
    spec = VPCServiceSpec.from_body({"tunnelRef": {"name": "office"}, "host": {"ipv4": "10.0.0.5"}})
    desired = desired_vpc_service(
        spec,
        service_name="shop-orders",
        tunnel_id=TUNNEL_ID,
        namespace="shop",
        cluster_domain="cluster.local",
    )
    other = "0191dce4-9ab4-7fce-b660-8e5dec5172da"
    stored = {**desired.to_request_body(), "service_id": SERVICE_ID}
    stored["host"] = {"ipv4": "10.0.0.5", "network": {"tunnel_id": other}}
    assert vpc_service_drifted(desired, VPCService.model_validate(stored))
