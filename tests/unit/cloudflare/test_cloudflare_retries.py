"""Retries: idempotent requests back off and repeat; creates never repeat blindly; a 429
pauses every caller of the token for its retry-after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest
from cf_fakes import ACCOUNT, SERVICE_ID, TUNNEL_ID, Harness, failure, ok, tunnel_json

from cftunnel_operator.cloudflare import (
    CloudflareTransportError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    VPCServiceHost,
    VPCServiceSpec,
)

MakeHarness = Callable[..., Harness]


def scripted(*answers: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    """Answer requests in order; the last answer repeats."""
    queue: Iterator[httpx.Response | Exception] = iter(answers)
    last: list[httpx.Response | Exception] = [answers[-1]]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(queue, last[0])
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


# --- the policy ---------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    top = RetryPolicy(random_fraction=lambda: 1.0)
    assert [top.backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    bottom = RetryPolicy(random_fraction=lambda: 0.0)
    assert bottom.backoff(3) == 0.0
    middle = RetryPolicy(random_fraction=lambda: 0.5)
    assert middle.backoff(4) == 2.0
    real = RetryPolicy()
    assert all(0.0 <= real.backoff(5) <= 8.0 for _ in range(100))


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_attempts": 0},
        {"initial_backoff": -1.0},
        {"initial_backoff": 2.0, "max_backoff": 1.0},
        {"max_rate_limit_wait": -1.0},
    ],
)
def test_policy_refuses_nonsense(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        RetryPolicy(**arguments)  # type: ignore[arg-type]


# --- idempotent requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "transient",
    [
        failure(500, 1, "boom"),
        failure(502, 1, "bad gateway"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("Server disconnected"),
        httpx.ConnectError("refused"),
    ],
)
async def test_get_retries_transient_failures_with_backoff(
    make_harness: MakeHarness, transient: httpx.Response | Exception
) -> None:
    harness = make_harness(scripted(transient, transient, ok(tunnel_json())))
    tunnel = await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert tunnel.id == TUNNEL_ID
    assert len(harness.seen) == 3
    assert harness.clock.sleeps == [0.5, 1.0]
    reason = "server_error" if isinstance(transient, httpx.Response) else "transport_error"
    assert harness.observer.retries == [("tunnels.get", reason)] * 2


async def test_retries_are_bounded(make_harness: MakeHarness) -> None:
    harness = make_harness(scripted(failure(503, 1, "down")), retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ServerError):
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert len(harness.seen) == 3


async def test_transport_errors_after_the_last_attempt_surface(make_harness: MakeHarness) -> None:
    harness = make_harness(scripted(httpx.ReadTimeout("slow")))
    with pytest.raises(CloudflareTransportError):
        await harness.client().list_connectors(ACCOUNT, TUNNEL_ID)
    assert len(harness.seen) == 5
    assert harness.clock.sleeps == [0.5, 1.0, 2.0, 4.0]


async def test_put_is_retried_as_idempotent(make_harness: MakeHarness) -> None:
    service = {
        "service_id": SERVICE_ID,
        "name": "svc",
        "type": "tcp",
        "tcp_port": 5432,
        "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}},
    }
    harness = make_harness(scripted(httpx.ReadTimeout("slow"), ok(service)))
    spec = VPCServiceSpec(
        name="svc", type="tcp", tcp_port=5432, host=VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1")
    )
    await harness.client().replace_vpc_service(ACCOUNT, SERVICE_ID, spec)
    assert [r.method for r in harness.seen] == ["PUT", "PUT"]


async def test_delete_whose_answer_was_lost_counts_as_done(make_harness: MakeHarness) -> None:
    harness = make_harness(scripted(failure(502, 1, "bad gateway"), failure(404, 1003, "gone")))
    await harness.client().delete_vpc_service(ACCOUNT, SERVICE_ID)
    assert [r.method for r in harness.seen] == ["DELETE", "DELETE"]


async def test_delete_of_a_missing_object_is_not_found(make_harness: MakeHarness) -> None:
    harness = make_harness(scripted(failure(404, 1003, "gone")))
    with pytest.raises(NotFoundError):
        await harness.client().delete_tunnel(ACCOUNT, TUNNEL_ID)


# --- 429 ------------------------------------------------------------------------------------


async def test_429_waits_retry_after_then_succeeds(make_harness: MakeHarness) -> None:
    limited = failure(429, 10000, "Rate limited", headers={"retry-after": "30"})
    harness = make_harness(scripted(limited, ok(tunnel_json())))
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert harness.clock.now == pytest.approx(30.0)
    assert harness.observer.retries == [("tunnels.get", "rate_limited")]
    assert harness.observer.waits == [pytest.approx(30.0)]


async def test_429_pauses_every_caller_of_the_token(make_harness: MakeHarness) -> None:
    arrivals: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[-1]
        arrivals.append((name, harness.clock.now))
        if name == "first" and len(arrivals) == 1:
            return failure(429, 10000, "Rate limited", headers={"retry-after": "60"})
        return ok(tunnel_json())

    harness = make_harness(handler)

    async def second_caller() -> None:
        await harness.clock.sleep(1.0)  # starts while the first caller's 429 pause lasts
        await harness.client().get_tunnel(ACCOUNT, "second")

    await asyncio.gather(harness.client().get_tunnel(ACCOUNT, "first"), second_caller())
    assert arrivals[0] == ("first", 0.0)
    assert {name for name, _ in arrivals[1:]} == {"first", "second"}
    assert all(at >= 60.0 for _, at in arrivals[1:])

    # Another token is not held by this token's pause.
    harness.client().budget.pause_for(100.0)
    before = harness.clock.now
    await harness.client("another-token-entirely").get_tunnel(ACCOUNT, "third")
    assert harness.clock.now == before


async def test_429_without_retry_after_backs_off(make_harness: MakeHarness) -> None:
    harness = make_harness(scripted(failure(429, 10000, "slow down"), ok(tunnel_json())))
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert harness.clock.now == pytest.approx(0.5)


async def test_429_storm_ends_in_rate_limited_error(make_harness: MakeHarness) -> None:
    limited = failure(429, 10000, "Rate limited", headers={"retry-after": "2"})
    harness = make_harness(scripted(limited), retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RateLimitedError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.retry_after == 2.0
    assert len(harness.seen) == 3
    # The token stays paused after the last refusal, for everyone.
    assert harness.client().budget.paused_for() == pytest.approx(2.0)


async def test_a_long_block_is_raised_at_once_and_pauses_the_token(
    make_harness: MakeHarness,
) -> None:
    limited = failure(429, 10000, "Rate limited", headers={"retry-after": "300"})
    harness = make_harness(scripted(limited, ok(tunnel_json())))
    with pytest.raises(RateLimitedError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.retry_after == 300.0
    assert len(harness.seen) == 1
    assert harness.clock.now == 0.0
    assert harness.client().budget.paused_for() == pytest.approx(300.0)


async def test_create_is_retried_after_a_429(make_harness: MakeHarness) -> None:
    limited = failure(429, 10000, "Rate limited", headers={"retry-after": "1"})
    harness = make_harness(scripted(limited, ok(tunnel_json(token="eyJ"))))
    await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert [r.method for r in harness.seen] == ["POST", "POST"]


# --- creates ---------------------------------------------------------------------------------


def create_router(
    create_answers: list[httpx.Response | Exception], listing: list[list[dict[str, object]]]
) -> Callable[[httpx.Request], httpx.Response]:
    """POST answers come from `create_answers`, GET listings from `listing`, in order."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            answer = create_answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if request.url.path.endswith("/token"):
            return ok("eyJ-looked-up")
        items = listing.pop(0) if listing else []
        return ok(items, result_info={"page": 1, "count": len(items)})

    return handler


@pytest.mark.parametrize(
    "ambiguous",
    [failure(500, 1, "boom"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")],
)
async def test_create_after_ambiguous_failure_returns_the_found_tunnel(
    make_harness: MakeHarness, ambiguous: httpx.Response | Exception
) -> None:
    harness = make_harness(create_router([ambiguous], [[tunnel_json()]]))
    created = await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert created.tunnel.id == TUNNEL_ID
    assert created.token.get_secret_value() == "eyJ-looked-up"
    assert [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in harness.seen] == [
        ("POST", "cfd_tunnel"),
        ("GET", "cfd_tunnel"),
        ("GET", "token"),
    ]
    assert harness.seen[1].url.params["name"] == "edge-office"
    assert harness.seen[1].url.params["is_deleted"] == "false"


async def test_create_is_repeated_only_when_the_lookup_finds_nothing(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
        create_router([failure(503, 1, "down"), ok(tunnel_json(token="eyJ-new"))], [[]])
    )
    created = await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert created.token.get_secret_value() == "eyJ-new"
    assert [r.method for r in harness.seen] == ["POST", "GET", "POST"]


async def test_create_that_never_reached_the_server_is_repeated_without_lookup(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
        create_router([httpx.ConnectError("refused"), ok(tunnel_json(token="eyJ"))], [])
    )
    await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert [r.method for r in harness.seen] == ["POST", "POST"]


async def test_conflict_on_a_repeated_create_looks_up_again(make_harness: MakeHarness) -> None:
    # The first create happened but the listing lagged; the repeat collides with it.
    harness = make_harness(
        create_router(
            [
                httpx.ReadTimeout("slow"),
                failure(409, 1013, "You already have a tunnel with this name"),
            ],
            [[], [tunnel_json()]],
        )
    )
    created = await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert created.tunnel.id == TUNNEL_ID
    assert [r.method for r in harness.seen] == ["POST", "GET", "POST", "GET", "GET"]


async def test_plain_conflict_is_raised(make_harness: MakeHarness) -> None:
    harness = make_harness(create_router([failure(409, 1013, "name in use")], []))
    with pytest.raises(ConflictError) as caught:
        await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert caught.value.codes == [1013]
    assert len(harness.seen) == 1


async def test_create_gives_up_after_bounded_attempts(make_harness: MakeHarness) -> None:
    harness = make_harness(
        create_router([failure(500, 1, "boom")] * 3, [[], []]), retry=RetryPolicy(max_attempts=3)
    )
    with pytest.raises(ServerError):
        await harness.client().create_tunnel(ACCOUNT, "edge-office")
    assert [r.method for r in harness.seen] == ["POST", "GET", "POST", "GET", "POST"]


async def test_vpc_service_create_looks_up_by_name_after_ambiguous_failure(
    make_harness: MakeHarness,
) -> None:
    service: dict[str, object] = {
        "service_id": SERVICE_ID,
        "name": "svc",
        "type": "http",
        "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": TUNNEL_ID}},
    }
    other = {**service, "service_id": "other", "name": "other"}
    harness = make_harness(create_router([httpx.ReadTimeout("slow")], [[other, service]]))
    spec = VPCServiceSpec(
        name="svc", type="http", host=VPCServiceHost.ip(TUNNEL_ID, ipv4="10.0.0.1")
    )
    found = await harness.client().create_vpc_service(ACCOUNT, spec)
    assert found.service_id == SERVICE_ID
    assert [r.method for r in harness.seen] == ["POST", "GET"]
    assert harness.seen[1].url.params["type"] == "http"
