"""Fixtures for the emulator's own tests: one emulator per test module, a clean and seeded
state for every test, and clients that validate every response against Cloudflare's schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import cloudflare
import httpx
import pytest
from emulator_support import ACCOUNT, OTHER_ACCOUNT, OTHER_TOKEN, TOKEN, validating_client
from schema_check import validate_httpx_response

from cloudflare_emulator import AdminClient, EmulatorServer


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: EmulatorServer) -> Iterator[AdminClient]:
    with AdminClient(server.admin_url) as client:
        yield client


@pytest.fixture(autouse=True)
def clean_state(admin: AdminClient) -> None:
    admin.reset()
    admin.seed(ACCOUNT, TOKEN)
    admin.seed(OTHER_ACCOUNT, OTHER_TOKEN)


# Clients live as long as the module's emulator: building an httpx client costs tens of
# milliseconds (its TLS context), which adds up over hundreds of tests.
@pytest.fixture(scope="module")
def api(server: EmulatorServer) -> Iterator[httpx.Client]:
    with validating_client(server.url) as client:
        yield client


@pytest.fixture(scope="module")
def cf(server: EmulatorServer) -> Iterator[cloudflare.Cloudflare]:
    """The official SDK pointed at the emulator; its HTTP traffic is schema-checked too."""
    http_client = httpx.Client(event_hooks={"response": [validate_httpx_response]})
    client = cloudflare.Cloudflare(
        api_token=TOKEN, base_url=server.url, max_retries=0, http_client=http_client
    )
    with client:
        yield client
