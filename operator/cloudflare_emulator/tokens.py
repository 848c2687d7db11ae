"""API token verification: ``GET /user/tokens/verify`` and
``GET /accounts/{account_id}/tokens/verify``.

Which token may use which endpoint is decided in ``auth.py``; a token that reached these
handlers is reported with its status, even when disabled or expired, as Cloudflare does.
"""

from __future__ import annotations

from aiohttp import web

from cloudflare_emulator.context import ok, token_of

__all__ = ["verify_token"]


async def verify_token(request: web.Request) -> web.Response:
    return ok(token_of(request).verify_result())
