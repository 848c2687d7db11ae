"""When and how long to wait before repeating a failed request.

Idempotent requests (GET, PUT, DELETE) are repeated on 5xx, 429 and transport errors with
exponential backoff and full jitter (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
the n-th wait is uniform in [0, min(max_backoff, initial_backoff * 2**(n-1))], which spreads the
retries of many callers instead of synchronising them. The defaults follow Cloudflare's own
SDKs (0.5 s growing to 8 s). Creates are handled differently (see `_session`): after an
ambiguous failure the object is looked up before the create is repeated.

This module holds the policy and the `retry-after` parser; the loop that applies them lives in
`_session`.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["RetryPolicy", "parse_retry_after"]

_system_random = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is repeated.

    `max_attempts` counts the first try: 5 means one try and up to four repeats. A 429 whose
    `retry-after` exceeds `max_rate_limit_wait` seconds is raised at once (the token stays
    paused) instead of being waited out. `random_fraction` returns a float in [0, 1) and exists
    so tests can make the jitter predictable.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_rate_limit_wait: float = 60.0
    random_fraction: Callable[[], float] = field(
        default=_system_random.random, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("backoffs must satisfy 0 <= initial_backoff <= max_backoff")
        if self.max_rate_limit_wait < 0:
            raise ValueError("max_rate_limit_wait must not be negative")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1 for the first)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** max(0, failures - 1))
        return ceiling * self.random_fraction()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `retry-after` header: whole (or fractional) seconds, or an HTTP date.

    Returns None when the header is absent or unreadable, never a negative number.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
