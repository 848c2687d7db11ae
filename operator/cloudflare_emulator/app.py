"""The aiohttp application: the API routes under ``/client/v4``, the admin API under
``/__emulator``, and the middleware every API request passes through.

Order of the middleware, and why:

1. injected faults (latency, dropped connection, 429 burst, 5xx) - they model the network and
   Cloudflare's edge, so they come before anything the API itself decides;
2. the rate limit, per token - Cloudflare counts every request, even ones it then refuses;
3. unknown route (404, code 7003) or method (405);
4. authentication and authorisation (``auth.py``);
5. the handler; an :class:`ApiError` becomes a failure envelope, any other exception a 500
   (so a bug shows up as a 5xx that tests catch, not as a hung request).

Every API request is logged with its operation name and final status; admin requests are not.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from cloudflare_emulator import admin
from cloudflare_emulator.auth import BearerToken, authorize, parse_authorization
from cloudflare_emulator.context import CURRENT_TOKEN, EMULATOR_KEY
from cloudflare_emulator.core import Emulator
from cloudflare_emulator.envelope import (
    CODE_INVALID_INPUT,
    CODE_METHOD_NOT_ALLOWED,
    CODE_NOT_FOUND,
    CODE_RATE_LIMITED,
    CODE_SERVER_ERROR,
    ApiError,
)
from cloudflare_emulator.ratelimit import RateDecision
from cloudflare_emulator.routes import API_PREFIX, ROUTES, Route
from cloudflare_emulator.state import ApiToken, hash_token

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

UNKNOWN_OPERATION = "unknown"


class _ConnectionDroppedError(Exception):
    """The connection was closed without an answer (an injected fault)."""


def _rate_headers(decision: RateDecision) -> dict[str, str]:
    headers = {
        "x-ratelimit-limit": str(decision.limit),
        "x-ratelimit-remaining": str(decision.remaining),
    }
    if not decision.allowed:
        # Cloudflare sends these two only on a 429: whole seconds, and an HTTP date.
        headers["retry-after"] = str(decision.retry_after)
        headers["x-ratelimit-reset"] = email.utils.formatdate(
            time.time() + decision.reset_after, usegmt=True
        )
    return headers


def _rate_limited(retry_after: int, headers: Mapping[str, str] | None = None) -> ApiError:
    limiter_headers = {"retry-after": str(retry_after), **(headers or {})}
    return ApiError(
        429,
        CODE_RATE_LIMITED,
        "Rate limited. Please wait and consider throttling your request speed",
        headers=limiter_headers,
    )


def _routing_error(request: web.Request) -> ApiError | None:
    exception = request.match_info.http_exception
    if exception is None:
        return None
    if exception.status == 405:
        return ApiError(405, CODE_METHOD_NOT_ALLOWED, "Method not allowed")
    return ApiError(404, CODE_NOT_FOUND, "No route for the URI")


def _accounts_in_scope(path_account: str | None, token: ApiToken | None) -> list[str]:
    if path_account is not None:
        return [path_account]
    return list(token.account_ids) if token is not None else []


def _make_middleware(routes: Mapping[AbstractRoute, Route]) -> Middleware:
    @web.middleware
    async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == admin.ADMIN_PREFIX or request.path.startswith(admin.ADMIN_PREFIX + "/"):
            return await admin.dispatch(request, handler)
        emulator = request.app[EMULATOR_KEY]
        route = routes.get(request.match_info.route)
        operation = route.operation if route is not None else UNKNOWN_OPERATION
        path_account = request.match_info.get("account_id")
        try:
            bearer: BearerToken | None = parse_authorization(request.headers.get("Authorization"))
            header_error: ApiError | None = None
        except ApiError as error:
            bearer, header_error = None, error
        token = emulator.state.find_token(bearer) if bearer is not None else None
        scope = _accounts_in_scope(path_account, token)
        status = 0
        try:
            response = await _answer(
                request, handler, route, bearer, header_error, token, path_account, scope
            )
            status = response.status
            return response
        except _ConnectionDroppedError:
            transport = request.transport
            if transport is not None:
                transport.close()
            return web.Response(status=599)  # never sent: the connection is already closed
        finally:
            emulator.log.add(
                time=time.time(),
                method=request.method,
                path=request.path,
                query=request.query_string,
                operation=operation,
                status=status,
                account_id=scope[0] if scope else None,
            )

    return api_middleware


async def _answer(
    request: web.Request,
    handler: Handler,
    route: Route | None,
    bearer: BearerToken | None,
    header_error: ApiError | None,
    token: ApiToken | None,
    path_account: str | None,
    scope: list[str],
) -> web.StreamResponse:
    emulator = request.app[EMULATOR_KEY]
    operation = route.operation if route is not None else UNKNOWN_OPERATION
    fault = emulator.faults.decide(operation, scope)
    if fault.latency_seconds:
        # The request has fully arrived before the delay (aiohttp keeps the body for the
        # handler): a client that gives up or dies meanwhile leaves a request that Cloudflare
        # still carries out, which is the case crash tests need to reproduce.
        await request.read()
        await asyncio.sleep(fault.latency_seconds)
    if fault.action == "drop":
        raise _ConnectionDroppedError
    if fault.action == "throttle":
        return _rate_limited(fault.retry_after).to_response()
    if fault.action == "error":
        return ApiError(
            fault.status, CODE_SERVER_ERROR, "An unknown error has occurred (injected)"
        ).to_response()

    rate_headers: dict[str, str] = {}
    if bearer is not None:
        decision = emulator.limiter.hit(hash_token(bearer))
        rate_headers = _rate_headers(decision)
        if not decision.allowed:
            return _rate_limited(decision.retry_after, rate_headers).to_response()

    try:
        routing_error = _routing_error(request)
        if routing_error is not None:
            raise routing_error
        if header_error is not None:
            raise header_error
        if route is None:
            raise ApiError(404, CODE_NOT_FOUND, "No route for the URI")
        authorised = authorize(
            operation=route.operation,
            permission=route.permission,
            bearer=bearer,
            token=token,
            account_id=path_account,
        )
        reset = CURRENT_TOKEN.set(authorised)
        try:
            response = await handler(request)
        finally:
            CURRENT_TOKEN.reset(reset)
    except ApiError as error:
        response = error.to_response()
    except web.HTTPException as error:
        # aiohttp's own refusals (for example a body over the size limit) keep their status
        # but get the envelope like every other answer.
        response = ApiError(error.status, CODE_INVALID_INPUT, error.reason).to_response()
    except Exception:
        logger.exception("emulator bug while handling %s %s", request.method, request.path)
        response = ApiError(500, CODE_SERVER_ERROR, "Internal emulator error").to_response()
    response.headers.update(rate_headers)
    return response


def create_app(emulator: Emulator) -> web.Application:
    routes: dict[AbstractRoute, Route] = {}
    app = web.Application(middlewares=[_make_middleware(routes)])
    app[EMULATOR_KEY] = emulator
    for route in ROUTES:
        registered = app.router.add_route(route.method, API_PREFIX + route.path, route.handler)
        routes[registered] = route
    admin.register(app)
    return app
