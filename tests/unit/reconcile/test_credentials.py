"""Token checks: cached per token and account, and asked once however many objects ask."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from cftunnel_operator.api.common import CloudflareRef
from cftunnel_operator.cloudflare import CloudflareClients
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.kube.client import ResourceType
from cftunnel_operator.reconcile.context import ReconcileContext
from cftunnel_operator.reconcile.credentials import resolve_credentials

ACCOUNT = "0123456789abcdef0123456789abcdef"
TOKEN = "a-test-api-token-0123456789"


class SecretsOnly:
    """The one read credentials make: the token Secret."""

    async def get_or_none(
        self, rtype: ResourceType, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}}


@pytest.fixture
async def checks() -> Any:
    asked: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        await asyncio.sleep(0.05)  # slow enough for every caller to arrive meanwhile
        result = {"id": "token-id", "status": "active"}
        return httpx.Response(
            200, json={"success": True, "errors": [], "messages": [], "result": result}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        ctx = ReconcileContext(
            config=OperatorConfig(),
            kube=SecretsOnly(),  # type: ignore[arg-type]
            clouds=CloudflareClients(http, "https://cf.invalid/client/v4"),
        )
        yield ctx, asked


async def test_objects_created_together_share_one_token_check(checks: Any) -> None:
    ctx, asked = checks
    ref = CloudflareRef.model_validate(
        {"accountId": ACCOUNT, "apiTokenSecretRef": {"name": "cf", "key": "token"}}
    )
    found = await asyncio.gather(*(resolve_credentials(ctx, "edge", ref) for _ in range(20)))
    assert {credentials.account_id for credentials in found} == {ACCOUNT}
    assert asked == [f"/client/v4/accounts/{ACCOUNT}/tokens/verify"]
    await resolve_credentials(ctx, "edge", ref)  # cached
    assert len(asked) == 1
