"""Fixtures for the Cloudflare client's unit tests (doubles live in `cf_fakes`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from cf_fakes import BASE_URL, FakeClock, Handler, Harness, RecordingObserver

from cftunnel_operator.cloudflare import CloudflareClients, RetryPolicy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def make_harness(
    clock: FakeClock, observer: RecordingObserver
) -> AsyncIterator[Callable[..., Harness]]:
    """`make_harness(handler, rate_limit=..., window_seconds=..., retry=...)`."""
    opened: list[httpx.AsyncClient] = []

    def make(
        handler: Handler,
        *,
        rate_limit: int = 1000,
        window_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
    ) -> Harness:
        seen: list[httpx.Request] = []

        async def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            response = handler(request)
            if not isinstance(response, httpx.Response):
                response = await response
            return response

        http = httpx.AsyncClient(transport=httpx.MockTransport(record))
        opened.append(http)
        clients = CloudflareClients(
            http,
            BASE_URL,
            rate_limit,
            window_seconds,
            retry=retry or RetryPolicy(random_fraction=lambda: 1.0),
            observer=observer,
            clock=clock,
        )
        return Harness(clock, observer, seen, clients)

    yield make
    for http in opened:
        await http.aclose()
