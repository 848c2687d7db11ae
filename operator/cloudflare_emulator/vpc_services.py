"""Workers VPC service endpoints (Cloudflare's "connectivity directory"): create, list, get,
replace (PUT) and delete.

A service is stored exactly as validated: responses echo what the client sent plus
``service_id``, ``created_at`` and ``updated_at``, and never invent defaults (ports,
``tls_settings``) that the client left out.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from cloudflare_emulator.context import account_of, emulator_of, ok, read_json
from cloudflare_emulator.envelope import (
    CODE_INVALID_INPUT,
    CODE_NOT_FOUND,
    CODE_SERVICE_LIMIT,
    ApiError,
    result_info,
)
from cloudflare_emulator.state import Account, VpcService
from cloudflare_emulator.timestamps import later_than, now_rfc3339
from cloudflare_emulator.validation import (
    MAX_PER_PAGE,
    parse_enum_parameter,
    parse_pagination,
    validate_service,
)

__all__ = ["create_service", "delete_service", "get_service", "list_services", "replace_service"]


def _find(account: Account, service_id: str) -> VpcService:
    service = account.services.get(service_id.lower())
    if service is None:
        raise ApiError(404, CODE_NOT_FOUND, "Service not found")
    return service


def _check_tunnel(request: web.Request, account: Account, fields: dict[str, Any]) -> None:
    if not emulator_of(request).settings.require_known_tunnel:
        return
    host = fields["host"]
    network = host.get("network") or host["resolver_network"]
    tunnel = account.tunnels.get(str(network["tunnel_id"]).lower())
    if tunnel is None or tunnel.deleted:
        raise ApiError(400, CODE_INVALID_INPUT, "tunnel not found in this account")


async def create_service(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    account = account_of(request)
    fields = validate_service(await read_json(request))
    _check_tunnel(request, account, fields)
    limit = emulator.settings.services_per_account
    if len(account.services) >= limit:
        raise ApiError(
            400, CODE_SERVICE_LIMIT, f"Maximum number of services per account ({limit}) reached"
        )
    created = now_rfc3339()
    service = VpcService(str(uuid.uuid4()), fields, created, created)
    account.services[service.service_id] = service
    emulator.changed()
    return ok(service.to_api())


async def list_services(request: web.Request) -> web.Response:
    page, per_page = parse_pagination(request.query, MAX_PER_PAGE)
    wanted_type = parse_enum_parameter(request.query, "type", ("http", "tcp"))
    matching = [
        service
        for service in account_of(request).services.values()
        if wanted_type is None or service.fields["type"] == wanted_type
    ]
    chunk = matching[(page - 1) * per_page : page * per_page]
    return ok([s.to_api() for s in chunk], result_info(page, per_page, len(chunk), len(matching)))


async def get_service(request: web.Request) -> web.Response:
    return ok(_find(account_of(request), request.match_info["service_id"]).to_api())


async def replace_service(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    account = account_of(request)
    service = _find(account, request.match_info["service_id"])
    fields = validate_service(await read_json(request))
    _check_tunnel(request, account, fields)
    # PUT replaces the whole object: fields the client left out are gone afterwards.
    service.fields = fields
    service.updated_at = later_than(service.updated_at)
    emulator.changed()
    return ok(service.to_api())


async def delete_service(request: web.Request) -> web.Response:
    emulator = emulator_of(request)
    account = account_of(request)
    service = _find(account, request.match_info["service_id"])
    del account.services[service.service_id]
    emulator.changed()
    # The schema declares no body; Cloudflare sends the envelope with a null result.
    return ok(None)
