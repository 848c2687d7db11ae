"""The admin HTTP API under ``/__emulator``: seeding accounts and tokens, simulating
cloudflared connectors, injecting faults, tuning the rate limit and settings, reading the
request log and counters, dumping and resetting state, and editing stored objects behind the
API's back (to simulate changes made in Cloudflare's dashboard).

JSON in and out; errors are ``{"error": "..."}`` with status 400 or 404. These requests are
never logged, rate limited or faulted. ``AdminClient`` (``admin_client.py``) wraps every
endpoint.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from aiohttp import web
from aiohttp.typedefs import Handler

from cloudflare_emulator.context import EMULATOR_KEY
from cloudflare_emulator.core import Emulator
from cloudflare_emulator.faults import FaultConfig
from cloudflare_emulator.state import ALL_PERMISSIONS, TokenKind, TokenStatus, Tunnel
from cloudflare_emulator.timestamps import later_than, parse_rfc3339

__all__ = ["ADMIN_PREFIX", "dispatch", "register"]

ADMIN_PREFIX = "/__emulator"
MAX_CONNECTORS_PER_CALL = 100


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdminError(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise AdminError(400, "request body must be a JSON object")
    return data


def _emulator(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise AdminError(400, f"{key} must be a non-empty string")
    return value


def _optional_time(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        parse_rfc3339(value)
    except (TypeError, ValueError):
        raise AdminError(400, f"{key} must be an RFC 3339 date-time") from None
    return str(value)


def _non_negative_int(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AdminError(400, f"{key} must be a non-negative integer")
    return value


# --- accounts and tokens -----------------------------------------------------------------


async def create_account(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    account = emulator.state.ensure_account(_string(await _body(request), "account_id"))
    emulator.changed()
    return _reply({"account_id": account.id})


async def list_accounts(request: web.Request) -> web.Response:
    return _reply({"accounts": list(_emulator(request).state.accounts)})


def _token_settings(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if "account_ids" in data or not partial:
        account_ids = data.get("account_ids", [])
        if not isinstance(account_ids, list) or not all(
            isinstance(a, str) and a for a in account_ids
        ):
            raise AdminError(400, "account_ids must be a list of account ids")
        settings["account_ids"] = account_ids
    if "kind" in data or not partial:
        kind = data.get("kind", "account")
        if kind not in get_args(TokenKind):
            raise AdminError(400, "kind must be 'account' or 'user'")
        settings["kind"] = kind
    if "status" in data or not partial:
        status = data.get("status", "active")
        if status not in get_args(TokenStatus):
            raise AdminError(400, "status must be 'active', 'disabled' or 'expired'")
        settings["status"] = status
    if "permissions" in data or not partial:
        permissions = data.get("permissions")
        if permissions is not None and (
            not isinstance(permissions, list) or not all(p in ALL_PERMISSIONS for p in permissions)
        ):
            raise AdminError(400, "permissions must be a list of: " + ", ".join(ALL_PERMISSIONS))
        settings["permissions"] = permissions
    for key in ("not_before", "expires_on"):
        if key in data or not partial:
            settings[key] = _optional_time(data, key)
    return settings


async def create_token(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    data = await _body(request)
    token = _string(data, "token")
    record = emulator.state.put_token(token, **_token_settings(data, partial=False))
    emulator.changed()
    return _reply(record.public_view())


async def update_token(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    record = emulator.state.find_token(request.match_info["token"])
    if record is None:
        raise AdminError(404, "unknown token")
    for key, value in _token_settings(await _body(request), partial=True).items():
        if key == "permissions" and value is None:
            value = list(ALL_PERMISSIONS)
        setattr(record, key, value)
    for account_id in record.account_ids:
        emulator.state.ensure_account(account_id)
    emulator.changed()
    return _reply(record.public_view())


async def delete_token(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    record = emulator.state.find_token(request.match_info["token"])
    if record is None:
        raise AdminError(404, "unknown token")
    del emulator.state.tokens[record.token_hash]
    emulator.changed()
    return _reply({"deleted": record.id})


# --- connectors --------------------------------------------------------------------------


def _tunnel(request: web.Request, *, live: bool) -> Tunnel:
    account = _emulator(request).state.accounts.get(request.match_info["account_id"])
    tunnel = account.tunnels.get(request.match_info["tunnel_id"].lower()) if account else None
    if tunnel is None or (live and tunnel.deleted):
        raise AdminError(404, "unknown tunnel" if tunnel is None else "tunnel is deleted")
    return tunnel


async def connect(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    tunnel = _tunnel(request, live=True)
    data = await _body(request)
    count = _non_negative_int(data, "count", 1)
    if count > MAX_CONNECTORS_PER_CALL:
        raise AdminError(400, f"count must be at most {MAX_CONNECTORS_PER_CALL}")
    version, arch = data.get("version"), data.get("arch")
    if not isinstance(version, str | None) or not isinstance(arch, str | None):
        raise AdminError(400, "version and arch must be strings")
    connectors = emulator.connect(tunnel, count, version=version, arch=arch)
    return _reply({"tunnel": tunnel.to_api(), "connectors": [c.to_api() for c in connectors]})


async def disconnect(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    tunnel = _tunnel(request, live=False)
    removed = tunnel.detach()
    emulator.changed()
    return _reply({"tunnel": tunnel.to_api(), "removed": removed})


async def get_auto_connect(request: web.Request) -> web.Response:
    return _reply(_emulator(request).auto_connect.to_json())


async def put_auto_connect(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    data = await _body(request)
    connectors = _non_negative_int(data, "connectors", 0)
    delay = data.get("delay_seconds", emulator.auto_connect.delay_seconds)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise AdminError(400, "delay_seconds must be a non-negative number")
    emulator.auto_connect.connectors = connectors
    emulator.auto_connect.delay_seconds = float(delay)
    return _reply(emulator.auto_connect.to_json())


# --- faults, rate limit, settings ---------------------------------------------------------


async def get_faults(request: web.Request) -> web.Response:
    return _reply(_emulator(request).faults.config.to_json())


async def put_faults(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    try:
        config = FaultConfig.from_json(await _body(request))
    except (TypeError, ValueError) as error:
        raise AdminError(400, str(error)) from None
    emulator.faults.configure(config)
    return _reply(config.to_json())


async def delete_faults(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    emulator.faults.clear()
    return _reply(emulator.faults.config.to_json())


async def get_rate_limit(request: web.Request) -> web.Response:
    return _reply(_emulator(request).limiter.settings())


async def put_rate_limit(request: web.Request) -> web.Response:
    limiter = _emulator(request).limiter
    data = await _body(request)
    limit = data.get("limit", limiter.limit)
    window = data.get("window_seconds", limiter.window_seconds)
    block = data.get("block_on_exceed", False)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise AdminError(400, "limit must be a positive integer")
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise AdminError(400, "window_seconds must be a positive number")
    if not isinstance(block, bool):
        raise AdminError(400, "block_on_exceed must be a boolean")
    # Reconfiguring starts every token with a fresh window.
    limiter.configure(limit, float(window), block_on_exceed=block)
    return _reply(limiter.settings())


async def delete_rate_limit(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    emulator.restore_rate_limit()
    return _reply(emulator.limiter.settings())


async def get_settings(request: web.Request) -> web.Response:
    return _reply(_emulator(request).settings.to_json())


async def put_settings(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    try:
        emulator.settings.update(await _body(request))
    except ValueError as error:
        raise AdminError(400, str(error)) from None
    return _reply(emulator.settings.to_json())


# --- request log, state --------------------------------------------------------------------


def _query_account(request: web.Request) -> str | None:
    return request.query.get("account_id") or None


async def get_requests(request: web.Request) -> web.Response:
    raw_since = request.query.get("since_seq")
    try:
        since = int(raw_since) if raw_since else None
    except ValueError:
        raise AdminError(400, "since_seq must be an integer") from None
    records = _emulator(request).log.records(account_id=_query_account(request), since_seq=since)
    return _reply(records)


async def delete_requests(request: web.Request) -> web.Response:
    _emulator(request).log.clear()
    return _reply({"cleared": True})


async def get_counters(request: web.Request) -> web.Response:
    return _reply(_emulator(request).log.counters(account_id=_query_account(request)))


async def get_state(request: web.Request) -> web.Response:
    return _reply(_emulator(request).state.dump())


async def reset(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    keep = (await _body(request)).get("keep_credentials", False)
    if not isinstance(keep, bool):
        raise AdminError(400, "keep_credentials must be a boolean")
    emulator.reset(keep_credentials=keep)
    return _reply({"reset": True, "keep_credentials": keep})


async def health(request: web.Request) -> web.Response:
    return _reply({"ok": True})


# --- edits behind the API's back (drift) ------------------------------------------------------


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: null removes a key, objects merge, anything else replaces."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_patch(merged[key], value)
        else:
            merged[key] = value
    return merged


async def patch_service(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    account = emulator.state.accounts.get(request.match_info["account_id"])
    service_id = request.match_info["service_id"].lower()
    service = account.services.get(service_id) if account else None
    if service is None:
        raise AdminError(404, "unknown service")
    patch = await _body(request)
    for key in ("service_id", "created_at"):
        if key in patch:
            raise AdminError(400, f"{key} cannot be changed")
    updated_at = patch.pop("updated_at", None)
    # No validation on purpose: the point is to store what the API would refuse or what a
    # dashboard edit would produce.
    service.fields = _merge_patch(service.fields, patch)
    service.updated_at = str(updated_at) if updated_at else later_than(service.updated_at)
    emulator.changed()
    return _reply(service.to_api())


async def delete_service(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    account = emulator.state.accounts.get(request.match_info["account_id"])
    service_id = request.match_info["service_id"].lower()
    if account is None or account.services.pop(service_id, None) is None:
        raise AdminError(404, "unknown service")
    emulator.changed()
    return _reply({"deleted": service_id})


_TUNNEL_RAW_FIELDS = frozenset({"name", "config_src", "deleted_at", "metadata"})


async def patch_tunnel(request: web.Request) -> web.Response:
    emulator = _emulator(request)
    tunnel = _tunnel(request, live=False)
    patch = await _body(request)
    unknown = sorted(set(patch) - _TUNNEL_RAW_FIELDS)
    if unknown:
        raise AdminError(
            400,
            "only these tunnel fields can be edited: "
            + ", ".join(sorted(_TUNNEL_RAW_FIELDS))
            + f" (got {', '.join(unknown)})",
        )
    if "name" in patch:
        tunnel.name = _string(patch, "name")
    if "config_src" in patch:
        tunnel.config_src = _string(patch, "config_src")
    if "deleted_at" in patch:
        tunnel.deleted_at = _optional_time(patch, "deleted_at")
        if tunnel.deleted_at is not None:
            tunnel.detach()
    if "metadata" in patch:
        if not isinstance(patch["metadata"], dict):
            raise AdminError(400, "metadata must be an object")
        tunnel.metadata = patch["metadata"]
    emulator.changed()
    return _reply(tunnel.dump())


# --- wiring ----------------------------------------------------------------------------------


async def dispatch(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run an admin handler (called by the application middleware for admin paths)."""
    routing_error = request.match_info.http_exception
    if routing_error is not None:
        message = f"{routing_error.reason}: {request.method} {request.path}"
        return _reply({"error": message}, routing_error.status)
    try:
        return await handler(request)
    except AdminError as error:
        return _reply({"error": error.message}, error.status)


def register(app: web.Application) -> None:
    prefix = ADMIN_PREFIX
    account = f"{prefix}/accounts/{{account_id}}"
    tunnel = f"{account}/tunnels/{{tunnel_id}}"
    table: list[tuple[str, str, Handler]] = [
        ("GET", f"{prefix}/health", health),
        ("GET", f"{prefix}/accounts", list_accounts),
        ("POST", f"{prefix}/accounts", create_account),
        ("POST", f"{prefix}/tokens", create_token),
        ("PATCH", f"{prefix}/tokens/{{token}}", update_token),
        ("DELETE", f"{prefix}/tokens/{{token}}", delete_token),
        ("POST", f"{tunnel}/connectors", connect),
        ("DELETE", f"{tunnel}/connectors", disconnect),
        ("PATCH", tunnel, patch_tunnel),
        ("PATCH", f"{account}/vpc-services/{{service_id}}", patch_service),
        ("DELETE", f"{account}/vpc-services/{{service_id}}", delete_service),
        ("GET", f"{prefix}/auto-connect", get_auto_connect),
        ("PUT", f"{prefix}/auto-connect", put_auto_connect),
        ("GET", f"{prefix}/faults", get_faults),
        ("PUT", f"{prefix}/faults", put_faults),
        ("DELETE", f"{prefix}/faults", delete_faults),
        ("GET", f"{prefix}/rate-limit", get_rate_limit),
        ("PUT", f"{prefix}/rate-limit", put_rate_limit),
        ("DELETE", f"{prefix}/rate-limit", delete_rate_limit),
        ("GET", f"{prefix}/settings", get_settings),
        ("PUT", f"{prefix}/settings", put_settings),
        ("GET", f"{prefix}/requests", get_requests),
        ("DELETE", f"{prefix}/requests", delete_requests),
        ("GET", f"{prefix}/counters", get_counters),
        ("GET", f"{prefix}/state", get_state),
        ("POST", f"{prefix}/reset", reset),
    ]
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
