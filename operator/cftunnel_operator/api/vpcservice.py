"""The VPCService kind: pydantic models of its spec and status, the Worker binding name and the
binding snippet published in status.

The models mirror ``crds/cftunnel.dev_vpcservices.yaml`` field for field, with the same
defaults. Building the Cloudflare request body from them is the Cloudflare layer's job.
"""

from __future__ import annotations

import json
import re
from typing import Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from cftunnel_operator.api._base import CRDModel
from cftunnel_operator.api.common import CloudflareRef, DeletionPolicy
from cftunnel_operator.api.conditions import StatusWithConditions
from cftunnel_operator.api.names import default_object_name

__all__ = [
    "DEFAULT_CLUSTER_DOMAIN",
    "AppProtocol",
    "CertVerificationMode",
    "HostForm",
    "HostSpec",
    "PortsSpec",
    "ServiceRef",
    "ServiceType",
    "TLSSpec",
    "TunnelRef",
    "VPCServiceSpec",
    "VPCServiceStatus",
    "derive_binding_name",
    "worker_binding",
]

ServiceType = Literal["http", "tcp"]
AppProtocol = Literal["postgresql", "mysql"]
CertVerificationMode = Literal["verify_full", "verify_ca", "disabled"]
HostForm = Literal["hostname", "ip", "service"]

DEFAULT_CLUSTER_DOMAIN: Final = "cluster.local"

_NOT_IDENTIFIER_CHARACTER = re.compile(r"[^A-Za-z0-9]")


def derive_binding_name(name: str) -> str:
    """The default Worker binding name of a VPCService called ``name``.

    Upper-cased, every character other than an ASCII letter or digit replaced by ``_``, and
    ``_`` put in front when it would start with a digit, so the result is always a JavaScript
    identifier: ``orders-db`` gives ``ORDERS_DB``, ``2fa.api`` gives ``_2FA_API``.
    """
    binding = _NOT_IDENTIFIER_CHARACTER.sub("_", name).upper()
    if not binding or binding[0].isdigit():
        binding = f"_{binding}"
    return binding


def worker_binding(binding_name: str, service_id: str) -> str:
    """The entry to paste under ``vpc_services`` in a Worker's wrangler configuration, as
    compact JSON: ``{"binding":"ORDERS_DB","service_id":"<uuid>","remote":true}``.

    Exactly the keys wrangler allows; ``remote: true`` makes ``wrangler dev`` use the real
    service rather than a local stand-in.
    """
    entry = {"binding": binding_name, "service_id": service_id, "remote": True}
    return json.dumps(entry, separators=(",", ":"))


class TunnelRef(CRDModel):
    """``spec.tunnelRef``: a Tunnel object, by default in the VPCService's namespace."""

    name: str
    namespace: str | None = None

    def namespace_or(self, default: str) -> str:
        return self.namespace or default


class ServiceRef(CRDModel):
    """``spec.host.service``: a Kubernetes Service, by default in the VPCService's namespace."""

    name: str
    namespace: str | None = None

    def namespace_or(self, default: str) -> str:
        return self.namespace or default

    def dns_name(
        self, *, default_namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN
    ) -> str:
        """``<name>.<namespace>.svc.<cluster domain>``, the name the connectors resolve."""
        return f"{self.name}.{self.namespace_or(default_namespace)}.svc.{cluster_domain}"


class HostSpec(CRDModel):
    """``spec.host``: exactly one of hostname, ipv4 and/or ipv6, service."""

    hostname: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    service: ServiceRef | None = None
    resolver_ips: list[str] | None = Field(default=None, alias="resolverIPs")

    @model_validator(mode="after")
    def _exactly_one_form(self) -> Self:
        forms = [self.hostname is not None, self.ipv4 is not None or self.ipv6 is not None]
        forms.append(self.service is not None)
        if sum(forms) != 1:
            raise ValueError(
                "host must set exactly one form: hostname, or ipv4 and/or ipv6, or service"
            )
        return self

    @property
    def form(self) -> HostForm:
        """Which form the host takes: Cloudflare nests the tunnel under ``resolver_network`` for
        hostname (and service) hosts and under ``network`` for IP hosts."""
        if self.hostname is not None:
            return "hostname"
        if self.service is not None:
            return "service"
        return "ip"


class PortsSpec(CRDModel):
    """``spec.ports``: http/https for type http, tcp for type tcp."""

    http: int | None = Field(default=None, ge=1, le=65535)
    https: int | None = Field(default=None, ge=1, le=65535)
    tcp: int | None = Field(default=None, ge=1, le=65535)


class TLSSpec(CRDModel):
    """``spec.tls``: how the connectors verify the host's certificate."""

    cert_verification_mode: CertVerificationMode = "verify_full"


class VPCServiceSpec(CRDModel):
    """``VPCService.spec``. Parse with ``VPCServiceSpec.from_body(body["spec"])``."""

    tunnel_ref: TunnelRef | None = None
    tunnel_id: str | None = None
    cloudflare: CloudflareRef | None = None
    service_name: str | None = None
    type: ServiceType = "http"
    host: HostSpec
    ports: PortsSpec | None = None
    app_protocol: AppProtocol | None = None
    tls: TLSSpec | None = None
    deletion_policy: DeletionPolicy = "Delete"
    binding_name: str | None = None

    @field_validator("tunnel_id", "service_name", "binding_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _exactly_one_tunnel(self) -> Self:
        if (self.tunnel_ref is None) == (self.tunnel_id is None):
            raise ValueError("set exactly one of tunnelRef and tunnelId")
        return self

    def effective_service_name(self, *, namespace: str, name: str, prefix: str = "") -> str:
        """``serviceName`` as given, else ``<prefix><namespace>-<name>``."""
        return self.service_name or default_object_name(namespace, name, prefix)

    def effective_binding_name(self, name: str) -> str:
        """``bindingName`` as given, else derived from the object's name."""
        return self.binding_name or derive_binding_name(name)


class VPCServiceStatus(StatusWithConditions):
    """``VPCService.status``, as the operator writes it."""

    observed_generation: int | None = None
    service_id: str | None = None
    service_name: str | None = None
    tunnel_id: str | None = None
    account_id: str | None = None
    binding: str | None = None
    """``worker_binding(...)`` of the service, once it exists."""
