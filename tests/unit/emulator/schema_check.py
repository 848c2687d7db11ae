"""Validate Cloudflare API responses against the copied Cloudflare OpenAPI schema.

Reusable by any test that talks to the emulator:

    from schema_check import validate_response, validate_httpx_response
    validate_response("GET", "/accounts/{account_id}/cfd_tunnel", 200, body)

The schema file (``tests/data/cloudflare/cloudflare-openapi-structure.json``) carries the
tunnel endpoints as published in 2024 and the VPC-service endpoints as published in 2026.
``_apply_known_drift`` brings the 2024 tunnel part up to the current API, item by item, each
with its reason; ``_express_intended_nulls`` spells out two nulls the schema means but does
not encode; nothing else is loosened. ``_tighten`` goes the other way: the tunnel and
connector objects must not carry keys the schema does not declare, so the emulator cannot
invent fields unnoticed.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import httpx
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

__all__ = [
    "SCHEMA_PATH",
    "SchemaMismatchError",
    "match_path",
    "validate_failure_envelope",
    "validate_httpx_response",
    "validate_response",
]

SCHEMA_PATH = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "cloudflare"
    / "cloudflare-openapi-structure.json"
)
API_PREFIX = "/client/v4"
_REF = "#/components/schemas/"


class SchemaMismatchError(AssertionError):
    """A response does not match the Cloudflare schema."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _apply_known_drift(spec: dict[str, Any]) -> None:
    """The documented differences between the 2024 tunnel schema and today's API."""
    schemas = spec["components"]["schemas"]

    # 1. The tunnel object gained `config_src` ("local" | "cloudflare").
    schemas["tunnel_cfd_tunnel"]["properties"]["config_src"] = _ref("tunnel_config_src")

    # 2. `tun_type` gained "warp" and "magic".
    schemas["tunnel_tunnel_type"]["enum"] = [
        *schemas["tunnel_tunnel_type"]["enum"],
        "warp",
        "magic",
    ]

    # 3. Single-tunnel responses now reference a cfd-only schema (no WARP-connector variant).
    single = schemas["tunnel_tunnel-response-single"]["allOf"][1]
    single["properties"]["result"] = _ref("tunnel_cfd_tunnel")

    # 4. Create and a secret-rotating PATCH return two keys no schema declares: `token` (the
    #    run token) and `credentials_file`. Allowed on exactly those two responses, below in
    #    _RESPONSE_OVERRIDES, through this variant of the tunnel object.
    with_credentials = copy.deepcopy(schemas["tunnel_cfd_tunnel"])
    with_credentials["properties"]["token"] = {"type": "string", "minLength": 1}
    with_credentials["properties"]["credentials_file"] = {
        "type": "object",
        "properties": {
            key: {"type": "string"}
            for key in ("AccountTag", "TunnelID", "TunnelName", "TunnelSecret")
        },
        "required": ["AccountTag", "TunnelID", "TunnelName", "TunnelSecret"],
        "additionalProperties": False,
    }
    with_credentials["required"] = ["token", "credentials_file"]
    schemas["x_tunnel_cfd_tunnel_with_credentials"] = with_credentials

    # 5. `deleted_at`, `conns_active_at` and `conns_inactive_at` are null when unset (the
    #    current schema's examples and the SDKs' optional fields); the 2024 file typed them as
    #    plain strings.
    for name in ("tunnel_deleted_at", "tunnel_conns_active_at", "tunnel_conns_inactive_at"):
        schemas[name]["nullable"] = True


def _express_intended_nulls(spec: dict[str, Any]) -> None:
    """Two VPC-service fields are marked ``nullable`` in a way OpenAPI 3.0 does not honour
    (``nullable`` only widens an explicit ``type``; an ``enum`` or an ``allOf`` member still
    refuses null). The SDKs type both as optional and the reference documents null, so null is
    spelled out here; nothing else about the two fields changes."""
    schemas = spec["components"]["schemas"]
    null_only = {"type": "object", "nullable": True, "enum": [None]}

    # app_protocol: "postgresql" | "mysql" | null.
    tcp_fields = schemas["infra_TcpServiceConfig"]["allOf"][1]["properties"]
    tcp_fields["app_protocol"]["enum"] = [*tcp_fields["app_protocol"]["enum"], None]

    # tls_settings: {"cert_verification_mode": ...} | null.
    common = schemas["infra_ServiceCommon"]["properties"]
    common["tls_settings"] = {"anyOf": [_ref("infra_ApiTlsSettings"), null_only]}


def _tighten(spec: dict[str, Any]) -> None:
    """Refuse undeclared keys where the schema is a plain object (not an allOf composition)."""
    schemas = spec["components"]["schemas"]
    for name in (
        "tunnel_cfd_tunnel",
        "tunnel_warp_connector_tunnel",
        "x_tunnel_cfd_tunnel_with_credentials",
        "tunnel_tunnel_client",
        "tunnel_schemas-connection",
        "infra_ApiTlsSettings",
        "infra_Network",
        "infra_ResolverNetwork",
        # The four host shapes are a oneOf whose members do not forbid other keys, so a
        # dual-stack host also satisfies the IPv4 and IPv6 shapes and the oneOf could never
        # accept it. Closed shapes make exactly one member match, as the API intends.
        "infra_IPv4Host",
        "infra_IPv6Host",
        "infra_DualStackHost",
        "infra_HostnameHost",
    ):
        schemas[name]["additionalProperties"] = False


def _envelope_with_result(family: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "allOf": [_ref(f"{family}_api-response-common")],
        "properties": {"result": result},
        "required": ["result"],
    }


# Responses whose schema had to be chosen here: (method, path template, status) -> schema.
_RESPONSE_OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    # Drift item 4: create and PATCH carry token and credentials_file.
    ("post", "/accounts/{account_id}/cfd_tunnel", "200"): _envelope_with_result(
        "tunnel", _ref("x_tunnel_cfd_tunnel_with_credentials")
    ),
    # The schema declares a 200 without a body; the emulator sends the envelope with a null
    # result, which is what SDKs accept.
    (
        "delete",
        "/accounts/{account_id}/connectivity/directory/services/{service_id}",
        "200",
    ): _envelope_with_result("infra", {"nullable": True, "enum": [None]}),
}

# A PATCH that rotates the secret answers like a create; one that does not, like a GET.
_PATCH_WITH_SECRET = ("patch", "/accounts/{account_id}/cfd_tunnel/{tunnel_id}", "200")


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    _apply_known_drift(spec)
    _express_intended_nulls(spec)
    _tighten(spec)
    return spec


@functools.cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    compiled = []
    for template in _spec()["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        compiled.append((re.compile(f"^{pattern}$"), template))
    # Literal segments beat parameters: try the templates with fewer parameters first.
    compiled.sort(key=lambda item: item[1].count("{"))
    return compiled


def match_path(path: str) -> str | None:
    """The schema's path template for a concrete request path (with or without /client/v4)."""
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX) :]
    for pattern, template in _templates():
        if pattern.match(path):
            return template
    return None


def _family(path_template: str) -> str:
    if "/cfd_tunnel" in path_template:
        return "tunnel"
    if "/connectivity/" in path_template:
        return "infra"
    return "iam"


def _failure_schema(response_schema: dict[str, Any] | None, family: str) -> dict[str, Any]:
    # The tunnel and user-verify 4XX schemas are allOf[<success envelope>, <failure envelope>],
    # which no document satisfies (success must be both true and false): a known defect of
    # Cloudflare's generated schema. A failure is checked against the failure envelope alone.
    if response_schema is not None:
        for member in response_schema.get("allOf", []):
            if member.get("$ref", "").endswith("api-response-common-failure"):
                return dict(member)
        if response_schema.get("$ref", "").endswith("api-response-common-failure"):
            return response_schema
    # 5xx answers are not declared at all; Cloudflare uses the same failure envelope.
    return _ref(f"{family}_api-response-common-failure")


def _response_schema(method: str, path_template: str, status: int, body: Any) -> dict[str, Any]:
    operations = _spec()["paths"].get(path_template)
    if operations is None or method not in operations:
        raise SchemaMismatchError(f"the schema has no operation {method.upper()} {path_template}")
    responses = operations[method]["responses"]
    key = str(status)
    family = _family(path_template)
    override = _RESPONSE_OVERRIDES.get((method, path_template, key))
    result = body.get("result") if isinstance(body, dict) else None
    rotated = isinstance(result, dict) and "token" in result
    if (method, path_template, key) == _PATCH_WITH_SECRET and rotated:
        override = _RESPONSE_OVERRIDES[("post", "/accounts/{account_id}/cfd_tunnel", "200")]
    if override is not None:
        return override
    declared = responses.get(key) or responses.get(f"{key[0]}XX") or responses.get("default")
    declared_schema: dict[str, Any] | None = None
    if declared is not None and "content" in declared:
        declared_schema = declared["content"]["application/json"]["schema"]
    if status >= 400:
        return _failure_schema(declared_schema, family)
    if declared_schema is None:
        raise SchemaMismatchError(
            f"the schema declares no {status} body for {method.upper()} {path_template}"
        )
    return declared_schema


def _check(schema: dict[str, Any], body: Any, what: str) -> None:
    document = {"allOf": [schema], "components": _spec()["components"]}
    validator = OAS30ReadValidator(document, format_checker=oas30_format_checker)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        details = "\n".join(_describe(error) for error in errors[:5])
        raise SchemaMismatchError(f"{what} does not match the Cloudflare schema:\n{details}")


def _describe(error: ValidationError) -> str:
    location = "/".join(str(part) for part in error.absolute_path) or "<root>"
    best = error
    while best.context:
        best = min(best.context, key=lambda e: len(list(e.absolute_path)))
        if not best.context:
            break
    return f"  at {location}: {error.message[:300]}" + (
        f" (deepest: {best.message[:200]})" if best is not error else ""
    )


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    """Raise SchemaMismatchError unless ``body`` is what the schema allows for this answer."""
    method = method.lower()
    schema = _response_schema(method, path_template, status, body)
    _check(schema, body, f"{method.upper()} {path_template} -> {status}")


def validate_failure_envelope(body: Any, family: str = "infra") -> None:
    """For answers outside any schema operation (unknown routes): the generic failure shape."""
    _check(_ref(f"{family}_api-response-common-failure"), body, "failure envelope")


def validate_httpx_response(response: httpx.Response) -> None:
    """Validate a response seen by httpx (usable as a response event hook)."""
    response.read()
    template = match_path(response.request.url.path)
    body = response.json()
    if template is None or response.request.method.lower() not in _spec()["paths"][template]:
        validate_failure_envelope(body)
        return
    validate_response(response.request.method, template, response.status_code, body)
