"""The hook through which metrics see the client: what was called, how it ended, how long it
waited for budget, and what was retried.

The client reports every HTTP attempt to a `RequestObserver`; the metrics module implements one
(Prometheus counters and histograms) without the client knowing about Prometheus. Operation
names and retry reasons are stable strings so they can be used as metric labels.
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = [
    "OPERATIONS",
    "RETRY_REASONS",
    "NullObserver",
    "RequestObserver",
]

#: Every operation name the client reports; stable, safe to use as a metric label.
OPERATIONS: Final[tuple[str, ...]] = (
    "tokens.verify_account",
    "tokens.verify_user",
    "tunnels.create",
    "tunnels.list",
    "tunnels.get",
    "tunnels.edit",
    "tunnels.delete",
    "tunnels.token",
    "tunnels.connections.list",
    "tunnels.connections.delete",
    "tunnels.configurations.get",
    "tunnels.configurations.put",
    "vpc_services.create",
    "vpc_services.list",
    "vpc_services.get",
    "vpc_services.replace",
    "vpc_services.delete",
)

#: Why an attempt was repeated: a 429, a 5xx, or no answer at all.
RETRY_REASONS: Final[tuple[str, ...]] = ("rate_limited", "server_error", "transport_error")


class RequestObserver(Protocol):
    """Receives one call per HTTP attempt, budget wait and retry. Must not block or raise."""

    def on_request(self, operation: str, status: int | None, seconds: float) -> None:
        """An HTTP attempt ended; `status` is None when no response arrived."""
        ...

    def on_budget_wait(self, seconds: float) -> None:
        """A caller had to wait `seconds` for the rate budget (or a 429 pause) before sending.

        Not called when a slot was free at once.
        """
        ...

    def on_retry(self, operation: str, reason: str) -> None:
        """An attempt of `operation` failed and will be repeated; `reason` is in RETRY_REASONS."""
        ...


class NullObserver:
    """The default observer: ignores everything."""

    def on_request(self, operation: str, status: int | None, seconds: float) -> None:
        pass

    def on_budget_wait(self, seconds: float) -> None:
        pass

    def on_retry(self, operation: str, reason: str) -> None:
        pass
