"""Test doubles for the Cloudflare client's unit tests: a virtual clock, a recording observer
and helpers that script Cloudflare's answers behind `httpx.MockTransport`.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from cftunnel_operator.cloudflare import CloudflareClient, CloudflareClients

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "tok-SECRET-abcdefghijklmnopqrstuvwxyz0123456789"
TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
SERVICE_ID = "550e8400-e29b-41d4-a716-446655440000"
BASE_URL = "https://cf.test/client/v4"


class FakeClock:
    """Virtual time. `sleep` parks the caller on a timer; a ticker task lets every runnable
    task run, then jumps the clock to the earliest timer and wakes its sleeper.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = 0
        self._ticker: asyncio.Task[None] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sequence += 1
        heapq.heappush(self._timers, (self.now + seconds, self._sequence, wake))
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())
        await wake

    async def _tick(self) -> None:
        while self._timers:
            for _ in range(25):
                await asyncio.sleep(0)
            deadline, _, wake = heapq.heappop(self._timers)
            if wake.done():  # the sleeper was cancelled
                continue
            self.now = max(self.now, deadline)
            wake.set_result(None)


@dataclass
class RecordingObserver:
    requests: list[tuple[str, int | None, float]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)

    def on_request(self, operation: str, status: int | None, seconds: float) -> None:
        self.requests.append((operation, status, seconds))

    def on_budget_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def on_retry(self, operation: str, reason: str) -> None:
        self.retries.append((operation, reason))

    @property
    def operations(self) -> list[str]:
        return [operation for operation, _, _ in self.requests]


def envelope(result: Any = None, *, result_info: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def ok(result: Any = None, **kwargs: Any) -> httpx.Response:
    return httpx.Response(200, json=envelope(result, **kwargs))


def failure(
    status: int, code: int = 1000, message: str = "failed", **kwargs: Any
) -> httpx.Response:
    body = {"success": False, "errors": [{"code": code, "message": message}], "messages": []}
    return httpx.Response(status, json={**body, "result": None}, **kwargs)


def tunnel_json(
    name: str = "edge-office", tunnel_id: str = TUNNEL_ID, **extra: Any
) -> dict[str, Any]:
    return {
        "id": tunnel_id,
        "account_tag": ACCOUNT,
        "name": name,
        "config_src": "cloudflare",
        "status": "inactive",
        "tun_type": "cfd_tunnel",
        "created_at": "2024-12-04T22:03:26.291225Z",
        "deleted_at": None,
        "connections": [],
        "metadata": {},
        **extra,
    }


def request_json(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


@dataclass
class Harness:
    """A client registry wired to a scripted handler, with the pieces tests inspect."""

    clock: FakeClock
    observer: RecordingObserver
    seen: list[httpx.Request]
    clients: CloudflareClients

    def client(self, token: str = TOKEN) -> CloudflareClient:
        return self.clients.for_token(SecretStr(token))
