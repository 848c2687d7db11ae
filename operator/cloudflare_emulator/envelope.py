"""The Cloudflare v4 response envelope, the error type the handlers raise, and the error codes.

Every JSON answer of the API is ``{"success", "errors", "messages", "result"}`` (plus
``result_info`` on lists). Handlers raise :class:`ApiError`; the middleware in ``app.py`` turns
it into a failure envelope. Cloudflare documents few error codes: where it documents or is
seen to use one, the constant below uses it; the others are this emulator's choice, and
clients must branch on the HTTP status, never on these numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = [
    "CODE_ACTIVE_CONNECTIONS",
    "CODE_AUTHENTICATION",
    "CODE_FORBIDDEN",
    "CODE_INVALID_HEADERS",
    "CODE_INVALID_INPUT",
    "CODE_INVALID_PARAMETER",
    "CODE_INVALID_TOKEN",
    "CODE_MALFORMED_AUTHORIZATION",
    "CODE_MALFORMED_JSON",
    "CODE_METHOD_NOT_ALLOWED",
    "CODE_NOT_FOUND",
    "CODE_RATE_LIMITED",
    "CODE_SERVER_ERROR",
    "CODE_SERVICE_LIMIT",
    "CODE_TUNNEL_NAME_TAKEN",
    "ApiError",
    "failure_body",
    "json_response",
    "result_info",
    "success_body",
]

# Seen in real responses or in Cloudflare's schema and docs.
CODE_INVALID_TOKEN = 1000  # "Invalid API Token" from the token verify endpoints
CODE_TUNNEL_NAME_TAKEN = 1013  # duplicate live tunnel name (cloudflared matches on it)
CODE_INVALID_HEADERS = 6003  # wraps CODE_MALFORMED_AUTHORIZATION in an error_chain
CODE_MALFORMED_JSON = 6007
CODE_MALFORMED_AUTHORIZATION = 6111
CODE_METHOD_NOT_ALLOWED = 7001
CODE_NOT_FOUND = 7003  # the schema's own example: "No route for the URI"
CODE_FORBIDDEN = 9109
CODE_AUTHENTICATION = 10000
CODE_RATE_LIMITED = 10100  # "More than 1200 requests per 300 seconds reached"

# The emulator's choices: Cloudflare documents no code for these cases.
CODE_INVALID_INPUT = 1001  # a request body that breaks the documented shape
CODE_INVALID_PARAMETER = 1002  # a bad query parameter (page, per_page, filters)
CODE_ACTIVE_CONNECTIONS = 1022  # tunnel delete refused while connectors are attached
CODE_SERVICE_LIMIT = 1030  # the 1000-services-per-account limit
CODE_SERVER_ERROR = 10002  # injected 5xx answers


class ApiError(Exception):
    """An API failure: HTTP status, one Cloudflare error entry, optional extra headers."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        pointer: str | None = None,
        chain: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.pointer = pointer
        self.chain = chain
        self.headers = dict(headers or {})

    def error_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.pointer is not None:
            entry["source"] = {"pointer": self.pointer}
        if self.chain:
            entry["error_chain"] = self.chain
        return entry

    def to_response(self) -> web.Response:
        return json_response(failure_body([self.error_entry()]), self.status, self.headers)


def success_body(result: Any, info: dict[str, int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return body


def failure_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": False, "errors": errors, "messages": [], "result": None}


def result_info(page: int, per_page: int, count: int, total_count: int) -> dict[str, int]:
    return {
        "page": page,
        "per_page": per_page,
        "count": count,
        "total_count": total_count,
        "total_pages": math.ceil(total_count / per_page),
    }


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json",
    )
