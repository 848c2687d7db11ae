"""Cloudflare Tunnel (``cfd_tunnel``) endpoints: create, list, get, edit, delete, run token,
remote configuration, connections, connectors and the log-stream management token.

Deletion is soft: a deleted tunnel still answers ``GET`` and appears in lists (unless
``is_deleted=false``), but every other operation on it answers 404, as for an unknown id.
Connectors are simulated; they come and go through the admin API (``admin.py``).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from cloudflare_emulator.context import account_of, emulator_of, ok, read_json
from cloudflare_emulator.envelope import (
    CODE_ACTIVE_CONNECTIONS,
    CODE_INVALID_PARAMETER,
    CODE_NOT_FOUND,
    CODE_TUNNEL_NAME_TAKEN,
    ApiError,
    result_info,
)
from cloudflare_emulator.state import Account, Tunnel
from cloudflare_emulator.timestamps import now_rfc3339, parse_rfc3339
from cloudflare_emulator.validation import (
    parse_bool_parameter,
    parse_enum_parameter,
    parse_pagination,
    parse_time_parameter,
    validate_configuration,
    validate_management_request,
    validate_tunnel_create,
    validate_tunnel_edit,
)

__all__ = [
    "create_tunnel",
    "delete_connections",
    "delete_tunnel",
    "edit_tunnel",
    "get_configuration",
    "get_connector",
    "get_tunnel",
    "get_tunnel_token",
    "list_connections",
    "list_tunnels",
    "management_token",
    "put_configuration",
]

TUNNEL_STATUSES = ("inactive", "degraded", "healthy", "down")


def _not_found(what: str = "Tunnel") -> ApiError:
    return ApiError(404, CODE_NOT_FOUND, f"{what} not found")


def find_tunnel(account: Account, tunnel_id: str, *, include_deleted: bool) -> Tunnel:
    tunnel = account.tunnels.get(tunnel_id.lower())
    if tunnel is None or (tunnel.deleted and not include_deleted):
        raise _not_found()
    return tunnel


def _tunnel(request: web.Request, *, include_deleted: bool = False) -> Tunnel:
    return find_tunnel(
        account_of(request), request.match_info["tunnel_id"], include_deleted=include_deleted
    )


def _name_taken(account: Account, name: str, other_than: str | None = None) -> None:
    holder = account.live_tunnel_named(name)
    if holder is not None and holder.id != other_than:
        raise ApiError(409, CODE_TUNNEL_NAME_TAKEN, "You already have a tunnel with this name.")


def _with_credentials(tunnel: Tunnel) -> dict[str, object]:
    # Not in the schema, but what Cloudflare returns on create and on a secret rotation.
    return {
        **tunnel.to_api(),
        "credentials_file": tunnel.credentials_file(),
        "token": tunnel.run_token(),
    }


async def create_tunnel(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    account = account_of(request)
    name, config_src, secret = validate_tunnel_create(await read_json(request))
    _name_taken(account, name)
    tunnel = Tunnel.new(account.id, name, config_src, secret)
    account.tunnels[tunnel.id] = tunnel
    emulator.changed()
    emulator.tunnel_created(tunnel)
    return ok(_with_credentials(tunnel))


def _at_or_before(timestamp: str | None, moment: datetime) -> bool:
    return timestamp is not None and parse_rfc3339(timestamp) <= moment


def _list_filters(request: web.Request) -> list[Callable[[Tunnel], bool]]:
    query = request.query
    checks: list[Callable[[Tunnel], bool]] = []
    name = query.get("name")
    if name is not None:
        checks.append(lambda t: t.name == name)
    wanted_id = query.get("uuid")
    if wanted_id is not None:
        checks.append(lambda t: t.id == wanted_id.lower())
    is_deleted = parse_bool_parameter(query, "is_deleted")
    if is_deleted is not None:
        checks.append(lambda t: t.deleted == is_deleted)
    status = parse_enum_parameter(query, "status", TUNNEL_STATUSES)
    if status is not None:
        checks.append(lambda t: t.status == status)
    include_prefix = query.get("include_prefix")
    if include_prefix is not None:
        checks.append(lambda t: t.name.startswith(include_prefix))
    exclude_prefix = query.get("exclude_prefix")
    if exclude_prefix is not None:
        checks.append(lambda t: not t.name.startswith(exclude_prefix))
    existed_at = parse_time_parameter(query, "existed_at")
    if existed_at is not None:
        checks.append(
            lambda t: (
                _at_or_before(t.created_at, existed_at)
                and not _at_or_before(t.deleted_at, existed_at)
            )
        )
    # Approximations: the emulator keeps only the latest up/down transition of a tunnel.
    was_active_at = parse_time_parameter(query, "was_active_at")
    if was_active_at is not None:
        checks.append(lambda t: _at_or_before(t.conns_active_at, was_active_at))
    was_inactive_at = parse_time_parameter(query, "was_inactive_at")
    if was_inactive_at is not None:
        checks.append(lambda t: _at_or_before(t.conns_inactive_at, was_inactive_at))
    return checks


async def list_tunnels(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    page, per_page = parse_pagination(request.query, emulator.settings.tunnels_default_per_page)
    checks = _list_filters(request)
    matching = [
        t for t in account_of(request).tunnels.values() if all(check(t) for check in checks)
    ]
    chunk = matching[(page - 1) * per_page : page * per_page]
    return ok([t.to_api() for t in chunk], result_info(page, per_page, len(chunk), len(matching)))


async def get_tunnel(request: web.Request) -> web.Response:
    return ok(_tunnel(request, include_deleted=True).to_api())


async def edit_tunnel(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    account = account_of(request)
    tunnel = _tunnel(request)
    name, secret = validate_tunnel_edit(await read_json(request))
    if name is not None:
        _name_taken(account, name, other_than=tunnel.id)
        tunnel.name = name
    if secret is not None:
        tunnel.secret = secret
    emulator.changed()
    return ok(_with_credentials(tunnel) if secret is not None else tunnel.to_api())


async def delete_tunnel(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    tunnel = _tunnel(request)
    cascade = parse_bool_parameter(request.query, "cascade") or False
    if tunnel.connectors and not cascade:
        raise ApiError(
            400,
            CODE_ACTIVE_CONNECTIONS,
            "Cannot delete a tunnel with active connections: stop its connectors and clean up "
            "its connections first, or delete with cascade=true",
        )
    tunnel.detach()
    tunnel.deleted_at = now_rfc3339()
    emulator.changed()
    return ok(tunnel.to_api())


async def get_tunnel_token(request: web.Request) -> web.Response:
    return ok(_tunnel(request).run_token())


async def get_configuration(request: web.Request) -> web.Response:
    return ok(_tunnel(request).configuration())


async def put_configuration(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    tunnel = _tunnel(request)
    config = validate_configuration(await read_json(request))
    tunnel.config = config
    tunnel.config_version += 1
    tunnel.config_created_at = now_rfc3339()
    # Running connectors pick up a new remote configuration.
    for connector in tunnel.connectors:
        connector.config_version = tunnel.config_version
    emulator.changed()
    return ok(tunnel.configuration())


async def list_connections(request: web.Request) -> web.Response:
    tunnel = _tunnel(request, include_deleted=True)
    return ok([connector.to_api() for connector in tunnel.connectors])


async def delete_connections(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    tunnel = _tunnel(request)
    client_id = request.query.get("client_id")
    if client_id is not None and not client_id.strip():
        raise ApiError(400, CODE_INVALID_PARAMETER, "invalid query parameter 'client_id'")
    # Cleaning up a connector that is already gone is not an error: the call is idempotent.
    if tunnel.detach(client_id):
        emulator.changed()
    return ok({})


async def get_connector(request: web.Request) -> web.Response:
    tunnel = _tunnel(request, include_deleted=True)
    wanted = request.match_info["connector_id"].lower()
    for connector in tunnel.connectors:
        if connector.id == wanted:
            return ok(connector.to_api())
    raise _not_found("Connector")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def management_token(request: web.Request) -> web.Response:
    tunnel = _tunnel(request)
    resources = validate_management_request(await read_json(request))
    # Shaped like the JWT Cloudflare returns; nothing ever verifies its signature.
    header = _b64url(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    claims = _b64url(
        json.dumps(
            {"tun": {"id": tunnel.id}, "actor": {"support": False}, "res": resources}
        ).encode()
    )
    return ok(f"{header}.{claims}.{_b64url(secrets.token_bytes(64))}")
