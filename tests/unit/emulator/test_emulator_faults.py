"""Injected faults and the rate limit: latency, 5xx, 429 bursts with retry-after, dropped
connections, scoping by account and operation, and Cloudflare's sliding-window limit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from emulator_support import (
    ACCOUNT,
    OTHER_ACCOUNT,
    OTHER_TOKEN,
    error_codes,
    validating_client,
    wait_for,
)

from cloudflare_emulator import AdminClient, AdminError, EmulatorServer

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"
OTHER_TUNNELS = f"/accounts/{OTHER_ACCOUNT}/cfd_tunnel"


@pytest.fixture
def other(server: EmulatorServer) -> Iterator[httpx.Client]:
    with validating_client(server.url, OTHER_TOKEN) as client:
        yield client


def test_latency_delays_answers(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_faults(latency_ms=150)
    started = time.monotonic()
    assert api.get(TUNNELS).status_code == 200
    assert time.monotonic() - started >= 0.14
    admin.clear_faults()
    assert admin.faults()["latency_ms"] == 0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_error_rate_answers_5xx_with_the_envelope(
    api: httpx.Client, admin: AdminClient, status: int
) -> None:
    admin.set_faults(error_rate=1.0, error_status=status)
    response = api.get(TUNNELS)
    assert response.status_code == status  # the event hook checked the envelope
    assert response.json()["success"] is False
    admin.clear_faults()
    assert api.get(TUNNELS).status_code == 200


def test_error_burst_fails_the_next_requests_only(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_faults(error_burst=2)
    assert [api.get(TUNNELS).status_code for _ in range(3)] == [503, 503, 200]


def test_rate_limit_burst_answers_429_with_retry_after(
    api: httpx.Client, admin: AdminClient
) -> None:
    admin.set_faults(rate_limit_burst=2, retry_after=7)
    for _ in range(2):
        response = api.post(TUNNELS, json={"name": "never"})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert error_codes(response) == [10100]
    assert api.get(TUNNELS).json()["result"] == []  # refused requests had no effect
    assert admin.faults()["rate_limit_burst"] == 0


def test_dropped_connections_get_no_answer(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_faults(drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        api.get(TUNNELS)
    assert admin.health()  # the admin API is never faulted
    admin.clear_faults()
    assert api.get(TUNNELS).status_code == 200
    statuses = [r["status"] for r in admin.requests() if r["operation"] == "tunnels.list"]
    assert statuses == [0, 200]


def test_faults_can_target_one_account(
    api: httpx.Client, other: httpx.Client, admin: AdminClient
) -> None:
    admin.set_faults(error_rate=1.0, account_id=OTHER_ACCOUNT)
    assert api.get(TUNNELS).status_code == 200
    assert other.get(OTHER_TUNNELS).status_code == 503
    # Requests without an account in the path are matched through the token's accounts.
    assert other.get("/user/tokens/verify").status_code == 503
    assert api.get("/user/tokens/verify").status_code == 401


def test_faults_can_target_operations(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_faults(error_burst=5, operations=["tunnels.create"])
    assert api.get(TUNNELS).status_code == 200
    assert api.post(TUNNELS, json={"name": "x"}).status_code == 503


def test_a_seed_makes_random_faults_repeatable(api: httpx.Client, admin: AdminClient) -> None:
    def run() -> list[int]:
        admin.set_faults(error_rate=0.5, seed=1234)
        return [api.get(TUNNELS).status_code for _ in range(20)]

    first = run()
    assert run() == first
    assert {200, 503} == set(first)


def test_bad_fault_settings_are_refused(admin: AdminClient) -> None:
    for bad in ({"error_rate": 2}, {"error_status": 404}, {"retry_after": 0}, {"latency_ms": -1}):
        with pytest.raises(AdminError) as raised:
            admin.set_faults(**bad)  # type: ignore[arg-type]
        assert raised.value.status == 400


def test_rate_limit_sliding_window_per_token(
    api: httpx.Client, other: httpx.Client, admin: AdminClient
) -> None:
    assert admin.rate_limit() == {"limit": 1200, "window_seconds": 300.0, "block_on_exceed": False}
    admin.set_rate_limit(3, 0.5)
    answers = [api.get(TUNNELS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" for a in answers)
    limited = api.get(TUNNELS)
    assert limited.status_code == 429
    assert error_codes(limited) == [10100]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"].endswith("GMT")
    assert other.get(OTHER_TUNNELS).status_code == 200  # another token has its own budget
    # Refused requests do not count: capacity returns as the window slides.
    wait_for(lambda: api.get(TUNNELS).status_code == 200, timeout=5)
    admin.restore_rate_limit()
    assert admin.rate_limit()["limit"] == 1200


def test_going_over_can_block_for_a_whole_window(api: httpx.Client, admin: AdminClient) -> None:
    admin.set_rate_limit(2, 0.4, block_on_exceed=True)
    assert [api.get(TUNNELS).status_code for _ in range(2)] == [200, 200]
    went_over = time.monotonic()  # taken before the server sees the request: a lower bound
    assert api.get(TUNNELS).status_code == 429
    wait_for(lambda: api.get(TUNNELS).status_code == 200, timeout=5)
    assert time.monotonic() - went_over >= 0.4


def test_unknown_tokens_count_against_their_own_budget(
    server: EmulatorServer, api: httpx.Client, admin: AdminClient
) -> None:
    admin.set_rate_limit(1, 60)
    with validating_client(server.url, "stranger") as stranger:
        assert stranger.get(TUNNELS).status_code == 401
        assert stranger.get(TUNNELS).status_code == 429
    assert api.get(TUNNELS).status_code == 200


def test_a_request_whose_client_gave_up_during_latency_still_takes_effect(
    server: EmulatorServer, api: httpx.Client, admin: AdminClient
) -> None:
    # The case behind "no duplicate objects": the client times out, Cloudflare still creates.
    admin.set_faults(latency_ms=300, operations=["tunnels.create"])
    with validating_client(server.url) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(
            TUNNELS, json={"name": "created-anyway"}, timeout=httpx.Timeout(5.0, read=0.05)
        )
    wait_for(lambda: api.get(TUNNELS, params={"name": "created-anyway"}).json()["result"])
    assert admin.count("tunnels.create", 200) == 1
