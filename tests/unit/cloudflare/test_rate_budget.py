"""The rate budget: never more than N requests in any window of W seconds, however many
callers; callers wait instead of failing; a 429 pause holds everyone."""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Callable

import httpx
import pytest
from cf_fakes import ACCOUNT, TUNNEL_ID, FakeClock, Harness, ok, tunnel_json

from cftunnel_operator.cloudflare import RateBudget

MakeHarness = Callable[..., Harness]


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of `times` inside any half-open window (t - window, t]."""
    ordered = sorted(times)
    best = 0
    for index, moment in enumerate(ordered):
        first = bisect.bisect_right(ordered, moment - window)
        best = max(best, index + 1 - first)
    return best


async def test_grants_up_to_the_limit_at_once_then_waits_a_window(clock: FakeClock) -> None:
    budget = RateBudget(3, 10.0, clock=clock, safety_margin=0.0)
    for _ in range(3):
        assert await budget.acquire() == 0.0
    assert clock.now == 0.0
    assert budget.remaining() == 0
    assert await budget.acquire() == pytest.approx(10.0)
    assert clock.now == pytest.approx(10.0)
    assert budget.remaining() == 2  # the first three left the window as the fourth came in
    clock.now = 20.0
    assert budget.remaining() == 3


async def test_a_slot_counts_from_when_the_response_arrived(clock: FakeClock) -> None:
    budget = RateBudget(1, 10.0, clock=clock, safety_margin=0.5)
    async with budget.slot():
        assert budget.in_flight() == 1
        await clock.sleep(7.0)  # a slow request: the server saw it somewhere in [0, 7]
    assert budget.in_flight() == 0
    await budget.acquire()
    assert clock.now == pytest.approx(7.0 + 10.0 + 0.5)


async def test_when_every_slot_is_in_flight_the_next_waits_for_a_response(
    clock: FakeClock,
) -> None:
    budget = RateBudget(2, 5.0, clock=clock, safety_margin=0.0)
    release = asyncio.Event()
    granted: list[float] = []

    async def holder() -> None:
        async with budget.slot():
            await release.wait()

    holders = [asyncio.create_task(holder()) for _ in range(2)]
    await asyncio.sleep(0)

    async def late() -> None:
        await budget.acquire()
        granted.append(clock.now)

    waiter = asyncio.create_task(late())
    for _ in range(20):
        await asyncio.sleep(0)
    assert granted == []
    clock.now = 3.0
    release.set()
    await asyncio.gather(*holders, waiter)
    assert granted == [pytest.approx(8.0)]


async def test_pause_holds_every_caller_and_never_shortens(clock: FakeClock) -> None:
    budget = RateBudget(100, 300.0, clock=clock)
    budget.pause_for(30.0)
    budget.pause_for(5.0)  # a shorter pause does not cut the longer one
    assert budget.paused_for() == pytest.approx(30.0)
    budget.pause_until(10.0)
    assert budget.paused_for() == pytest.approx(30.0)
    granted: list[float] = []

    async def caller() -> None:
        await budget.acquire()
        granted.append(clock.now)

    await asyncio.gather(*(caller() for _ in range(5)))
    assert granted == [pytest.approx(30.0)] * 5
    assert budget.paused_for() == 0.0


async def test_pause_during_a_wait_extends_it(clock: FakeClock) -> None:
    budget = RateBudget(1, 10.0, clock=clock, safety_margin=0.0)
    await budget.acquire()

    async def pause_later() -> None:
        await clock.sleep(4.0)
        budget.pause_until(25.0)

    await asyncio.gather(budget.acquire(), pause_later())
    assert clock.now == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("limit", "window", "margin"), [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1.0, -1.0)]
)
def test_budget_refuses_nonsense(limit: int, window: float, margin: float) -> None:
    with pytest.raises(ValueError, match="must"):
        RateBudget(limit, window, safety_margin=margin)


async def test_many_concurrent_callers_never_exceed_the_window(clock: FakeClock) -> None:
    limit, window = 50, 10.0
    budget = RateBudget(limit, window, clock=clock, safety_margin=0.0)
    rng = random.Random(7)
    # When the "server" counted each request: anywhere between grant and response.
    counted: list[float] = []

    async def caller(start: float) -> None:
        await clock.sleep(start)
        for _ in range(3):
            async with budget.slot():
                await clock.sleep(rng.uniform(0.0, 2.0))
                counted.append(clock.now)
                await clock.sleep(rng.uniform(0.0, 2.0))

    await asyncio.gather(*(caller(rng.uniform(0.0, 15.0)) for _ in range(200)))
    assert len(counted) == 600
    assert most_in_any_window(counted, window) <= limit
    # ... and the budget is used, not wasted: each of the 50 slots serves 12 requests, and a
    # slot is reusable a window after its (at most 4 s long) request ended.
    assert clock.now < 12 * (window + 4.0) + 15.0


async def test_client_calls_under_load_stay_in_budget(
    make_harness: MakeHarness, clock: FakeClock
) -> None:
    arrivals: list[float] = []
    rng = random.Random(11)

    async def handler(request: httpx.Request) -> httpx.Response:
        await clock.sleep(rng.uniform(0.0, 0.5))  # network latency before the server counts
        arrivals.append(clock.now)
        await clock.sleep(rng.uniform(0.0, 0.5))
        return ok(tunnel_json())

    harness = make_harness(handler, rate_limit=50, window_seconds=10.0)
    client = harness.client()
    await asyncio.gather(*(client.get_tunnel(ACCOUNT, TUNNEL_ID) for _ in range(200)))
    assert len(arrivals) == 200
    assert most_in_any_window(arrivals, 10.0) <= 50
    assert harness.observer.waits  # callers waited rather than failed
    assert all(status == 200 for _, status, _ in harness.observer.requests)


async def test_one_budget_is_shared_by_every_client_of_a_token(
    make_harness: MakeHarness, clock: FakeClock
) -> None:
    harness = make_harness(lambda request: ok(tunnel_json()), rate_limit=2, window_seconds=60.0)
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert harness.client().budget.remaining() == 0
    assert harness.client("other-token").budget.remaining() == 2
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert clock.now >= 60.0
    assert harness.observer.waits == [pytest.approx(clock.now)]


def test_repr_shows_the_numbers(clock: FakeClock) -> None:
    assert repr(RateBudget(5, 10, clock=clock)) == (
        "RateBudget(limit=5, window_seconds=10, remaining=5)"
    )
