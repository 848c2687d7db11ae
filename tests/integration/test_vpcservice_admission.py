"""The VPCService CRD at admission, on a real kube-apiserver: what users get back from
``kubectl apply`` for bad objects (a message naming the field and saying what to change), and
the defaults applied to good ones.

Everything is sent with server-side dry run except the printer-column check, in a namespace no
operator watches.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
SERVICE_ID = "550e8400-e29b-41d4-a716-446655440000"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"

VALID_HTTP: dict[str, Any] = {
    "tunnelRef": {"name": "office"},
    "host": {"hostname": "orders.internal.example"},
    "ports": {"http": 8080},
}
VALID_TCP: dict[str, Any] = {
    "tunnelId": TUNNEL_ID,
    "type": "tcp",
    "host": {"ipv4": "10.0.0.5"},
    "ports": {"tcp": 5432},
}


@pytest.fixture(scope="module")
def admission_namespace(controlplane: ControlPlane, crds: list[str]) -> Iterator[str]:
    name = f"adm-vpcsvc-{secrets.token_hex(3)}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def vpc_service(spec: dict[str, Any], name: str = "orders-db") -> dict[str, Any]:
    return {
        "apiVersion": "cftunnel.dev/v1alpha1",
        "kind": "VPCService",
        "metadata": {"name": name},
        "spec": spec,
    }


def http(**changes: Any) -> dict[str, Any]:
    """The valid http spec with some top-level fields replaced (None removes one)."""
    return _changed(VALID_HTTP, changes)


def tcp(**changes: Any) -> dict[str, Any]:
    """The valid tcp spec with some top-level fields replaced (None removes one)."""
    return _changed(VALID_TCP, changes)


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def dry_run(
    controlplane: ControlPlane, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return controlplane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip


INVALID = [
    # (id, spec, field path in the error, part of the message)
    ("no-tunnel", http(tunnelRef=None),
     "spec.tunnelRef", "spec.tunnelRef or spec.tunnelId is required"),
    ("tunnel-ref-and-tunnel-id", http(tunnelId=TUNNEL_ID),
     "spec.tunnelId", "mutually exclusive"),
    ("tunnel-id-not-uuid", tcp(tunnelId="office"),
     "spec.tunnelId", "lowercase UUID"),
    ("tunnel-ref-without-name", http(tunnelRef={"namespace": "edge"}),
     "spec.tunnelRef.name", "Required value"),
    ("tunnel-ref-name-invalid", http(tunnelRef={"name": "Office"}),
     "spec.tunnelRef.name", "must be the name of a Tunnel object"),
    ("tunnel-ref-namespace-invalid", http(tunnelRef={"name": "office", "namespace": "edge_1"}),
     "spec.tunnelRef.namespace", "must be a namespace name"),
    ("account-id-invalid", http(cloudflare={"accountId": "0123"}),
     "spec.cloudflare.accountId", "32 lowercase hexadecimal"),
    ("service-name-invalid", http(serviceName="orders db"),
     "spec.serviceName", "letters, digits, '-', '_'"),
    ("type-unknown", http(type="udp"),
     "spec.type", 'supported values: "http", "tcp"'),
    ("host-missing", http(host=None),
     "spec.host", "Required value"),
    ("host-empty", http(host={}),
     "spec.host", "must set exactly one form"),
    ("host-hostname-and-ipv4", http(host={"hostname": "db.internal", "ipv4": "10.0.0.5"}),
     "spec.host", "must set exactly one form"),
    ("host-service-and-ipv6", http(host={"service": {"name": "db"}, "ipv6": "fd00::5"}),
     "spec.host", "must set exactly one form"),
    ("hostname-with-path", http(host={"hostname": "orders.internal/api"}),
     "spec.host.hostname", "must not include a path"),
    ("hostname-with-scheme", http(host={"hostname": "https://orders.internal"}),
     "spec.host.hostname", "must not include a scheme such as https://"),
    ("hostname-with-port", http(host={"hostname": "orders.internal:8080"}),
     "spec.host.hostname", "must not include a port"),
    ("hostname-with-whitespace", http(host={"hostname": "orders internal"}),
     "spec.host.hostname", "must not contain whitespace"),
    ("hostname-is-ipv4", http(host={"hostname": "10.0.0.5"}),
     "spec.host.hostname", "not an IP address; use spec.host.ipv4"),
    ("hostname-empty-label", http(host={"hostname": "orders..internal"}),
     "spec.host.hostname", "must be a DNS name"),
    ("hostname-too-long", http(host={"hostname": "a" * 254}),
     "spec.host.hostname", "may not be more than 253"),
    ("ipv4-out-of-range", http(host={"ipv4": "10.0.0.256"}),
     "spec.host.ipv4", "must be an IPv4 address"),
    ("ipv4-given-ipv6", http(host={"ipv4": "fd00::5"}),
     "spec.host.ipv4", "must be an IPv4 address"),
    ("ipv6-given-ipv4", http(host={"ipv6": "10.0.0.5"}),
     "spec.host.ipv6", "must be an IPv6 address"),
    ("resolver-ips-with-ip-host", http(host={"ipv4": "10.0.0.5", "resolverIPs": ["10.0.0.53"]}),
     "spec.host.resolverIPs", "only used with hostname or service"),
    ("resolver-ip-invalid", http(host={"hostname": "db.internal", "resolverIPs": ["dns.local"]}),
     "spec.host.resolverIPs[0]", "must be IPv4 or IPv6 addresses"),
    ("service-name-invalid", http(host={"service": {"name": "1orders"}}),
     "spec.host.service.name", "must be a Service name"),
    ("service-without-name", http(host={"service": {"namespace": "shop"}}),
     "spec.host.service.name", "Required value"),
    ("port-above-65535", http(ports={"https": 70000}),
     "spec.ports.https", "less than or equal to 65535"),
    ("port-zero", tcp(ports={"tcp": 0}),
     "spec.ports.tcp", "greater than or equal to 1"),
    ("http-with-tcp-port", http(ports={"http": 80, "tcp": 5432}),
     "spec.ports.tcp", "only for type tcp"),
    ("tcp-without-tcp-port", tcp(ports=None),
     "spec.ports.tcp", "required with type tcp"),
    ("tcp-with-http-port", tcp(ports={"tcp": 5432, "https": 443}),
     "spec.ports", "only for type http"),
    ("app-protocol-with-http", http(appProtocol="postgresql"),
     "spec.appProtocol", "only for type tcp"),
    ("app-protocol-unknown", tcp(appProtocol="redis"),
     "spec.appProtocol", 'supported values: "postgresql", "mysql"'),
    ("tls-mode-unknown", http(tls={"certVerificationMode": "none"}),
     "spec.tls.certVerificationMode", 'supported values: "verify_full", "verify_ca", "disabled"'),
    ("deletion-policy-unknown", http(deletionPolicy="Orphan"),
     "spec.deletionPolicy", 'supported values: "Delete", "Retain"'),
    ("binding-name-not-identifier", http(bindingName="orders-db"),
     "spec.bindingName", "must be a JavaScript identifier"),
    ("binding-name-leading-digit", http(bindingName="1DB"),
     "spec.bindingName", "must be a JavaScript identifier"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [pytest.param(spec, field, message, id=case) for case, spec, field, message in INVALID],
)
def test_invalid_vpcservice_is_refused_naming_the_field(
    controlplane: ControlPlane,
    admission_namespace: str,
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    result = dry_run(controlplane, admission_namespace, vpc_service(spec))
    assert result.returncode != 0, f"accepted: {spec}"
    assert f"{field}:" in result.stderr
    assert message in result.stderr


def test_minimal_http_service_gets_the_defaults(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    spec = {"tunnelRef": {"name": "office"}, "host": {"hostname": "orders.internal.example"}}
    result = dry_run(controlplane, admission_namespace, vpc_service(spec))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"] == {**spec, "type": "http", "deletionPolicy": "Delete"}


VALID = [
    ("http-hostname-both-ports", http(ports={"http": 80, "https": 443})),
    ("http-https-only", http(ports={"https": 8443})),
    ("http-no-ports", http(ports=None)),
    ("tcp-postgresql", tcp(appProtocol="postgresql")),
    ("tcp-mysql-hostname", tcp(host={"hostname": "mysql.db.internal"}, appProtocol="mysql")),
    ("dual-stack", http(host={"ipv4": "10.0.0.5", "ipv6": "fd00::5"})),
    ("ipv6-only", tcp(host={"ipv6": "2001:db8::1"})),
    ("service-with-resolvers",
     http(host={"service": {"name": "orders", "namespace": "shop"},
                "resolverIPs": ["10.96.0.10", "fd00::a"]})),
    ("hostname-with-underscore-and-trailing-dot", http(host={"hostname": "_db.internal.example."})),
    ("tunnel-ref-other-namespace", http(tunnelRef={"name": "office", "namespace": "edge"})),
    ("everything",
     tcp(cloudflare={"accountId": ACCOUNT_ID, "apiTokenSecretRef": {"name": "cf", "key": "api"}},
         serviceName="shop-orders-db", appProtocol="postgresql",
         tls={"certVerificationMode": "verify_ca"}, deletionPolicy="Retain",
         bindingName="$ORDERS_db2")),
]  # fmt: skip


@pytest.mark.parametrize("spec", [pytest.param(spec, id=case) for case, spec in VALID])
def test_valid_vpcservice_is_accepted_as_given(
    controlplane: ControlPlane, admission_namespace: str, spec: dict[str, Any]
) -> None:
    result = dry_run(controlplane, admission_namespace, vpc_service(spec))
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["spec"]
    assert stored == {"type": "http", "deletionPolicy": "Delete", **spec}


def test_tls_without_mode_defaults_to_verify_full(
    controlplane: ControlPlane, admission_namespace: str
) -> None:
    result = dry_run(controlplane, admission_namespace, vpc_service(http(tls={})))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["tls"] == {"certVerificationMode": "verify_full"}


def test_status_and_printer_columns(controlplane: ControlPlane, admission_namespace: str) -> None:
    name = "orders-db"
    controlplane.kubectl(
        "apply", "--server-side", "-n", admission_namespace, "-f", "-",
        input=json.dumps(vpc_service(http(), name)),
    )  # fmt: skip
    status = {
        "observedGeneration": 1,
        "serviceId": SERVICE_ID,
        "serviceName": f"{admission_namespace}-{name}",
        "tunnelId": TUNNEL_ID,
        "accountId": ACCOUNT_ID,
        "binding": json.dumps({"binding": "ORDERS_DB", "service_id": SERVICE_ID, "remote": True}),
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1},
            {"type": "TunnelResolved", "status": "True", "reason": "Resolved", "message": "",
             "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1},
        ],
    }  # fmt: skip
    controlplane.kubectl(
        "patch", "vpcservice", name, "-n", admission_namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    stored = json.loads(
        controlplane.kubectl("get", "vpcsvc", name, "-n", admission_namespace, "-o", "json").stdout
    )
    assert stored["status"] == status

    header, row = controlplane.kubectl(
        "get", "vpcsvc", name, "-n", admission_namespace
    ).stdout.splitlines()
    assert header.split() == ["NAME", "TUNNEL", "TYPE", "SERVICE", "ID", "READY", "AGE"]
    assert row.split()[:5] == [name, "office", "http", SERVICE_ID, "True"]
    explained = controlplane.kubectl("explain", "vpcservice.spec.host").stdout
    assert "exactly one form" in explained
