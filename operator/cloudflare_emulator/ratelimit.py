"""Cloudflare's per-token API rate limit: by default 1200 requests per 300 seconds.

A sliding window per token: a request is admitted while fewer than ``limit`` requests were
admitted in the last ``window_seconds``. Refused requests are not counted, so a client that
honours ``retry-after`` gets through as soon as the oldest request leaves the window. With
``block_on_exceed`` the emulator also models Cloudflare's documented rule that going over the
limit blocks every call until a whole window has passed.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_LIMIT", "DEFAULT_WINDOW_SECONDS", "RateDecision", "RateLimiter"]

DEFAULT_LIMIT = 1200
DEFAULT_WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds, at least 1 when refused; 0 when allowed
    reset_after: float  # seconds until capacity frees (for the x-ratelimit-reset header)


@dataclass
class _Bucket:
    admitted: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0


class RateLimiter:
    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        block_on_exceed: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self.configure(limit, window_seconds, block_on_exceed=block_on_exceed)

    def configure(self, limit: int, window_seconds: float, *, block_on_exceed: bool) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit must be >= 1 and window_seconds > 0")
        self.limit = limit
        self.window_seconds = window_seconds
        self.block_on_exceed = block_on_exceed
        self._buckets.clear()

    def settings(self) -> dict[str, float | int | bool]:
        return {
            "limit": self.limit,
            "window_seconds": self.window_seconds,
            "block_on_exceed": self.block_on_exceed,
        }

    def reset(self) -> None:
        self._buckets.clear()

    def hit(self, key: str) -> RateDecision:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket())
        admitted = bucket.admitted
        while admitted and admitted[0] <= now - self.window_seconds:
            admitted.popleft()
        if now < bucket.blocked_until:
            return self._refuse(bucket.blocked_until - now)
        if len(admitted) >= self.limit:
            if self.block_on_exceed:
                bucket.blocked_until = now + self.window_seconds
                return self._refuse(self.window_seconds)
            return self._refuse(admitted[0] + self.window_seconds - now)
        admitted.append(now)
        reset_after = admitted[0] + self.window_seconds - now
        return RateDecision(True, self.limit, self.limit - len(admitted), 0, reset_after)

    def _refuse(self, wait: float) -> RateDecision:
        return RateDecision(False, self.limit, 0, max(1, math.ceil(wait)), wait)
