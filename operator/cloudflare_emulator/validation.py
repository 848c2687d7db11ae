"""Request validation: bodies of tunnel and VPC-service writes, and list query parameters.

Each function returns the cleaned value or raises :class:`ApiError` (HTTP 400) naming the
offending field with a JSON pointer. The rules follow Cloudflare's schema; where the schema is
silent, the checks Cloudflare's own CLI makes before calling the API are applied (hostname
shape, resolver IPs, TCP port), so the emulator refuses what a careful client would never send.
Unknown keys are refused too: a typo in a client then fails loudly instead of being dropped.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cloudflare_emulator.envelope import CODE_INVALID_INPUT, CODE_INVALID_PARAMETER, ApiError
from cloudflare_emulator.timestamps import parse_rfc3339

__all__ = [
    "CERT_VERIFICATION_MODES",
    "MAX_PER_PAGE",
    "parse_bool_parameter",
    "parse_enum_parameter",
    "parse_pagination",
    "parse_time_parameter",
    "validate_configuration",
    "validate_management_request",
    "validate_service",
    "validate_tunnel_create",
    "validate_tunnel_edit",
]

MAX_PER_PAGE = 1000
CERT_VERIFICATION_MODES = ("verify_full", "verify_ca", "disabled")
APP_PROTOCOLS = ("postgresql", "mysql")
MIN_SECRET_BYTES = 32
MAX_HOSTNAME_LENGTH = 253

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_COMMON_KEYS = frozenset({"name", "type", "host", "tls_settings"})
_HTTP_KEYS = frozenset({"http_port", "https_port"})
_TCP_KEYS = frozenset({"tcp_port", "app_protocol"})
# Clients that read a service and send it back carry these; Cloudflare owns them, so they are
# ignored rather than refused.
_READ_ONLY_KEYS = frozenset({"service_id", "created_at", "updated_at"})
_IP_HOST_KEYS = frozenset({"ipv4", "ipv6", "network"})
_HOSTNAME_HOST_KEYS = frozenset({"hostname", "resolver_network"})


def _invalid(pointer: str, message: str) -> ApiError:
    return ApiError(400, CODE_INVALID_INPUT, message, pointer=pointer)


def _require_object(value: Any, pointer: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(pointer, f"{what} must be a JSON object")
    return value


def _refuse_unknown(value: Mapping[str, Any], allowed: frozenset[str], pointer: str) -> None:
    for key in value:
        if key not in allowed:
            raise _invalid(f"{pointer}/{key}", f"unknown field {key!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def _non_empty_string(value: Any, pointer: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(pointer, f"{what} must be a non-empty string")
    return value


# --- tunnels ---------------------------------------------------------------------------


def _tunnel_secret(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid("/tunnel_secret", "tunnel_secret must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("/tunnel_secret", "tunnel_secret must be valid base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise _invalid(
            "/tunnel_secret", f"tunnel_secret must encode at least {MIN_SECRET_BYTES} bytes"
        )
    return value


def validate_tunnel_create(body: Any) -> tuple[str, str, str | None]:
    """Return (name, config_src, tunnel_secret or None)."""
    body = _require_object(body, "", "request body")
    _refuse_unknown(body, frozenset({"name", "config_src", "tunnel_secret"}), "")
    if "name" not in body:
        raise _invalid("/name", "name is required")
    name = _non_empty_string(body["name"], "/name", "name")
    # The schema's default: a tunnel is locally managed unless the client says otherwise.
    config_src = body.get("config_src", "local")
    if config_src not in ("local", "cloudflare"):
        raise _invalid("/config_src", "config_src must be 'local' or 'cloudflare'")
    secret = _tunnel_secret(body["tunnel_secret"]) if "tunnel_secret" in body else None
    return name, config_src, secret


def validate_tunnel_edit(body: Any) -> tuple[str | None, str | None]:
    """Return (new name or None, new tunnel_secret or None)."""
    body = _require_object(body, "", "request body")
    _refuse_unknown(body, frozenset({"name", "tunnel_secret"}), "")
    name = _non_empty_string(body["name"], "/name", "name") if "name" in body else None
    secret = _tunnel_secret(body["tunnel_secret"]) if "tunnel_secret" in body else None
    return name, secret


def validate_configuration(body: Any) -> dict[str, Any] | None:
    body = _require_object(body, "", "request body")
    _refuse_unknown(body, frozenset({"config"}), "")
    config = body.get("config")
    if config is None:
        return None
    config = _require_object(config, "/config", "config")
    ingress = config.get("ingress")
    if ingress is None:
        return config
    if not isinstance(ingress, list):
        raise _invalid("/config/ingress", "ingress must be a list of rules")
    for index, rule in enumerate(ingress):
        rule = _require_object(rule, f"/config/ingress/{index}", "an ingress rule")
        _non_empty_string(rule.get("service"), f"/config/ingress/{index}/service", "service")
    # cloudflared refuses a rule set whose last rule could fail to match a request.
    if ingress and (ingress[-1].get("hostname") not in (None, "", "*") or ingress[-1].get("path")):
        raise _invalid(
            f"/config/ingress/{len(ingress) - 1}",
            "the last ingress rule must be a catch-all without hostname or path",
        )
    return config


def validate_management_request(body: Any) -> list[str]:
    body = _require_object(body, "", "request body")
    _refuse_unknown(body, frozenset({"resources"}), "")
    resources = body.get("resources")
    if not isinstance(resources, list) or not resources:
        raise _invalid("/resources", "resources must be a non-empty list")
    for index, resource in enumerate(resources):
        if resource != "logs":
            raise _invalid(f"/resources/{index}", "the only management resource is 'logs'")
    return list(resources)


# --- VPC services ----------------------------------------------------------------------


def _ip(value: Any, pointer: str, version: int) -> str:
    if not isinstance(value, str) or "%" in value:
        raise _invalid(pointer, f"must be an IPv{version} address")
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise _invalid(pointer, f"must be an IPv{version} address") from None
    if parsed.version != version:
        raise _invalid(pointer, f"must be an IPv{version} address")
    return value


def _any_ip(value: Any, pointer: str) -> str:
    if not isinstance(value, str) or "%" in value:
        raise _invalid(pointer, "must be an IPv4 or IPv6 address")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _invalid(pointer, "must be an IPv4 or IPv6 address") from None
    return value


def _hostname(value: Any) -> str:
    pointer = "/host/hostname"
    if not isinstance(value, str) or not value:
        raise _invalid(pointer, "hostname must be a non-empty string")
    if len(value) > MAX_HOSTNAME_LENGTH:
        raise _invalid(pointer, f"hostname must be at most {MAX_HOSTNAME_LENGTH} characters")
    if any(char.isspace() for char in value):
        raise _invalid(pointer, "hostname must not contain whitespace")
    if "://" in value:
        raise _invalid(pointer, "hostname must not include a scheme")
    if "/" in value:
        raise _invalid(pointer, "hostname must not include a path")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise _invalid(pointer, "hostname must not be an IP address; use ipv4 or ipv6")
    if ":" in value:
        raise _invalid(pointer, "hostname must not include a port; set the port fields")
    return value


def _tunnel_reference(value: Any, pointer: str, allowed: frozenset[str]) -> dict[str, Any]:
    network = _require_object(value, pointer, pointer.rsplit("/", 1)[-1])
    _refuse_unknown(network, allowed, pointer)
    if not _is_uuid(network.get("tunnel_id")):
        raise _invalid(f"{pointer}/tunnel_id", "tunnel_id must be a UUID")
    return network


def _host(value: Any) -> dict[str, Any]:
    host = _require_object(value, "/host", "host")
    _refuse_unknown(host, _IP_HOST_KEYS | _HOSTNAME_HOST_KEYS, "/host")
    keys = set(host)
    if keys & _IP_HOST_KEYS and keys & _HOSTNAME_HOST_KEYS:
        raise _invalid(
            "/host",
            "host is either ipv4/ipv6 with network or hostname with resolver_network, not both",
        )
    if keys & _HOSTNAME_HOST_KEYS:
        if "hostname" not in host or "resolver_network" not in host:
            raise _invalid("/host", "a hostname host needs hostname and resolver_network")
        hostname = _hostname(host["hostname"])
        resolver_network = _tunnel_reference(
            host["resolver_network"],
            "/host/resolver_network",
            frozenset({"tunnel_id", "resolver_ips"}),
        )
        resolver_ips = resolver_network.get("resolver_ips")
        if resolver_ips is not None:
            if not isinstance(resolver_ips, list):
                raise _invalid("/host/resolver_network/resolver_ips", "must be a list or null")
            for index, address in enumerate(resolver_ips):
                _any_ip(address, f"/host/resolver_network/resolver_ips/{index}")
        return {"hostname": hostname, "resolver_network": dict(resolver_network)}
    if "ipv4" not in host and "ipv6" not in host:
        raise _invalid("/host", "host needs ipv4, ipv6, both, or a hostname")
    if "network" not in host:
        raise _invalid("/host/network", "an IP host needs network.tunnel_id")
    cleaned: dict[str, Any] = {}
    if "ipv4" in host:
        cleaned["ipv4"] = _ip(host["ipv4"], "/host/ipv4", 4)
    if "ipv6" in host:
        cleaned["ipv6"] = _ip(host["ipv6"], "/host/ipv6", 6)
    cleaned["network"] = dict(
        _tunnel_reference(host["network"], "/host/network", frozenset({"tunnel_id"}))
    )
    return cleaned


def _port(body: Mapping[str, Any], key: str, *, required: bool) -> None:
    if key not in body:
        if required:
            raise _invalid(f"/{key}", f"{key} is required")
        return
    value = body[key]
    if value is None and not required:
        return
    if not _is_int(value) or not 1 <= value <= 65535:
        raise _invalid(f"/{key}", f"{key} must be an integer from 1 to 65535")


def validate_service(body: Any) -> dict[str, Any]:
    """Return the service fields to store: exactly what the client sent, checked."""
    body = _require_object(body, "", "request body")
    _refuse_unknown(body, _COMMON_KEYS | _HTTP_KEYS | _TCP_KEYS | _READ_ONLY_KEYS, "")
    for key in ("name", "type", "host"):
        if key not in body:
            raise _invalid(f"/{key}", f"{key} is required")
    name = _non_empty_string(body["name"], "/name", "name")
    service_type = body["type"]
    if service_type not in ("http", "tcp"):
        raise _invalid("/type", "type must be 'http' or 'tcp'")
    fields: dict[str, Any] = {"type": service_type, "name": name, "host": _host(body["host"])}

    if "tls_settings" in body:
        tls = body["tls_settings"]
        if tls is not None:
            tls = _require_object(tls, "/tls_settings", "tls_settings")
            _refuse_unknown(tls, frozenset({"cert_verification_mode"}), "/tls_settings")
            if tls.get("cert_verification_mode") not in CERT_VERIFICATION_MODES:
                raise _invalid(
                    "/tls_settings/cert_verification_mode",
                    "cert_verification_mode must be one of " + ", ".join(CERT_VERIFICATION_MODES),
                )
            tls = dict(tls)
        fields["tls_settings"] = tls

    own, foreign = (_HTTP_KEYS, _TCP_KEYS) if service_type == "http" else (_TCP_KEYS, _HTTP_KEYS)
    for key in sorted(foreign):
        if key in body:
            raise _invalid(f"/{key}", f"{key} is not allowed on a {service_type} service")
    if service_type == "http":
        _port(body, "http_port", required=False)
        _port(body, "https_port", required=False)
    else:
        _port(body, "tcp_port", required=True)
        if "app_protocol" in body and body["app_protocol"] not in (None, *APP_PROTOCOLS):
            raise _invalid("/app_protocol", "app_protocol must be 'postgresql', 'mysql' or null")
    for key in sorted(own):
        if key in body:
            fields[key] = body[key]
    return fields


# --- query parameters ------------------------------------------------------------------


def _bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, CODE_INVALID_PARAMETER, f"invalid query parameter {name!r}: {message}")


def _positive_int(query: Mapping[str, str], name: str, default: int, maximum: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_parameter(name, "must be an integer") from None
    if value < 1 or (maximum is not None and value > maximum):
        bound = f"from 1 to {maximum}" if maximum is not None else "at least 1"
        raise _bad_parameter(name, f"must be {bound}")
    return value


def parse_pagination(query: Mapping[str, str], default_per_page: int) -> tuple[int, int]:
    page = _positive_int(query, "page", 1, None)
    per_page = _positive_int(query, "per_page", default_per_page, MAX_PER_PAGE)
    return page, per_page


def parse_bool_parameter(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise _bad_parameter(name, "must be true or false")


def parse_enum_parameter(
    query: Mapping[str, str], name: str, allowed: tuple[str, ...]
) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise _bad_parameter(name, "must be one of " + ", ".join(allowed))
    return raw


def parse_time_parameter(query: Mapping[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise _bad_parameter(name, "must be an RFC 3339 date-time") from None
