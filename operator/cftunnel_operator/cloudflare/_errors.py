"""Every way a Cloudflare API call can fail, as one exception tree.

```
CloudflareError                      anything raised by this package
├── CloudflareTransportError         no usable HTTP answer: connect/read/write timeouts,
│                                    refused or dropped connections, protocol errors
├── UnexpectedResponseError          an answer that is not the documented envelope or shape
└── CloudflareAPIError               Cloudflare answered with a failure envelope or an error status;
    │                                carries .status_code, .errors (code + message), .operation
    ├── InvalidRequestError          400 Bad Request, 422 Unprocessable Entity
    ├── AuthenticationError          401: the token is missing, malformed, expired or revoked
    ├── PermissionDeniedError        403: the token is valid but lacks a permission
    ├── NotFoundError                404: no such account, tunnel, connector or service
    ├── ConflictError                409: e.g. a live tunnel already has that name (code 1013)
    ├── RateLimitedError             429: over the rate limit; .retry_after in seconds, if given
    └── ServerError                  500 and above
```

Other error statuses (405, 408, 410, 413, ...) raise `CloudflareAPIError` itself. Decisions are
made on the class (the HTTP status); Cloudflare's numeric codes are promised nowhere, so they are
kept for log messages only.

No exception built here ever holds the API token: messages are assembled from the operation name,
the status and the envelope's error entries, and the client redacts the token from server-supplied
text before it gets here.

This module holds the classes and the status mapping only; retries live in `_retry`, raising
in `_session`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ._models import CloudflareMessage

__all__ = [
    "AuthenticationError",
    "CloudflareAPIError",
    "CloudflareError",
    "CloudflareTransportError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "UnexpectedResponseError",
    "api_error_for_status",
]


class CloudflareError(Exception):
    """Base class of every error raised by the Cloudflare client."""

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class CloudflareTransportError(CloudflareError):
    """No HTTP answer arrived: the connection failed, timed out or was dropped.

    `request_sent` is False when the connection could not even be opened, so Cloudflare cannot
    have acted on the request; when True the outcome is unknown (a create may have happened).
    """

    def __init__(
        self, message: str, *, operation: str | None = None, request_sent: bool = True
    ) -> None:
        super().__init__(message, operation=operation)
        self.request_sent = request_sent


class UnexpectedResponseError(CloudflareError):
    """Cloudflare answered, but not with the envelope or the object shape the API documents."""

    def __init__(
        self, message: str, *, operation: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, operation=operation)
        self.status_code = status_code


class CloudflareAPIError(CloudflareError):
    """Cloudflare refused the request; `status_code` and `errors` say why."""

    #: The HTTP statuses this class stands for (documentation and the status mapping).
    statuses: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        errors: Sequence[CloudflareMessage] = (),
        operation: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation)
        self.status_code = status_code
        self.errors: tuple[CloudflareMessage, ...] = tuple(errors)

    @property
    def codes(self) -> list[int]:
        """Cloudflare's numeric error codes, e.g. `[1013]` for a duplicate tunnel name."""
        return [error.code for error in self.errors]

    @property
    def error_messages(self) -> list[str]:
        """Cloudflare's error texts, in the order the envelope listed them."""
        return [error.message for error in self.errors]


class InvalidRequestError(CloudflareAPIError):
    """400 or 422: the request body or parameters were refused."""

    statuses = (400, 422)


class AuthenticationError(CloudflareAPIError):
    """401: the token is missing, malformed, expired or revoked."""

    statuses = (401,)


class PermissionDeniedError(CloudflareAPIError):
    """403: the token is valid but lacks the permission (or the account) this call needs."""

    statuses = (403,)


class NotFoundError(CloudflareAPIError):
    """404: the account, tunnel, connector or service does not exist."""

    statuses = (404,)


class ConflictError(CloudflareAPIError):
    """409: the request conflicts with existing state, e.g. a live tunnel of the same name."""

    statuses = (409,)


class RateLimitedError(CloudflareAPIError):
    """429: the token's rate limit is exhausted; retry after `retry_after` seconds (if known)."""

    statuses = (429,)

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        errors: Sequence[CloudflareMessage] = (),
        operation: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, errors=errors, operation=operation)
        self.retry_after = retry_after


class ServerError(CloudflareAPIError):
    """500 or above: Cloudflare failed; whether a write happened is unknown."""

    statuses = (500, 502, 503, 504)


_BY_STATUS: dict[int, type[CloudflareAPIError]] = {
    status: cls
    for cls in (
        InvalidRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitedError,
    )
    for status in cls.statuses
}


def api_error_for_status(status_code: int) -> type[CloudflareAPIError]:
    """The exception class that stands for an HTTP error status."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, CloudflareAPIError)
