"""The API token (and the tunnel run token) never reach a log line, an exception or a repr."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

import httpx
import pytest
from cf_fakes import ACCOUNT, SERVICE_ID, TOKEN, TUNNEL_ID, Harness, failure, ok, tunnel_json

from cftunnel_operator.cloudflare import CloudflareError, RetryPolicy

MakeHarness = Callable[..., Harness]
RUN_TOKEN = "eyJhIjoi-RUN-TOKEN-do-not-print"


def assert_clean(text: str) -> None:
    assert TOKEN not in text
    assert RUN_TOKEN not in text
    assert "tok-SECRET" not in text


def exception_texts(error: BaseException) -> str:
    return "\n".join(
        [str(error), repr(error), *traceback.format_exception(error), repr(error.args)]
    )


# Every answer a server can give, each echoing the token back where it can.
ANSWERS: list[httpx.Response | Exception] = [
    *(
        failure(status, 9109, f"Invalid access token {TOKEN}")
        for status in (400, 401, 403, 404, 409, 418, 422, 500, 503)
    ),
    failure(429, 10000, f"Rate limited for {TOKEN}", headers={"retry-after": "1"}),
    httpx.Response(
        400,
        json={
            "success": False,
            "errors": [
                {
                    "code": 6003,
                    "message": "Invalid request headers",
                    "error_chain": [{"code": 6111, "message": f"bad header Bearer {TOKEN}"}],
                }
            ],
            "messages": [],
            "result": None,
        },
    ),
    httpx.Response(200, text=f"not json {TOKEN}"),
    ok({"id": TUNNEL_ID, "name": 5, "status": TOKEN}),
    httpx.ConnectError(f"cannot connect with {TOKEN}"),
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
]


@pytest.mark.parametrize("answer", ANSWERS)
async def test_token_never_in_errors_or_logs(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture, answer: httpx.Response | Exception
) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    harness = make_harness(handler, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(CloudflareError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert_clean(exception_texts(caught.value))
    assert_clean(caplog.text)
    assert_clean(repr([record.__dict__ for record in caplog.records]))
    # The token did reach the server, in the Authorization header only.
    assert harness.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(harness.seen[0].url)


async def test_run_token_and_api_token_stay_out_of_a_whole_session(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return failure(503, 1, "try again")
        if request.method == "POST":
            return ok(tunnel_json(token=RUN_TOKEN))
        if request.url.path.endswith("/token"):
            return ok(RUN_TOKEN)
        return ok([], result_info={"count": 0})

    harness = make_harness(handler)
    client = harness.client()
    created = await client.create_tunnel(ACCOUNT, "edge-office")
    token = await client.get_tunnel_token(ACCOUNT, TUNNEL_ID)
    assert created.token.get_secret_value() == RUN_TOKEN == token.get_secret_value()
    for text in (
        caplog.text,
        repr(created),
        str(created),
        str(created.model_dump()),
        repr(token),
        str(token),
        repr(client),
        repr(harness.clients),
        repr(client.budget),
        repr(harness.observer),
        str(dict(harness.clients.budgets())),
    ):
        assert_clean(text)


def test_client_repr_shows_a_fingerprint_only(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok(None))
    client = harness.client()
    assert repr(client).startswith(
        "CloudflareClient(base_url='https://cf.test/client/v4', token=<sha256 "
    )
    assert client.fingerprint[:12] in repr(client)
    assert_clean(repr(client) + repr(vars(client)))


async def test_observer_failures_do_not_break_calls(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness(lambda request: ok({**tunnel_json(), "service_id": SERVICE_ID}))

    def broken(*args: object) -> None:
        raise RuntimeError("metrics down")

    harness.observer.on_request = broken  # type: ignore[method-assign,assignment]
    await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert "request observer failed" in caplog.text
