"""The operator's Prometheus metrics: what each hook counts, and what /metrics serves."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import SecretStr

from cftunnel_operator.api.conditions import Reason
from cftunnel_operator.cloudflare import CloudflareClients, RateBudget, token_fingerprint
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.handlers.memo import OperatorMemo
from cftunnel_operator.handlers.metrics import (
    MEMO_KEY,
    MetricsServer,
    OperatorMetrics,
    metered,
    ready_index,
)

ACCOUNT = "0123456789abcdef0123456789abcdef"
TUNNEL_ID = "f70ff985-a4ef-4643-bbbc-4a0ed4fc8415"
TOKEN = "a-secret-api-token-value-that-must-never-show"


@dataclass(frozen=True)
class FakeEvent:
    type: str
    reason: str
    message: str = ""


@dataclass
class FakeOutcome:
    retry_after: float | None = None
    events: list[FakeEvent] = field(default_factory=list)


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics()


@pytest.fixture
def memo(metrics: OperatorMetrics) -> OperatorMemo:
    memo = OperatorMemo(config=OperatorConfig())
    memo.extras[MEMO_KEY] = metrics
    return memo


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_instance_has_its_own_registry_and_never_the_global_one() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    first.on_request("tunnels.get", 200, 0.01)
    assert value(first, "cftunnel_cloudflare_requests_total", operation="tunnels.get", status="200")
    assert (
        value(second, "cftunnel_cloudflare_requests_total", operation="tunnels.get", status="200")
        is None
    )
    assert REGISTRY.get_sample_value("cftunnel_build_info", {"version": "0.1.0"}) is None
    mine = CollectorRegistry()
    assert OperatorMetrics(mine).registry is mine


def test_requests_are_counted_by_operation_and_status_and_timed(
    metrics: OperatorMetrics,
) -> None:
    metrics.on_request("vpc_services.create", 200, 0.2)
    metrics.on_request("vpc_services.create", 200, 0.4)
    metrics.on_request("vpc_services.create", 429, 0.01)
    metrics.on_request("tunnels.get", None, 5.0)
    requests = "cftunnel_cloudflare_requests_total"
    assert value(metrics, requests, operation="vpc_services.create", status="200") == 2
    assert value(metrics, requests, operation="vpc_services.create", status="429") == 1
    assert value(metrics, requests, operation="tunnels.get", status="transport_error") == 1
    duration = "cftunnel_cloudflare_request_duration_seconds"
    assert value(metrics, f"{duration}_count", operation="vpc_services.create") == 3
    assert value(metrics, f"{duration}_sum", operation="vpc_services.create") == pytest.approx(0.61)


def test_budget_waits_and_retries_are_counted(metrics: OperatorMetrics) -> None:
    metrics.on_budget_wait(1.5)
    metrics.on_budget_wait(0.5)
    metrics.on_retry("tunnels.create", "rate_limited")
    assert value(metrics, "cftunnel_cloudflare_rate_budget_waits_total") == 2
    assert value(metrics, "cftunnel_cloudflare_rate_budget_wait_seconds_total") == 2.0
    assert (
        value(
            metrics,
            "cftunnel_cloudflare_retries_total",
            operation="tunnels.create",
            reason="rate_limited",
        )
        == 1
    )


async def test_metered_records_result_and_duration_of_each_run(
    metrics: OperatorMetrics, memo: OperatorMemo
) -> None:
    async def run(outcome: FakeOutcome) -> FakeOutcome:
        await asyncio.sleep(0.01)
        return outcome

    converged = FakeOutcome()
    assert await metered(memo, "Tunnel", run(converged)) is converged
    await metered(memo, "Tunnel", run(FakeOutcome(retry_after=30)))

    async def broken() -> FakeOutcome:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await metered(memo, "VPCService", broken())
    total = "cftunnel_reconcile_total"
    assert value(metrics, total, kind="Tunnel", result="ok") == 1
    assert value(metrics, total, kind="Tunnel", result="retry") == 1
    assert value(metrics, total, kind="Tunnel", result="error") == 0
    assert value(metrics, total, kind="VPCService", result="error") == 1
    assert value(metrics, "cftunnel_reconcile_duration_seconds_count", kind="Tunnel") == 2
    seconds = value(metrics, "cftunnel_reconcile_duration_seconds_sum", kind="Tunnel")
    assert seconds is not None
    assert seconds >= 0.02


async def test_guard_interventions_come_from_the_runs_events(
    metrics: OperatorMetrics, memo: OperatorMemo
) -> None:
    async def run() -> FakeOutcome:
        return FakeOutcome(
            events=[
                FakeEvent("Warning", Reason.MANUAL_SCALE),
                FakeEvent("Warning", Reason.HORIZONTAL_POD_AUTOSCALER),
                FakeEvent("Normal", Reason.TUNNEL_CREATED),
                FakeEvent("Warning", "ReplicasReduced"),
            ]
        )

    await metered(memo, "Tunnel", run())
    await metered(memo, "Tunnel", run())
    guards = "cftunnel_guard_interventions_total"
    assert value(metrics, guards, kind="ManualScale") == 2
    assert value(metrics, guards, kind="HorizontalPodAutoscaler") == 2
    assert value(metrics, guards, kind="ScaledObject") == 0
    assert value(metrics, guards, kind="TunnelCreated") is None


async def test_metered_without_metrics_just_runs() -> None:
    memo = OperatorMemo(config=OperatorConfig())

    async def run() -> FakeOutcome:
        return FakeOutcome(retry_after=5)

    assert (await metered(memo, "Tunnel", run())).retry_after == 5


def body(name: str, ready: str | None, namespace: str = "edge") -> dict[str, Any]:
    conditions = [{"type": "CloudflareSynced", "status": "True"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": name, "namespace": namespace},
        "status": {"conditions": conditions},
    }


@pytest.mark.parametrize(
    ("ready", "key"),
    [("True", "True"), ("False", "False"), (None, "Unknown"), ("Maybe", "Unknown")],
)
def test_objects_are_indexed_by_their_ready_status(ready: str | None, key: str) -> None:
    assert ready_index(body("office", ready)) == {key: "edge/office"}
    assert ready_index({"metadata": {"name": "new", "namespace": "edge"}}) == {
        "Unknown": "edge/new"
    }


def test_objects_gauge_counts_each_kinds_index(metrics: OperatorMetrics) -> None:
    def objects(kind: str, ready: str) -> float | None:
        return value(metrics, "cftunnel_objects", kind=kind, ready=ready)

    assert objects("Tunnel", "True") == 0  # before Kopf hands the indices over
    tunnels: dict[str, list[str]] = {"True": ["edge/a", "edge/b"], "False": ["edge/c"]}
    services: dict[str, list[str]] = {"Unknown": ["shop/db"]}
    metrics.track_objects({"Tunnel": tunnels, "VPCService": services})
    assert (objects("Tunnel", "True"), objects("Tunnel", "False")) == (2, 1)
    assert (objects("Tunnel", "Unknown"), objects("VPCService", "Unknown")) == (0, 1)
    # The indices are live views: a deleted object (Kopf drops its entry) leaves the gauge.
    tunnels["True"].remove("edge/b")
    del services["Unknown"]
    assert objects("Tunnel", "True") == 1
    assert objects("VPCService", "Unknown") == 0


def test_budget_remaining_is_labelled_by_a_fingerprint_prefix_only(
    metrics: OperatorMetrics,
) -> None:
    fingerprint = token_fingerprint(SecretStr(TOKEN))
    budget = RateBudget(10, 60)
    metrics.track(budgets=lambda: {fingerprint: budget}, kube_writes=lambda: 7)
    label = fingerprint[:12]
    assert value(metrics, "cftunnel_cloudflare_rate_budget_remaining", token=label) == 10
    assert value(metrics, "cftunnel_cloudflare_rate_budget_limit", token=label) == 10
    assert value(metrics, "cftunnel_kubernetes_writes_total") == 7
    text = metrics.exposition().decode()
    assert fingerprint not in text
    assert TOKEN not in text


async def test_the_client_reports_to_the_metrics_as_its_observer(
    metrics: OperatorMetrics,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        result = {
            "id": TUNNEL_ID,
            "name": "edge-office",
            "created_at": "2025-01-01T00:00:00Z",
            "status": "inactive",
            "config_src": "cloudflare",
            "connections": [],
        }
        return httpx.Response(
            200, json={"success": True, "errors": [], "messages": [], "result": result}
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        clients = CloudflareClients(http, "https://cf.invalid/client/v4", 5, 60.0, observer=metrics)
        metrics.track(budgets=clients.budgets, kube_writes=lambda: 0)
        client = clients.for_token(SecretStr(TOKEN))
        await client.get_tunnel(ACCOUNT, TUNNEL_ID)
        await client.get_tunnel(ACCOUNT, TUNNEL_ID)
    label = client.fingerprint[:12]
    assert (
        value(metrics, "cftunnel_cloudflare_requests_total", operation="tunnels.get", status="200")
        == 2
    )
    assert value(metrics, "cftunnel_cloudflare_rate_budget_remaining", token=label) == 3


async def test_server_answers_metrics_in_the_text_format(metrics: OperatorMetrics) -> None:
    metrics.on_request("tunnels.create", 200, 0.1)
    server = MetricsServer(metrics, host="127.0.0.1", port=0)
    await server.start()
    try:
        assert server.port != 0
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{server.port}/metrics")
            missing = await http.get(f"http://127.0.0.1:{server.port}/other")
    finally:
        await server.stop()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'cftunnel_cloudflare_requests_total{operation="tunnels.create",status="200"} 1.0'
        in response.text
    )
    assert 'cftunnel_reconcile_total{kind="VPCService",result="ok"} 0.0' in response.text
    assert missing.status_code == 404


async def test_a_taken_port_stops_start_up_with_the_variable_named(
    metrics: OperatorMetrics,
) -> None:
    import kopf

    first = MetricsServer(metrics, host="127.0.0.1", port=0)
    await first.start()
    try:
        second = MetricsServer(metrics, host="127.0.0.1", port=first.port)
        with pytest.raises(kopf.PermanentError, match="CFTUNNEL_METRICS_PORT"):
            await second.start()
    finally:
        await first.stop()
