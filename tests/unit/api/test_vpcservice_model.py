"""VPCServiceSpec and VPCServiceStatus: parsing, defaults, host forms, the Worker binding."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from cftunnel_operator.api import (
    VPCServiceSpec,
    VPCServiceStatus,
    derive_binding_name,
    worker_binding,
)

TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
SERVICE_ID = "550e8400-e29b-41d4-a716-446655440000"

FULL_SPEC: dict[str, Any] = {
    "tunnelRef": {"name": "office", "namespace": "edge"},
    "cloudflare": {
        "accountId": "0123456789abcdef0123456789abcdef",
        "apiTokenSecretRef": {"name": "cf", "key": "api-token"},
    },
    "serviceName": "shop-orders-db",
    "type": "tcp",
    "host": {"hostname": "orders.internal.example", "resolverIPs": ["10.0.0.53", "fd00::53"]},
    "ports": {"tcp": 5432},
    "appProtocol": "postgresql",
    "tls": {"certVerificationMode": "verify_ca"},
    "deletionPolicy": "Retain",
    "bindingName": "ORDERS",
}


def test_minimal_spec_gets_the_crd_defaults() -> None:
    spec = VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": {"ipv4": "10.0.0.5"}})
    assert spec.type == "http"
    assert spec.deletion_policy == "Delete"
    assert spec.to_body() == {
        "tunnelId": TUNNEL_ID,
        "host": {"ipv4": "10.0.0.5"},
        "type": "http",
        "deletionPolicy": "Delete",
    }


def test_full_spec_round_trips_with_camel_case_keys() -> None:
    spec = VPCServiceSpec.from_body(FULL_SPEC)
    assert spec.to_body() == FULL_SPEC
    assert spec.host.resolver_ips == ["10.0.0.53", "fd00::53"]
    assert spec.tls is not None
    assert spec.tls.cert_verification_mode == "verify_ca"
    assert spec.app_protocol == "postgresql"
    assert spec.ports is not None
    assert spec.ports.tcp == 5432


def test_tls_mode_defaults_to_verify_full() -> None:
    spec = VPCServiceSpec.from_body({**FULL_SPEC, "tls": {}})
    assert spec.tls is not None
    assert spec.tls.cert_verification_mode == "verify_full"


@pytest.mark.parametrize(
    ("host", "form"),
    [
        pytest.param({"hostname": "db.internal"}, "hostname", id="hostname"),
        pytest.param({"ipv4": "10.0.0.5"}, "ip", id="ipv4"),
        pytest.param({"ipv6": "fd00::5"}, "ip", id="ipv6"),
        pytest.param({"ipv4": "10.0.0.5", "ipv6": "fd00::5"}, "ip", id="dual-stack"),
        pytest.param({"service": {"name": "orders"}}, "service", id="service"),
    ],
)
def test_host_form(host: dict[str, Any], form: str) -> None:
    assert VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": host}).host.form == form


@pytest.mark.parametrize(
    "host",
    [
        pytest.param({}, id="none"),
        pytest.param({"hostname": "db", "ipv4": "10.0.0.5"}, id="hostname-and-ip"),
        pytest.param({"service": {"name": "db"}, "ipv6": "fd00::5"}, id="service-and-ip"),
    ],
)
def test_host_needs_exactly_one_form(host: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one form"):
        VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": host})


@pytest.mark.parametrize(
    "tunnel",
    [
        pytest.param({}, id="neither"),
        pytest.param({"tunnelId": TUNNEL_ID, "tunnelRef": {"name": "office"}}, id="both"),
    ],
)
def test_spec_needs_exactly_one_tunnel(tunnel: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of tunnelRef and tunnelId"):
        VPCServiceSpec.from_body({**tunnel, "host": {"hostname": "db"}})


def test_service_host_dns_name() -> None:
    spec = VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": {"service": {"name": "db"}}})
    assert spec.host.service is not None
    assert spec.host.service.dns_name(default_namespace="shop") == "db.shop.svc.cluster.local"
    other = spec.host.service.model_copy(update={"namespace": "data"})
    assert other.dns_name(default_namespace="shop", cluster_domain="k8s.example") == (
        "db.data.svc.k8s.example"
    )


def test_tunnel_ref_namespace_defaults_to_own() -> None:
    spec = VPCServiceSpec.from_body({"tunnelRef": {"name": "office"}, "host": {"hostname": "db"}})
    assert spec.tunnel_ref is not None
    assert spec.tunnel_ref.namespace_or("shop") == "shop"
    assert VPCServiceSpec.from_body(FULL_SPEC).tunnel_ref.namespace_or("shop") == "edge"  # type: ignore[union-attr]


def test_effective_service_name() -> None:
    spec = VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": {"hostname": "db"}})
    assert spec.effective_service_name(namespace="shop", name="orders-db") == "shop-orders-db"
    assert spec.effective_service_name(namespace="shop", name="db", prefix="eu1-") == "eu1-shop-db"
    named = VPCServiceSpec.from_body(FULL_SPEC)
    assert (
        named.effective_service_name(namespace="shop", name="x", prefix="eu1-") == "shop-orders-db"
    )


@pytest.mark.parametrize(
    ("name", "binding"),
    [
        pytest.param("orders-db", "ORDERS_DB", id="dash"),
        pytest.param("orders.db.v2", "ORDERS_DB_V2", id="dots"),
        pytest.param("api", "API", id="plain"),
        pytest.param("2fa-api", "_2FA_API", id="leading-digit"),
    ],
)
def test_binding_name_derivation(name: str, binding: str) -> None:
    assert derive_binding_name(name) == binding
    assert re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", binding)


def test_binding_name_override() -> None:
    spec = VPCServiceSpec.from_body(FULL_SPEC)
    assert spec.effective_binding_name("orders-db") == "ORDERS"
    derived = VPCServiceSpec.from_body({**FULL_SPEC, "bindingName": ""})
    assert derived.effective_binding_name("orders-db") == "ORDERS_DB"


def test_worker_binding_is_the_wrangler_entry_as_compact_json() -> None:
    snippet = worker_binding("ORDERS_DB", SERVICE_ID)
    assert json.loads(snippet) == {"binding": "ORDERS_DB", "service_id": SERVICE_ID, "remote": True}
    assert snippet == f'{{"binding":"ORDERS_DB","service_id":"{SERVICE_ID}","remote":true}}'
    assert "\n" not in snippet


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"type": "udp"}, "type", id="unknown-type"),
        pytest.param({"ports": {"tcp": 70000}}, "tcp", id="port-range"),
        pytest.param({"appProtocol": "redis"}, "appProtocol", id="unknown-app-protocol"),
        pytest.param({"tls": {"certVerificationMode": "none"}}, "certVerificationMode", id="tls"),
    ],
)
def test_invalid_values_are_refused(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        VPCServiceSpec.from_body({"tunnelId": TUNNEL_ID, "host": {"hostname": "db"}, **body})


def test_status_round_trips() -> None:
    body = {
        "observedGeneration": 1,
        "serviceId": SERVICE_ID,
        "serviceName": "shop-orders-db",
        "tunnelId": TUNNEL_ID,
        "accountId": "0123456789abcdef0123456789abcdef",
        "binding": worker_binding("ORDERS_DB", SERVICE_ID),
        "conditions": [{"type": "TunnelResolved", "status": "True", "reason": "Resolved",
                        "message": "", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
    }  # fmt: skip
    assert VPCServiceStatus.from_body(body).to_body() == body
