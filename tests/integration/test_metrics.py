"""The operator's /metrics endpoint and its JSON logs, scraped from the running process."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cftunnel_devtools.controlplane import ControlPlane
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    token_secret,
    tunnel_manifest,
    vpcservice_manifest,
    wait_for,
    wait_for_condition,
)

pytestmark = pytest.mark.controlplane

TUNNELS = "tunnels.cftunnel.dev"
VPCSERVICES = "vpcservices.cftunnel.dev"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(operator: OperatorProcess) -> tuple[str, Samples]:
    port = int(operator.env["CFTUNNEL_METRICS_PORT"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def watched(cp: ControlPlane, resource: str) -> int:
    """Objects in the namespaces the session operator watches (``t-*``)."""
    out = cp.kubectl("get", resource, "-A", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return sum(1 for item in items if item["metadata"]["namespace"].startswith("t-"))


def test_metrics_count_a_tunnel_and_a_vpcservice_from_create_to_delete(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    _, before = scrape(operator)
    apply(
        controlplane,
        token_secret(namespace, cf_account.token),
        tunnel_manifest(namespace, "office", account_id=cf_account.account_id),
        vpcservice_manifest(
            namespace, "db", tunnelRef={"name": "office"}, host={"ipv4": "10.0.0.5"}
        ),
    )
    wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=90)
    wait_for_condition(controlplane, VPCSERVICES, namespace, "db", "Ready", timeout=60)

    def ready_counted() -> Samples | None:
        _, samples = scrape(operator)
        both = all(
            sample(samples, "cftunnel_objects", kind=kind, ready="True")
            for kind in ("Tunnel", "VPCService")
        )
        return samples if both else None

    after = wait_for(ready_counted, timeout=30, what="the Ready objects in cftunnel_objects")
    text, _ = scrape(operator)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("cftunnel_cloudflare_requests_total", operation="tunnels.create", status="200") >= 1
    assert grew("cftunnel_cloudflare_request_duration_seconds_count", operation="tunnels.create")
    assert grew("cftunnel_cloudflare_requests_total", operation="vpc_services.create", status="200")
    for kind in ("Tunnel", "VPCService"):
        assert grew("cftunnel_reconcile_total", kind=kind, result="ok") >= 1
        assert grew("cftunnel_reconcile_duration_seconds_count", kind=kind) >= 1
    assert grew("cftunnel_kubernetes_writes_total") >= 2  # the token Secret and the Deployment
    label = hashlib.sha256(cf_account.token.encode()).hexdigest()[:12]
    limit = sample(after, "cftunnel_cloudflare_rate_budget_limit", token=label)
    assert limit == 1000
    assert 0 < sample(after, "cftunnel_cloudflare_rate_budget_remaining", token=label) < limit
    for name in (
        "cftunnel_cloudflare_rate_budget_waits_total",
        "cftunnel_guard_interventions_total",
        "cftunnel_build_info",
    ):
        assert any(key[0] == name for key in after), name
    assert cf_account.token not in text
    assert hashlib.sha256(cf_account.token.encode()).hexdigest() not in text

    controlplane.kubectl("delete", VPCSERVICES, "db", "-n", namespace, "--wait=true")
    controlplane.kubectl("delete", TUNNELS, "office", "-n", namespace, "--wait=true")

    def gauge_matches_cluster() -> bool:
        _, samples = scrape(operator)
        return all(
            total(samples, "cftunnel_objects", kind=kind) == watched(controlplane, resource)
            for kind, resource in (("Tunnel", TUNNELS), ("VPCService", VPCSERVICES))
        )

    wait_for(gauge_matches_cluster, timeout=30, what="cftunnel_objects to drop deleted objects")


def test_json_log_lines_name_the_object_even_from_the_cloudflare_client(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    # One 429 on the create: the client's retry line is logged below the handlers.
    cf_account.admin.set_faults(
        rate_limit_burst=1,
        retry_after=1,
        account_id=cf_account.account_id,
        operations=["tunnels.create"],
    )
    try:
        apply(
            controlplane,
            token_secret(namespace, cf_account.token),
            tunnel_manifest(namespace, "office", account_id=cf_account.account_id),
        )
        wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=90)
    finally:
        cf_account.admin.clear_faults()

    def lines_about_the_tunnel() -> list[dict[str, Any]]:
        found = []
        for line in operator.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            ref = record.get("object") or {}
            if ref.get("namespace") == namespace and ref.get("name") == "office":
                found.append(record)
        return found

    def retry_logged() -> list[dict[str, Any]]:
        records = lines_about_the_tunnel()
        retried = any("tunnels.create: attempt 1" in r["message"] for r in records)
        return records if retried else []

    records = wait_for(retry_logged, timeout=30, what="the retry line naming the Tunnel")
    assert all(r["object"]["kind"] == "Tunnel" and r["object"]["uid"] for r in records)
    assert all(r.get("message") and r.get("severity") and r.get("timestamp") for r in records)
    assert any(r["message"].startswith("Handler ") for r in records)  # Kopf's own lines too
    _, samples = scrape(operator)
    retries = "cftunnel_cloudflare_retries_total"
    assert sample(samples, retries, operation="tunnels.create", reason="rate_limited") >= 1
    requests = "cftunnel_cloudflare_requests_total"
    assert sample(samples, requests, operation="tunnels.create", status="429") >= 1
