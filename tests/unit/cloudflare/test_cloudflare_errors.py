"""Every failure becomes the right class of the error tree, with status, codes and messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from cf_fakes import ACCOUNT, TUNNEL_ID, Harness, failure, ok

from cftunnel_operator.cloudflare import (
    AuthenticationError,
    CloudflareAPIError,
    CloudflareError,
    CloudflareTransportError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RetryPolicy,
    ServerError,
    UnexpectedResponseError,
)
from cftunnel_operator.cloudflare._retry import parse_retry_after

ONE_ATTEMPT = RetryPolicy(max_attempts=1)
MakeHarness = Callable[..., Harness]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, InvalidRequestError),
        (422, InvalidRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
        (405, CloudflareAPIError),
        (418, CloudflareAPIError),
    ],
)
async def test_status_maps_to_error_class(
    make_harness: MakeHarness, status: int, error_class: type[CloudflareAPIError]
) -> None:
    harness = make_harness(
        lambda request: failure(status, 7003, "No route for the URI"), retry=ONE_ATTEMPT
    )
    with pytest.raises(error_class) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    error = caught.value
    assert type(error) is error_class
    assert isinstance(error, CloudflareAPIError)
    assert isinstance(error, CloudflareError)
    assert error.status_code == status
    assert error.codes == [7003]
    assert error.error_messages == ["No route for the URI"]
    assert error.operation == "tunnels.get"
    assert f"HTTP {status}" in str(error)
    assert "[7003] No route for the URI" in str(error)
    assert "tunnels.get" in str(error)


async def test_rate_limited_error_carries_retry_after(make_harness: MakeHarness) -> None:
    harness = make_harness(
        lambda request: failure(429, 10000, "Rate limited", headers={"retry-after": "7"}),
        retry=ONE_ATTEMPT,
    )
    with pytest.raises(RateLimitedError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.retry_after == 7.0
    assert "retry after 7s" in str(caught.value)


async def test_nested_error_chain_is_reported(make_harness: MakeHarness) -> None:
    body = {
        "success": False,
        "errors": [
            {
                "code": 6003,
                "message": "Invalid request headers",
                "error_chain": [
                    {"code": 6111, "message": "Invalid format for Authorization header"}
                ],
            }
        ],
        "messages": [],
        "result": None,
    }
    harness = make_harness(lambda request: httpx.Response(400, json=body), retry=ONE_ATTEMPT)
    with pytest.raises(InvalidRequestError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.codes == [6003]
    assert "[6111] Invalid format for Authorization header" in str(caught.value)


async def test_error_status_without_envelope_uses_reason_phrase(make_harness: MakeHarness) -> None:
    harness = make_harness(
        lambda request: httpx.Response(502, text="<html>Bad gateway</html>"), retry=ONE_ATTEMPT
    )
    with pytest.raises(ServerError, match="HTTP 502: Bad Gateway") as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.errors == ()


async def test_success_status_with_failure_envelope_is_an_api_error(
    make_harness: MakeHarness,
) -> None:
    body = {"success": False, "errors": [{"code": 1234, "message": "nope"}], "messages": []}
    harness = make_harness(lambda request: httpx.Response(200, json=body), retry=ONE_ATTEMPT)
    with pytest.raises(CloudflareAPIError, match=r"\[1234\] nope"):
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)


async def test_non_json_success_is_unexpected(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: httpx.Response(200, text="hello"), retry=ONE_ATTEMPT)
    with pytest.raises(UnexpectedResponseError, match="without a JSON envelope"):
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)


async def test_wrong_result_shape_is_unexpected_without_echoing_values(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(lambda request: ok({"id": TUNNEL_ID, "status": "sensitive-value"}))
    with pytest.raises(UnexpectedResponseError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert "name: Field required" in str(caught.value)
    assert "sensitive-value" not in str(caught.value)
    assert caught.value.__suppress_context__


async def test_non_string_run_token_is_unexpected(make_harness: MakeHarness) -> None:
    harness = make_harness(lambda request: ok({"token": "abc"}))
    with pytest.raises(UnexpectedResponseError, match="not a token string"):
        await harness.client().get_tunnel_token(ACCOUNT, TUNNEL_ID)


@pytest.mark.parametrize(
    ("exception", "request_sent"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.PoolTimeout("pool"), False),
        (httpx.ReadTimeout("slow read"), True),
        (httpx.WriteTimeout("slow write"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
        (httpx.ReadError("connection reset"), True),
    ],
)
async def test_transport_failures_are_transport_errors(
    make_harness: MakeHarness, exception: httpx.HTTPError, request_sent: bool
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exception

    harness = make_harness(handler, retry=ONE_ATTEMPT)
    with pytest.raises(CloudflareTransportError) as caught:
        await harness.client().get_tunnel(ACCOUNT, TUNNEL_ID)
    assert caught.value.request_sent is request_sent
    assert type(exception).__name__ in str(caught.value)
    assert caught.value.__cause__ is None
    assert harness.observer.requests == [("tunnels.get", None, 0.0)]


def test_error_tree_shape() -> None:
    for api_error in (
        InvalidRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitedError,
        ServerError,
    ):
        assert issubclass(api_error, CloudflareAPIError)
    for direct in (CloudflareTransportError, UnexpectedResponseError, CloudflareAPIError):
        assert direct.__mro__[1] is CloudflareError
    assert issubclass(CloudflareError, Exception)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds
