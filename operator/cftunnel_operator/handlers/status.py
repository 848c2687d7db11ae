"""Writing status back: only what changed, so an unchanged state makes no write."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from cftunnel_operator.reconcile.outcome import Event

__all__ = ["post_events", "status_changes"]


def status_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``old`` status into ``new`` (empty when equal).

    Kopf's own keys in status are left alone; keys the new status no longer has are removed.
    """
    old = dict(old or {})
    changes: dict[str, Any] = {}
    for key, value in new.items():
        if old.get(key) != value:
            changes[key] = value
    for key in old:
        if key not in new and key != "kopf":
            changes[key] = None
    return changes


def post_events(body: Mapping[str, Any], events: list[Event]) -> None:
    """Post the reconcile's events on the object (Kopf posts them in the background)."""
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)  # type: ignore[arg-type]
