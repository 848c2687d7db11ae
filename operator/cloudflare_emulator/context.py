"""Helpers every API handler uses: reaching the emulator, the caller's account and token, the
JSON body, and the success envelope.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from cloudflare_emulator.core import Emulator
from cloudflare_emulator.envelope import (
    CODE_MALFORMED_JSON,
    ApiError,
    json_response,
    success_body,
)
from cloudflare_emulator.state import Account, ApiToken

__all__ = [
    "CURRENT_TOKEN",
    "EMULATOR_KEY",
    "account_of",
    "emulator_of",
    "ok",
    "read_json",
    "token_of",
]

EMULATOR_KEY = web.AppKey("emulator", Emulator)
# The token the middleware authorised for the request being handled. A context variable
# rather than request storage: it works the same on every aiohttp release we support.
CURRENT_TOKEN: ContextVar[ApiToken | None] = ContextVar("cloudflare_emulator_token", default=None)


def emulator_of(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def token_of(request: web.Request) -> ApiToken:
    token = CURRENT_TOKEN.get()
    if token is None:
        raise RuntimeError("handler reached without an authorised token")
    return token


def account_of(request: web.Request) -> Account:
    # The middleware has already checked that the token belongs to this account, and tokens
    # only name accounts that exist, so this never creates a stray account.
    return emulator_of(request).state.ensure_account(request.match_info["account_id"])


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; an empty body reads as an empty object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, CODE_MALFORMED_JSON, "Malformed JSON in request body") from None


def ok(result: Any, info: dict[str, int] | None = None) -> web.Response:
    return json_response(success_body(result, info))
