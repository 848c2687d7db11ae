"""Who may call what: bearer-token parsing and the 401/403 rules of the API.

``authorize`` is called by the middleware for every routed API request before the handler
runs. The token verify endpoints follow their own rules (they report a disabled or expired
token's status instead of refusing it) and are handled here too, so every authentication
decision sits in one place.
"""

from __future__ import annotations

from cloudflare_emulator.envelope import (
    CODE_AUTHENTICATION,
    CODE_FORBIDDEN,
    CODE_INVALID_HEADERS,
    CODE_INVALID_TOKEN,
    CODE_MALFORMED_AUTHORIZATION,
    ApiError,
)
from cloudflare_emulator.state import ApiToken

__all__ = ["BearerToken", "authorize", "parse_authorization"]

VERIFY_USER = "tokens.verify_user"
VERIFY_ACCOUNT = "tokens.verify_account"


class BearerToken(str):
    """A token taken from the Authorization header (a distinct type so it is never logged by
    accident where a plain string is expected)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "BearerToken(<redacted>)"


def parse_authorization(header: str | None) -> BearerToken | None:
    """Return the bearer token, None when the header is absent, or raise for a malformed one."""
    if header is None or not header.strip():
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip() or " " in value.strip():
        # What Cloudflare answers for a malformed Authorization header.
        raise ApiError(
            400,
            CODE_INVALID_HEADERS,
            "Invalid request headers",
            chain=[
                {
                    "code": CODE_MALFORMED_AUTHORIZATION,
                    "message": "Invalid format for Authorization header",
                }
            ],
        )
    return BearerToken(value.strip())


def _unauthenticated() -> ApiError:
    return ApiError(401, CODE_AUTHENTICATION, "Authentication error")


def _invalid_token() -> ApiError:
    return ApiError(401, CODE_INVALID_TOKEN, "Invalid API Token")


def _forbidden(message: str = "Unauthorized to access requested resource") -> ApiError:
    return ApiError(403, CODE_FORBIDDEN, message)


def authorize(
    *,
    operation: str,
    permission: str | None,
    bearer: BearerToken | None,
    token: ApiToken | None,
    account_id: str | None,
) -> ApiToken:
    """Return the token allowed to run ``operation`` on ``account_id``, or raise ApiError."""
    if operation in (VERIFY_USER, VERIFY_ACCOUNT):
        if bearer is None:
            raise _unauthenticated()
        expected_kind = "user" if operation == VERIFY_USER else "account"
        # An account-owned token sent to the user endpoint (or the reverse) is not found
        # there: Cloudflare answers "Invalid API Token".
        if token is None or token.kind != expected_kind:
            raise _invalid_token()
        if account_id is not None and account_id not in token.account_ids:
            raise _forbidden()
        return token
    if bearer is None or token is None:
        raise _unauthenticated()
    if token.effective_status() != "active":
        raise _forbidden("Invalid access token")
    if account_id is not None and account_id not in token.account_ids:
        raise _forbidden()
    if permission is not None and not token.allows(permission):
        raise _forbidden()
    return token
