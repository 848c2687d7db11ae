"""What a reconcile run hands back, shared by both kinds: the events it asks to post and the
status builder that records condition changes and decides which transitions deserve an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cftunnel_operator.api.conditions import (
    Condition,
    ConditionType,
    Reason,
    StatusWithConditions,
    find_condition,
)
from cftunnel_operator.reconcile.context import ReconcileContext

__all__ = ["Event", "StatusBuilder"]

StatusT = TypeVar("StatusT", bound=StatusWithConditions)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object (only at transitions a user must know)."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


class StatusBuilder(Generic[StatusT]):
    """Accumulates status changes of one run and the events their transitions deserve."""

    def __init__(self, ctx: ReconcileContext, status: StatusT, generation: int) -> None:
        self.ctx = ctx
        self.status = status
        self.generation = generation
        self.events: list[Event] = []

    def set(
        self,
        type_: ConditionType,
        ok: bool,
        reason: Reason,
        message: str,
        *,
        warn: bool = False,
        abnormal_true: bool = False,
    ) -> None:
        """Set a condition; with ``warn``, a change into the bad state posts a Warning event
        (bad is False, or True for an ``abnormal_true`` condition such as AutoscalerConflict)."""
        previous = find_condition(self.status.conditions, type_)
        value = "True" if ok else "False"
        condition = Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            observed_generation=self.generation,
        )
        changed = previous is None or (previous.status, previous.reason) != (value, str(reason))
        self.status = self.status.with_condition(condition, self.ctx.now())
        bad = ok if abnormal_true else not ok
        if changed and warn and bad:
            self.events.append(Event("Warning", reason, message))

    def update(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)
