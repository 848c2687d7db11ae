"""The log of API requests and the per-operation counters tests assert on.

A record names the operation, never the token: the ``Authorization`` header is not read here.
The log keeps the most recent entries (a long benchmark must not grow it without bound); the
counters are exact for the whole run until cleared.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, TypedDict

__all__ = ["RequestLog", "RequestRecord"]

MAX_RECORDS = 100_000  # about 60 MB at most; counters stay exact beyond it


class RequestRecord(TypedDict):
    seq: int
    time: float
    method: str
    path: str
    query: str
    operation: str
    status: int  # 0: the connection was dropped without an answer
    account_id: str | None


class RequestLog:
    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._next_seq = 1
        # account id ("" for none) -> operation -> status -> count
        self._counters: defaultdict[str, defaultdict[str, defaultdict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )

    def add(
        self,
        *,
        time: float,
        method: str,
        path: str,
        query: str,
        operation: str,
        status: int,
        account_id: str | None,
    ) -> RequestRecord:
        record = RequestRecord(
            seq=self._next_seq,
            time=time,
            method=method,
            path=path,
            query=query,
            operation=operation,
            status=status,
            account_id=account_id,
        )
        self._next_seq += 1
        self._records.append(record)
        self._counters[account_id or ""][operation][str(status)] += 1
        return record

    def records(
        self, *, account_id: str | None = None, since_seq: int | None = None
    ) -> list[RequestRecord]:
        return [
            record
            for record in self._records
            if (account_id is None or record["account_id"] == account_id)
            and (since_seq is None or record["seq"] > since_seq)
        ]

    def counters(self, *, account_id: str | None = None) -> dict[str, dict[str, int]]:
        merged: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        for account, operations in self._counters.items():
            if account_id is not None and account != account_id:
                continue
            for operation, statuses in operations.items():
                for status, count in statuses.items():
                    merged[operation][status] += count
        return {operation: dict(statuses) for operation, statuses in merged.items()}

    def clear(self) -> None:
        """Forget records and counters; sequence numbers keep increasing."""
        self._records.clear()
        self._counters.clear()

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def snapshot(self) -> dict[str, Any]:
        return {"last_seq": self.last_seq, "records": len(self._records)}
