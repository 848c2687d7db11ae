"""The API's route table: method, path, stable operation name, required permission, handler.

Operation names are a contract: the request log and counters use them, and tests count calls
by them. Paths are relative to the API base ``/client/v4``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from cloudflare_emulator import tokens, tunnels, vpc_services

__all__ = ["API_PREFIX", "ROUTES", "Route"]

API_PREFIX = "/client/v4"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TUNNEL = "/accounts/{account_id}/cfd_tunnel/{tunnel_id}"
_SERVICES = "/accounts/{account_id}/connectivity/directory/services"

READ_TUNNELS = "tunnel:read"
WRITE_TUNNELS = "tunnel:write"
READ_SERVICES = "connectivity:read"
ADMIN_SERVICES = "connectivity:admin"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: str
    permission: str | None  # None: any valid token (the verify endpoints)
    handler: Handler


ROUTES: tuple[Route, ...] = (
    Route("GET", "/user/tokens/verify", "tokens.verify_user", None, tokens.verify_token),
    Route(
        "GET",
        "/accounts/{account_id}/tokens/verify",
        "tokens.verify_account",
        None,
        tokens.verify_token,
    ),
    Route(
        "POST",
        "/accounts/{account_id}/cfd_tunnel",
        "tunnels.create",
        WRITE_TUNNELS,
        tunnels.create_tunnel,
    ),
    Route(
        "GET",
        "/accounts/{account_id}/cfd_tunnel",
        "tunnels.list",
        READ_TUNNELS,
        tunnels.list_tunnels,
    ),
    Route("GET", _TUNNEL, "tunnels.get", READ_TUNNELS, tunnels.get_tunnel),
    Route("PATCH", _TUNNEL, "tunnels.edit", WRITE_TUNNELS, tunnels.edit_tunnel),
    Route("DELETE", _TUNNEL, "tunnels.delete", WRITE_TUNNELS, tunnels.delete_tunnel),
    # The run token is a credential: reading it needs the write permission.
    Route("GET", f"{_TUNNEL}/token", "tunnels.token", WRITE_TUNNELS, tunnels.get_tunnel_token),
    Route(
        "GET",
        f"{_TUNNEL}/configurations",
        "tunnels.configurations.get",
        READ_TUNNELS,
        tunnels.get_configuration,
    ),
    Route(
        "PUT",
        f"{_TUNNEL}/configurations",
        "tunnels.configurations.put",
        WRITE_TUNNELS,
        tunnels.put_configuration,
    ),
    Route(
        "GET",
        f"{_TUNNEL}/connections",
        "tunnels.connections.list",
        READ_TUNNELS,
        tunnels.list_connections,
    ),
    Route(
        "DELETE",
        f"{_TUNNEL}/connections",
        "tunnels.connections.delete",
        WRITE_TUNNELS,
        tunnels.delete_connections,
    ),
    Route(
        "GET",
        f"{_TUNNEL}/connectors/{{connector_id}}",
        "tunnels.connector.get",
        READ_TUNNELS,
        tunnels.get_connector,
    ),
    Route(
        "POST",
        f"{_TUNNEL}/management",
        "tunnels.management.create",
        WRITE_TUNNELS,
        tunnels.management_token,
    ),
    Route("POST", _SERVICES, "vpc_services.create", ADMIN_SERVICES, vpc_services.create_service),
    Route("GET", _SERVICES, "vpc_services.list", READ_SERVICES, vpc_services.list_services),
    Route(
        "GET",
        f"{_SERVICES}/{{service_id}}",
        "vpc_services.get",
        READ_SERVICES,
        vpc_services.get_service,
    ),
    Route(
        "PUT",
        f"{_SERVICES}/{{service_id}}",
        "vpc_services.replace",
        ADMIN_SERVICES,
        vpc_services.replace_service,
    ),
    Route(
        "DELETE",
        f"{_SERVICES}/{{service_id}}",
        "vpc_services.delete",
        ADMIN_SERVICES,
        vpc_services.delete_service,
    ),
)
