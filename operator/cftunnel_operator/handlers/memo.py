"""The operator's memo: the shared dependencies every handler reaches through ``memo``.

Kopf copies the memo for each object; ``__copy__`` returns the same instance, so every handler
shares one reconcile context (clients, caches, per-object locks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.reconcile.context import ReconcileContext

__all__ = ["OperatorMemo"]


@dataclass
class OperatorMemo:
    """Process-wide state; ``context`` is set by the start-up handler."""

    config: OperatorConfig
    context: ReconcileContext | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __copy__(self) -> Self:
        return self

    @property
    def ctx(self) -> ReconcileContext:
        if self.context is None:
            raise RuntimeError("the operator has not finished starting")
        return self.context
