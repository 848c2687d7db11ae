"""What every reconcile function is given: settings, the Kubernetes and Cloudflare clients,
the clock and the small shared caches (verified tokens, periodic-check allowance).

Built once per process by the handlers; reconcile functions never construct clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cftunnel_operator.cloudflare import CloudflareClients
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.kube.client import KubeApi

__all__ = ["PeriodicAllowance", "ReconcileContext"]

# Share of each token's rate budget that periodic drift and health checks may use; the rest
# stays free for changes users make, so a large fleet's checks never starve a new object.
PERIODIC_SHARE = 0.5


@dataclass
class PeriodicAllowance:
    """A token bucket per API token that paces periodic checks.

    Checks that find the bucket empty are skipped until their next tick, which stretches the
    effective check interval as the number of objects grows while the calls per window stay
    below ``share`` of the budget.
    """

    rate_limit: int
    window_seconds: float
    share: float = PERIODIC_SHARE
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_limit * self.share)

    def try_take(self, key: str, cost: float) -> bool:
        now = self.clock()
        level, updated = self._buckets.get(key, (self.capacity, now))
        level = min(self.capacity, level + (now - updated) * self.capacity / self.window_seconds)
        if level < cost:
            self._buckets[key] = (level, now)
            return False
        self._buckets[key] = (level - cost, now)
        return True


@dataclass
class ReconcileContext:
    """Shared dependencies of the reconcile functions."""

    config: OperatorConfig
    kube: KubeApi
    clouds: CloudflareClients
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    verified_tokens: dict[tuple[str, str], float] = field(default_factory=dict)
    """(token fingerprint, account id) -> monotonic time until which the check holds."""
    remembered_tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(namespace, secret, key) -> token last read: lets a deletion finish when a namespace
    deletion removed the credentials Secret before the Tunnel."""
    periodic: PeriodicAllowance | None = None
    creates_in_doubt: dict[str, float] = field(default_factory=dict)
    """object uid -> monotonic time of a create whose answer was lost: Cloudflare may still
    carry it out, so the object waits and then looks for what it made (VPC service names are
    not unique on Cloudflare, so a repeated create would make a duplicate)."""
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.periodic is None:
            self.periodic = PeriodicAllowance(
                self.config.rate_limit, self.config.rate_window_seconds
            )

    def lock(self, uid: str) -> asyncio.Lock:
        """One lock per object: change handlers, timers and child watches never overlap."""
        lock = self._locks.get(uid)
        if lock is None:
            lock = self._locks[uid] = asyncio.Lock()
        return lock

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self.creates_in_doubt.pop(uid, None)

    @property
    def settle_seconds(self) -> float:
        """How long a create whose answer was lost may still be carried out by Cloudflare."""
        return max(10.0, 3 * self.config.request_timeout_seconds)
