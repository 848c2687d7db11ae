"""RFC 3339 timestamps as the Cloudflare API writes them (UTC, microseconds, ``Z`` suffix).

Only formatting and parsing live here; nothing in this module knows about the objects that
carry the timestamps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["format_rfc3339", "later_than", "now_rfc3339", "parse_rfc3339", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    return format_rfc3339(utcnow())


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time; raise ValueError for anything else (dates without a time
    or without an offset included, because clients must send full timestamps)."""
    if "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError(f"RFC 3339 date-time without an offset: {text!r}")
    return moment


def later_than(previous: str) -> str:
    """The current time, but strictly after ``previous``: two writes within one clock tick
    must still produce distinct, increasing ``updated_at`` values."""
    current = utcnow()
    floor = parse_rfc3339(previous) + timedelta(microseconds=1)
    return format_rfc3339(max(current, floor))
