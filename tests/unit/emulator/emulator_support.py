"""Constants and helpers shared by the emulator tests (kept out of conftest.py so that test
modules can import them by name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from schema_check import validate_httpx_response

ACCOUNT = "0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT = "fedcba9876543210fedcba9876543210"
TOKEN = "emulator-test-token-account-a"
OTHER_TOKEN = "emulator-test-token-account-b"
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"

T = TypeVar("T")


def validating_client(base_url: str, token: str | None = TOKEN) -> httpx.Client:
    """An httpx client for the API that checks every answer against the schema."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=10.0,
        event_hooks={"response": [validate_httpx_response]},
    )


def wait_for(probe: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def error_codes(response: httpx.Response) -> list[int]:
    return [error["code"] for error in response.json()["errors"]]
