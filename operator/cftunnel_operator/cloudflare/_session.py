"""The request loop: one authenticated HTTP exchange at a time, under the rate budget, with
retries, error mapping and reporting to the observer.

`ApiSession.call()` is the only place that talks HTTP. For each attempt it takes a slot of the
token's budget, sends the request on the shared `httpx.AsyncClient`, reports the attempt to
the observer, unwraps the envelope and turns failures into the `_errors` tree. Around the
attempts it applies the retry rules:

* idempotent requests (GET, PUT, DELETE, and a PATCH that only sets fields) repeat on 5xx,
  429 and transport errors;
* a POST repeats freely only when Cloudflare cannot have acted on it (a 429, or a connection
  that never opened). After an ambiguous failure (a 5xx, a timeout, a dropped connection) it
  never repeats blindly: the caller's `recover` looks the object up first, and the create is
  repeated only when the lookup finds nothing;
* a 429 pauses the whole token's budget for `retry-after`, so every caller waits, not just
  the one that was refused; a pause longer than `RetryPolicy.max_rate_limit_wait` is not
  waited out but raised, for the caller to reschedule.

The API token goes into the `Authorization` header of each request and nowhere else: it is
never logged, never put into an exception, and it is cut out of any text the server sends
back. The operations themselves (paths, bodies, models) live in `_client`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr, ValidationError

from ._budget import RateBudget
from ._clock import Clock
from ._errors import (
    CloudflareTransportError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnexpectedResponseError,
    api_error_for_status,
)
from ._models import CloudflareMessage, Envelope
from ._observer import RequestObserver
from ._retry import RetryPolicy, parse_retry_after

__all__ = ["ApiSession", "describe_validation_error"]

logger = logging.getLogger("cftunnel_operator.cloudflare")

T = TypeVar("T")

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# Failures before any byte of the request left: Cloudflare cannot have acted on it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_REDACTED = "[REDACTED]"


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    """A short account of what was wrong, without the offending input values."""
    parts = [
        f"{'.'.join(str(part) for part in detail['loc']) or '<root>'}: {detail['msg']}"
        for detail in error.errors(include_input=False, include_url=False)[:limit]
    ]
    return "; ".join(parts)


class ApiSession:
    """Sends requests for one API token. Internal: use `CloudflareClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: SecretStr,
        *,
        base_url: str,
        budget: RateBudget,
        retry: RetryPolicy,
        observer: RequestObserver,
        clock: Clock,
    ) -> None:
        self._http = http
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.retry = retry
        self.observer = observer
        self.clock = clock

    def __repr__(self) -> str:
        return f"ApiSession(base_url={self.base_url!r})"

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        parse: Callable[[Envelope], T],
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        recover: Callable[[], Awaitable[T | None]] | None = None,
        idempotent: bool | None = None,
    ) -> T:
        """Perform `method path` until it succeeds or the retry rules give up.

        `parse` turns the successful envelope into the result. `recover`, for creates, looks
        up the object the request would have created and returns it, or None. `idempotent`
        overrides the method's default (GET, PUT, DELETE are; POST, PATCH are not) for a
        request that is safe to repeat, such as a PATCH that sets a field to a fixed value.
        """
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        # Set once an attempt may have been carried out without us hearing the answer.
        outcome_unknown = False
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.max_attempts
            try:
                envelope = await self._exchange(operation, method, path, params, json)
            except RateLimitedError as error:
                delay = error.retry_after
                if delay is None:
                    delay = self.retry.backoff(attempt)
                # Pause the token, not just this caller: Cloudflare blocks the whole user.
                self.budget.pause_for(delay)
                if last or delay > self.retry.max_rate_limit_wait:
                    # A long block is the caller's to reschedule (error.retry_after says
                    # when); holding its task for minutes would help no one.
                    raise
                self._retrying(operation, "rate_limited", attempt, delay, error)
                continue
            except NotFoundError:
                if method == "DELETE" and outcome_unknown:
                    # An earlier attempt deleted it; only its answer was lost.
                    return self._parse(operation, Envelope(success=True), parse)
                raise
            except ConflictError:
                if recover is not None and outcome_unknown:
                    found = await recover()
                    if found is not None:
                        return found
                raise
            except (ServerError, CloudflareTransportError) as error:
                sent = not isinstance(error, CloudflareTransportError) or error.request_sent
                if last or (sent and not idempotent and recover is None):
                    raise
                reason = "server_error" if isinstance(error, ServerError) else "transport_error"
                delay = self.retry.backoff(attempt)
                self._retrying(operation, reason, attempt, delay, error)
                await self.clock.sleep(delay)
                if sent:
                    outcome_unknown = True
                    if not idempotent and recover is not None:
                        found = await recover()
                        if found is not None:
                            logger.info(
                                "%s: found the object after an ambiguous failure", operation
                            )
                            return found
                continue
            return self._parse(operation, envelope, parse)

    # --- one attempt ----------------------------------------------------------------------

    async def _exchange(
        self,
        operation: str,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        json: Any,
    ) -> Envelope:
        headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "Accept": "application/json",
        }
        async with self.budget.slot() as waited:
            if waited > 0:
                self._observe(self.observer.on_budget_wait, waited)
            started = self.clock.monotonic()
            try:
                response = await self._http.request(
                    method, self.base_url + path, params=params, json=json, headers=headers
                )
            except httpx.HTTPError as error:
                elapsed = self.clock.monotonic() - started
                self._observe(self.observer.on_request, operation, None, elapsed)
                logger.debug(
                    "%s: %s %s failed after %.3fs: %s",
                    operation,
                    method,
                    path,
                    elapsed,
                    type(error).__name__,
                )
                # `from None`: the httpx exception holds the request and so its headers.
                raise CloudflareTransportError(
                    self._redact(
                        f"{operation}: {method} {path} got no response: "
                        f"{type(error).__name__}: {error}"
                    ),
                    operation=operation,
                    request_sent=not isinstance(error, _NOT_SENT),
                ) from None
            elapsed = self.clock.monotonic() - started
        self._observe(self.observer.on_request, operation, response.status_code, elapsed)
        logger.debug(
            "%s: %s %s -> %d in %.3fs", operation, method, path, response.status_code, elapsed
        )
        return self._envelope(operation, method, path, response)

    def _envelope(
        self, operation: str, method: str, path: str, response: httpx.Response
    ) -> Envelope:
        status = response.status_code
        envelope: Envelope | None = None
        if response.content:
            try:
                body = response.json()
                envelope = Envelope.model_validate(body) if isinstance(body, dict) else None
            except (ValueError, ValidationError):
                envelope = None
        if 200 <= status < 300:
            if envelope is None:
                if not response.content:
                    # VPC service deletes may answer 200 with no body at all.
                    return Envelope(success=True)
                raise UnexpectedResponseError(
                    f"{operation}: {method} {path} answered HTTP {status} without a JSON envelope",
                    operation=operation,
                    status_code=status,
                )
            if envelope.success:
                return envelope
        errors = self._redact_messages(envelope.errors if envelope else [])
        detail = "; ".join(str(error) for error in errors) or response.reason_phrase
        message = f"{operation}: {method} {path} failed with HTTP {status}: {detail}"
        error_class = api_error_for_status(status)
        if error_class is RateLimitedError:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                message += f" (retry after {retry_after:g}s)"
            raise RateLimitedError(
                message,
                status_code=status,
                errors=errors,
                operation=operation,
                retry_after=retry_after,
            )
        raise error_class(message, status_code=status, errors=errors, operation=operation)

    def _parse(self, operation: str, envelope: Envelope, parse: Callable[[Envelope], T]) -> T:
        try:
            return parse(envelope)
        except ValidationError as error:
            raise UnexpectedResponseError(
                self._redact(
                    f"{operation}: unexpected result shape: {describe_validation_error(error)}"
                ),
                operation=operation,
            ) from None

    # --- helpers --------------------------------------------------------------------------

    def _retrying(
        self, operation: str, reason: str, attempt: int, delay: float, error: Exception
    ) -> None:
        self._observe(self.observer.on_retry, operation, reason)
        logger.info(
            "%s: attempt %d/%d failed (%s); retrying in %.2fs: %s",
            operation,
            attempt,
            self.retry.max_attempts,
            reason,
            delay,
            error,
        )

    def _observe(self, hook: Callable[..., None], *args: Any) -> None:
        # Metrics must never break an API call.
        try:
            hook(*args)
        except Exception:
            logger.exception("request observer failed")

    def _redact(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, _REDACTED) if secret else text

    def _redact_messages(self, messages: list[CloudflareMessage]) -> list[CloudflareMessage]:
        return [
            message.model_copy(
                update={
                    "message": self._redact(message.message),
                    "error_chain": self._redact_messages(message.error_chain),
                }
            )
            for message in messages
        ]
