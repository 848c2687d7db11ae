"""Wire models of the Cloudflare API: the response envelope, tunnels, connectors, tunnel
configuration, token verification and Workers VPC services.

Response models ignore keys they do not declare (Cloudflare adds fields without notice, and
ignoring them also drops secrets such as a create result's `credentials_file`) and keep
enum-like fields as plain strings, so a new value on an object we do not manage cannot break a
listing. Request models are strict: `VPCServiceSpec` refuses anything the API would refuse and
serialises to exactly the body Cloudflare expects.

Field names follow the API (snake_case, except inside tunnel ingress rules, whose wire keys are
camelCase and are mapped through aliases). Nothing here performs I/O.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "CERT_VERIFICATION_MODES",
    "AppProtocol",
    "CertVerificationMode",
    "CloudflareMessage",
    "Connector",
    "CreatedTunnel",
    "Envelope",
    "IngressRule",
    "ResolverNetwork",
    "ResultInfo",
    "TLSSettings",
    "TokenVerification",
    "Tunnel",
    "TunnelConfig",
    "TunnelConfiguration",
    "TunnelConnection",
    "TunnelNetwork",
    "VPCService",
    "VPCServiceHost",
    "VPCServiceSpec",
    "VPCServiceType",
    "vpc_service_drifted",
]

VPCServiceType = Literal["http", "tcp"]
AppProtocol = Literal["postgresql", "mysql"]
CertVerificationMode = Literal["verify_full", "verify_ca", "disabled"]
CERT_VERIFICATION_MODES: tuple[str, ...] = ("verify_full", "verify_ca", "disabled")

# Defaults Cloudflare applies when a field is omitted: Workers VPC docs, "VPC Services"
# (https://developers.cloudflare.com/workers-vpc/configuration/vpc-services/).
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
DEFAULT_CERT_VERIFICATION_MODE = "verify_full"


class _Response(BaseModel):
    """Base of everything parsed from Cloudflare: unknown keys are dropped, objects are frozen."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    """Base of everything sent to Cloudflare: unknown keys are a programming error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the envelope -------------------------------------------------------------------------


class CloudflareMessage(_Response):
    """One entry of an envelope's `errors` or `messages` list."""

    code: int = 0
    message: str = ""
    documentation_url: str | None = None
    # Real responses sometimes nest the underlying errors (for example 6003 -> 6111).
    error_chain: list[CloudflareMessage] = Field(default_factory=list)

    def __str__(self) -> str:
        text = f"[{self.code}] {self.message}" if self.code else self.message
        if self.error_chain:
            text += " (" + "; ".join(str(inner) for inner in self.error_chain) + ")"
        return text


class ResultInfo(_Response):
    """Pagination data of a list response (`total_pages` is missing on tunnel listings)."""

    page: int | None = None
    per_page: int | None = None
    count: int | None = None
    total_count: int | None = None
    total_pages: int | None = None


class Envelope(_Response):
    """The wrapper around every JSON response: `{"success", "errors", "messages", "result"}`."""

    success: bool = False
    errors: list[CloudflareMessage] = Field(default_factory=list)
    messages: list[CloudflareMessage] = Field(default_factory=list)
    result: Any = None
    result_info: ResultInfo | None = None

    @field_validator("errors", "messages", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


# --- tokens -------------------------------------------------------------------------------


class TokenVerification(_Response):
    """Result of `GET /user/tokens/verify` or `GET /accounts/{id}/tokens/verify`."""

    id: str
    status: str
    not_before: datetime | None = None
    expires_on: datetime | None = None

    @property
    def is_active(self) -> bool:
        """Only an `active` token is usable; `disabled` and `expired` ones are not."""
        return self.status == "active"


# --- tunnels ------------------------------------------------------------------------------


class TunnelConnection(_Response):
    """One connection between a cloudflared process and a Cloudflare data centre."""

    id: str | None = None
    uuid: str | None = None
    client_id: str | None = None
    client_version: str | None = None
    colo_name: str | None = None
    origin_ip: str | None = None
    opened_at: datetime | None = None
    # True while a dropped link is still remembered for a few minutes.
    is_pending_reconnect: bool = False


class Connector(_Response):
    """One running cloudflared process (an item of `GET …/cfd_tunnel/{id}/connections`)."""

    id: str
    version: str | None = None
    arch: str | None = None
    config_version: int | None = None
    features: list[str] = Field(default_factory=list)
    run_at: datetime | None = None
    conns: list[TunnelConnection] = Field(default_factory=list)

    @property
    def active_connections(self) -> int:
        """Connections that are up now (a healthy connector holds 4)."""
        return sum(1 for conn in self.conns if not conn.is_pending_reconnect)


class Tunnel(_Response):
    """A Cloudflare Tunnel (`cfd_tunnel`) as the API reports it."""

    id: str
    name: str
    account_tag: str | None = None
    config_src: str | None = None
    remote_config: bool | None = None
    # inactive (never connected) | healthy | degraded | down
    status: str | None = None
    tun_type: str | None = None
    created_at: datetime | None = None
    deleted_at: datetime | None = None
    conns_active_at: datetime | None = None
    conns_inactive_at: datetime | None = None
    # Deprecated by Cloudflare and being emptied; read connectors from `list_connectors`.
    connections: list[TunnelConnection] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("connections", mode="before")
    @classmethod
    def _no_connections(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("metadata", mode="before")
    @classmethod
    def _no_metadata(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def is_deleted(self) -> bool:
        """Deletion is soft: a deleted tunnel still answers reads, with `deleted_at` set."""
        return self.deleted_at is not None


class CreatedTunnel(_Response):
    """A tunnel just created (or found after an ambiguous create) with its run token."""

    tunnel: Tunnel
    token: SecretStr


class IngressRule(_Response):
    """One public-hostname rule of a remotely managed tunnel configuration."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    # The last rule is a catch-all without hostname.
    hostname: str | None = None
    service: str
    path: str | None = None
    # Wire keys inside originRequest are camelCase (connectTimeout, noTLSVerify, ...).
    origin_request: dict[str, Any] | None = Field(default=None, alias="originRequest")


class TunnelConfig(_Response):
    """The `config` document of a remotely managed tunnel."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    ingress: list[IngressRule] = Field(default_factory=list)
    origin_request: dict[str, Any] | None = Field(default=None, alias="originRequest")
    # Only older schemas expose it; kept so a read-modify-write does not drop it.
    warp_routing: dict[str, Any] | None = Field(default=None, alias="warp-routing")

    def to_request_body(self) -> dict[str, Any]:
        """The body of `PUT …/configurations`."""
        return {"config": self.model_dump(mode="json", by_alias=True, exclude_none=True)}


class TunnelConfiguration(_Response):
    """Result of `GET`/`PUT …/cfd_tunnel/{id}/configurations`."""

    tunnel_id: str | None = None
    account_id: str | None = None
    version: int | None = None
    source: str | None = None
    created_at: datetime | None = None
    config: TunnelConfig | None = None


# --- Workers VPC services -----------------------------------------------------------------

# Checks Cloudflare's own CLI performs on a hostname target (wrangler's `vpc` command).
_HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def _check_uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"tunnel_id must be a UUID, got {value!r}") from None
    return value


def _check_ip(value: str, version: int | None = None) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise ValueError(f"{value!r} is not an IPv{version} address")
    return value


def _check_hostname(value: str) -> str:
    if not value or len(value) > 253:
        raise ValueError("hostname must be 1 to 253 characters long")
    if any(char.isspace() for char in value) or "://" in value or "/" in value or ":" in value:
        raise ValueError(
            f"hostname {value!r} must be a bare name: no scheme, path, port or whitespace"
        )
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise ValueError(f"hostname {value!r} is an IP address; use ipv4/ipv6 instead")
    labels = value.rstrip(".").split(".")
    if not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise ValueError(f"hostname {value!r} is not a valid DNS name")
    return value


class TunnelNetwork(_Response):
    """`host.network` of an IP-addressed VPC service: the tunnel that reaches the address."""

    tunnel_id: str

    @field_validator("tunnel_id")
    @classmethod
    def _tunnel_id(cls, value: str) -> str:
        return _check_uuid(value)


class ResolverNetwork(_Response):
    """`host.resolver_network` of a hostname VPC service: the tunnel, and optional resolvers.

    An empty `resolver_ips` list means the same as none (the connector's own resolver), so it
    is stored as None and never sent.
    """

    tunnel_id: str
    resolver_ips: list[str] | None = None

    @field_validator("tunnel_id")
    @classmethod
    def _tunnel_id(cls, value: str) -> str:
        return _check_uuid(value)

    @field_validator("resolver_ips")
    @classmethod
    def _resolver_ips(cls, value: list[str] | None) -> list[str] | None:
        if not value:
            return None
        return [_check_ip(ip) for ip in value]


class VPCServiceHost(_Response):
    """Where a VPC service points: exactly one of four shapes.

    * IPv4: `{"ipv4", "network": {"tunnel_id"}}`
    * IPv6: `{"ipv6", "network": {"tunnel_id"}}`
    * dual stack: `{"ipv4", "ipv6", "network": {"tunnel_id"}}`
    * hostname: `{"hostname", "resolver_network": {"tunnel_id", "resolver_ips"?}}`

    Note the asymmetry: IP hosts nest the tunnel under `network`, hostname hosts under
    `resolver_network`. Use `VPCServiceHost.ip(...)` or `VPCServiceHost.dns(...)` to build one.
    """

    ipv4: str | None = None
    ipv6: str | None = None
    hostname: str | None = None
    network: TunnelNetwork | None = None
    resolver_network: ResolverNetwork | None = None

    @field_validator("ipv4")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        return None if value is None else _check_ip(value, 4)

    @field_validator("ipv6")
    @classmethod
    def _ipv6(cls, value: str | None) -> str | None:
        return None if value is None else _check_ip(value, 6)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return None if value is None else _check_hostname(value)

    @model_validator(mode="after")
    def _exactly_one_shape(self) -> Self:
        has_ip = self.ipv4 is not None or self.ipv6 is not None
        has_hostname = self.hostname is not None
        if has_ip and has_hostname:
            raise ValueError("host takes either ipv4/ipv6 or hostname, not both")
        if has_ip:
            if self.network is None:
                raise ValueError("an IP host needs network.tunnel_id")
            if self.resolver_network is not None:
                raise ValueError("an IP host takes network, not resolver_network")
        elif has_hostname:
            if self.resolver_network is None:
                raise ValueError("a hostname host needs resolver_network.tunnel_id")
            if self.network is not None:
                raise ValueError("a hostname host takes resolver_network, not network")
        else:
            raise ValueError("host needs one of ipv4, ipv6 or hostname")
        return self

    @classmethod
    def ip(cls, tunnel_id: str, *, ipv4: str | None = None, ipv6: str | None = None) -> Self:
        """An IPv4, IPv6 or dual-stack host reached through `tunnel_id`."""
        return cls(ipv4=ipv4, ipv6=ipv6, network=TunnelNetwork(tunnel_id=tunnel_id))

    @classmethod
    def dns(cls, tunnel_id: str, hostname: str, *, resolver_ips: list[str] | None = None) -> Self:
        """A hostname host, resolved at the connector (optionally by `resolver_ips`)."""
        return cls(
            hostname=hostname,
            resolver_network=ResolverNetwork(tunnel_id=tunnel_id, resolver_ips=resolver_ips),
        )

    @property
    def tunnel_id(self) -> str:
        """The tunnel that reaches this host, whichever shape it has."""
        network = self.network or self.resolver_network
        assert network is not None  # guaranteed by _exactly_one_shape
        return network.tunnel_id


class TLSSettings(_Response):
    """`tls_settings` of a VPC service; absent means `verify_full`."""

    cert_verification_mode: str


class VPCServiceSpec(_Request):
    """The desired state of a VPC service: the body of a create (POST) or replace (PUT).

    PUT replaces the whole object, so the same full body serves both. Fields left as None are
    not sent and Cloudflare applies its defaults (ports 80/443 for http, `verify_full`).
    """

    name: str = Field(min_length=1)
    type: VPCServiceType
    host: VPCServiceHost
    http_port: int | None = Field(default=None, ge=1, le=65535)
    https_port: int | None = Field(default=None, ge=1, le=65535)
    tcp_port: int | None = Field(default=None, ge=1, le=65535)
    app_protocol: AppProtocol | None = None
    tls_settings: TLSSettings | None = None

    @field_validator("tls_settings")
    @classmethod
    def _known_mode(cls, value: TLSSettings | None) -> TLSSettings | None:
        if value is not None and value.cert_verification_mode not in CERT_VERIFICATION_MODES:
            raise ValueError(
                f"cert_verification_mode must be one of {', '.join(CERT_VERIFICATION_MODES)}"
            )
        return value

    @model_validator(mode="after")
    def _fields_of_type(self) -> Self:
        if self.type == "http":
            if self.tcp_port is not None or self.app_protocol is not None:
                raise ValueError("tcp_port and app_protocol belong to type tcp, not http")
        else:
            if self.http_port is not None or self.https_port is not None:
                raise ValueError("http_port and https_port belong to type http, not tcp")
            if self.tcp_port is None:
                raise ValueError("a tcp service needs tcp_port")
        return self

    def to_request_body(self) -> dict[str, Any]:
        """The exact JSON body for `POST …/directory/services` and `PUT …/services/{id}`."""
        return self.model_dump(mode="json", exclude_none=True)

    def matches(self, observed: VPCService) -> bool:
        """Whether Cloudflare's object already is what this spec asks for.

        "Absent" and "default" compare equal (Cloudflare may or may not echo defaults), IP
        addresses compare by value, hostnames without case or trailing dot.
        """
        return _comparable_desired(self) == _comparable_observed(observed)


class VPCService(_Response):
    """A Workers VPC service as Cloudflare reports it."""

    service_id: str
    name: str
    type: str
    host: VPCServiceHost
    http_port: int | None = None
    https_port: int | None = None
    tcp_port: int | None = None
    app_protocol: str | None = None
    tls_settings: TLSSettings | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def vpc_service_drifted(desired: VPCServiceSpec, observed: VPCService) -> bool:
    """True when `observed` differs from `desired` in anything Cloudflare would act on."""
    return not desired.matches(observed)


# --- comparison ---------------------------------------------------------------------------


def _comparable_host(host: VPCServiceHost) -> tuple[Any, ...]:
    def address(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        return None if value is None else ipaddress.ip_address(value)

    def tunnel(value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return value.lower()

    resolvers: tuple[Any, ...] = ()
    if host.resolver_network is not None and host.resolver_network.resolver_ips:
        resolvers = tuple(ipaddress.ip_address(ip) for ip in host.resolver_network.resolver_ips)
    hostname = host.hostname.lower().rstrip(".") if host.hostname is not None else None
    return (
        address(host.ipv4),
        address(host.ipv6),
        hostname,
        host.network is not None,
        tunnel(host.tunnel_id),
        resolvers,
    )


def _comparable(
    *,
    name: str,
    type_: str,
    host: VPCServiceHost,
    http_port: int | None,
    https_port: int | None,
    tcp_port: int | None,
    app_protocol: str | None,
    tls_settings: TLSSettings | None,
) -> tuple[Any, ...]:
    if type_ == "http" and http_port is None and https_port is None:
        # Setting only one port restricts the scheme, so the defaults apply only to both absent.
        http_port, https_port = DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT
    mode = tls_settings.cert_verification_mode if tls_settings else DEFAULT_CERT_VERIFICATION_MODE
    return (
        name,
        type_,
        _comparable_host(host),
        http_port,
        https_port,
        tcp_port,
        app_protocol,
        mode,
    )


def _comparable_desired(spec: VPCServiceSpec) -> tuple[Any, ...]:
    return _comparable(
        name=spec.name,
        type_=spec.type,
        host=spec.host,
        http_port=spec.http_port,
        https_port=spec.https_port,
        tcp_port=spec.tcp_port,
        app_protocol=spec.app_protocol,
        tls_settings=spec.tls_settings,
    )


def _comparable_observed(service: VPCService) -> tuple[Any, ...]:
    return _comparable(
        name=service.name,
        type_=service.type,
        host=service.host,
        http_port=service.http_port,
        https_port=service.https_port,
        tcp_port=service.tcp_port,
        app_protocol=service.app_protocol,
        tls_settings=service.tls_settings,
    )
