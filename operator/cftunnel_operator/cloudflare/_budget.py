"""The per-token rate budget: at most `limit` requests in any window of `window_seconds`.

Cloudflare allows 1,200 requests per 5 minutes per user and, once that is exceeded, refuses
*every* call for the next five minutes
(https://developers.cloudflare.com/fundamentals/api/reference/limits/). So the operator never
lets a token get there: every request takes a slot from the token's `RateBudget` first, and a
caller without a slot waits instead of failing.

The budget is a sliding log, not a token bucket, because Cloudflare (and our emulator) count a
sliding window: a bucket that refills continuously lets `limit` requests through at the end of
one window and more at the start of the next, which a sliding window counts together. A slot
is counted from the moment its response arrived (`slot()`), not from when it was granted: the
server saw the request somewhere in between, so counting from the later moment guarantees the
server's window has dropped the request before we reuse its slot, however slow it was.

A 429 stops every caller of the token: `pause_until()` / `pause_for()` hold all grants until
the `retry-after` deadline has passed.

Retries and the HTTP exchange live elsewhere; this module only counts and waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._clock import Clock, SystemClock

__all__ = ["DEFAULT_RATE_LIMIT", "DEFAULT_WINDOW_SECONDS", "RateBudget"]

# The design's default: 1,000 of Cloudflare's 1,200 per 5 minutes, leaving room for the
# dashboard and other tools that share the user's limit.
DEFAULT_RATE_LIMIT = 1000
DEFAULT_WINDOW_SECONDS = 300.0


class RateBudget:
    """At most `limit` requests per `window_seconds`, shared by every caller of one token.

    ```
    budget = RateBudget(limit=1000, window_seconds=300)
    async with budget.slot() as waited:  # waits for budget; counts the request until
        response = await send()          # a window after the response arrived
    await budget.acquire()               # or: take a slot counted from now
    ```

    `safety_margin` seconds are added to the window when a slot is reused, so that two clocks
    ticking a hair apart cannot make a window look one request too full on the server.
    """

    def __init__(
        self,
        limit: int = DEFAULT_RATE_LIMIT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        clock: Clock | None = None,
        safety_margin: float = 0.05,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if safety_margin < 0:
            raise ValueError(f"safety_margin must not be negative, got {safety_margin}")
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self.safety_margin = float(safety_margin)
        self._clock: Clock = clock or SystemClock()
        # When each finished request's slot may be reused (its end + window + margin).
        # Appended in clock order, so the earliest is always on the left; stored as the
        # deadline itself so that a sleep until it lands exactly on it.
        self._reusable_at: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = float("-inf")
        # Waiters queue on the lock (asyncio.Lock wakes them first come, first served);
        # only its holder sleeps on the clock.
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"RateBudget(limit={self.limit}, window_seconds={self.window_seconds:g}, "
            f"remaining={self.remaining()})"
        )

    # --- introspection --------------------------------------------------------------------

    def remaining(self) -> int:
        """Slots that could be granted right now if no pause were in force."""
        self._expire(self._clock.monotonic())
        return max(0, self.limit - self._in_flight - len(self._reusable_at))

    def in_flight(self) -> int:
        """Requests holding a slot whose response has not arrived yet."""
        return self._in_flight

    def paused_for(self) -> float:
        """Seconds left of a 429 pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock.monotonic())

    # --- pausing --------------------------------------------------------------------------

    def pause_until(self, deadline: float) -> None:
        """Grant nothing before `deadline` (on this budget's clock). Never shortens a pause."""
        if deadline > self._paused_until:
            self._paused_until = deadline
            self._changed.set()

    def pause_for(self, seconds: float) -> None:
        """Grant nothing for the next `seconds`, e.g. a 429's `retry-after`."""
        self.pause_until(self._clock.monotonic() + max(0.0, seconds))

    # --- granting -------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Wait for a slot and count it from now; return the seconds spent waiting."""
        waited = await self._admit()
        self._count_from(self._clock.monotonic())
        return waited

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Wait for a slot, hold it while the body runs, count it from when the body ends.

        The context value is the seconds spent waiting (0.0 when the slot was free at once).
        """
        waited = await self._admit()
        self._in_flight += 1
        try:
            yield waited
        finally:
            self._in_flight -= 1
            self._count_from(self._clock.monotonic())
            self._changed.set()

    async def _admit(self) -> float:
        # The caller registers its slot right after this returns, without awaiting, so no
        # other task can take the slot in between.
        asked = self._clock.monotonic()
        waited = self._lock.locked()
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                if now < self._paused_until:
                    waited = True
                    await self._clock.sleep(self._paused_until - now)
                    continue
                self._expire(now)
                if self._in_flight + len(self._reusable_at) < self.limit:
                    return now - asked if waited else 0.0
                waited = True
                if self._reusable_at:
                    await self._clock.sleep(self._reusable_at[0] - now)
                else:
                    # Every slot is held by a request in flight: only a response can free one.
                    self._changed.clear()
                    await self._changed.wait()

    def _count_from(self, moment: float) -> None:
        self._reusable_at.append(moment + self.window_seconds + self.safety_margin)

    def _expire(self, now: float) -> None:
        while self._reusable_at and self._reusable_at[0] <= now:
            self._reusable_at.popleft()
