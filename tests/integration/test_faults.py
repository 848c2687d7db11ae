"""The operator under injected faults: 429 storms, 5xx answers, timeouts, dropped connections,
the Cloudflare API restarted on its saved state, the operator killed at random points, the
kube-apiserver restarted, and Cloudflare objects changed while the operator was away.

Every case checks the design's promise: no duplicate Cloudflare object, nothing left on
Cloudflare after deletion, no token in any operator log line, event or status, and every object
converging once the fault ends. Tests that kill, restart or reconfigure the operator run a
private one (``start_operator``) on ``f-*`` namespaces of their own. Kill points come from a
seeded random generator: set ``CFTUNNEL_FAULT_SEED`` to replay or vary them.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane
from cftunnel_devtools.faults import (
    TUNNELS,
    VPCSERVICES,
    EmulatorProcess,
    assert_no_duplicates,
    assert_no_secret_in,
    delete_all,
    events,
    fleet,
    live_tunnels,
    max_in_window,
    namespace_objects,
    run_tokens,
    statuses,
    stored_services,
    wait_all_gone,
    wait_converged,
)
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    get_object,
    token_secret,
    tunnel_manifest,
    vpcservice_manifest,
    wait_for,
    wait_for_condition,
)

pytestmark = pytest.mark.controlplane

SEED = int(os.environ.get("CFTUNNEL_FAULT_SEED", "20251104"))
# Periodic checks of private operators: short, where convergence depends on them.
RESYNC = "5"


def rng_for(request: pytest.FixtureRequest) -> random.Random:
    """A generator seeded per test, so one test's kill points do not depend on another's."""
    return random.Random(f"{SEED}:{request.node.name}")


@pytest.fixture
def fault_namespace(
    controlplane: ControlPlane, crds: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A namespace no other operator watches, for a private operator."""
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = f"f-{slug.removeprefix('test-')[:40].strip('-')}-{secrets.token_hex(3)}"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def assert_no_token_leak(
    cp: ControlPlane, namespace: str, logs: dict[str, str], tokens: list[str]
) -> None:
    """No API or run token in the operator logs, the namespace's events or any status."""
    texts = {
        **logs,
        "events": json.dumps(events(cp, namespace)),
        "status": statuses(cp, namespace),
    }
    assert_no_secret_in(texts, tokens)


def wait_for_event(cp: ControlPlane, namespace: str, reason: str, timeout: float = 60) -> None:
    wait_for(
        lambda: any(e.get("reason") == reason for e in events(cp, namespace)),
        timeout=timeout,
        what=f"an event {reason} in {namespace}",
    )


def test_429_storm_is_waited_out_and_the_rate_budget_is_never_exceeded(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # The limit is set low enough for the fleet to need several windows, and the operator is
    # told the same limit: it must pace itself so that Cloudflare never refuses it (the only
    # 429s are the injected burst) and must wait out each retry-after.
    limit, window, burst, retry_after, count = 12, 6.0, 6, 3, 5
    admin, account = cf_account.admin, cf_account.account_id
    admin.set_rate_limit(limit, window)
    try:
        process = start_operator(
            fault_namespace,
            CFTUNNEL_RATE_LIMIT=str(limit),
            CFTUNNEL_RATE_WINDOW_SECONDS=str(window),
            CFTUNNEL_RESYNC_SECONDS=RESYNC,
        )
        since = admin.last_seq()
        admin.set_faults(rate_limit_burst=burst, retry_after=retry_after, account_id=account)
        apply(controlplane, *fleet(fault_namespace, account, cf_account.token, count))
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=150)
        assert_no_duplicates(admin, account)
        assert len(live_tunnels(admin, account)) == count
        assert len(stored_services(admin, account)) == count
        tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]

        delete_all(controlplane, fault_namespace)
        wait_all_gone(controlplane, fault_namespace, timeout=120)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []

        records = admin.requests(account_id=account, since_seq=since)
        assert len(records) > limit, "the fleet fitted in one window: the budget was not tested"
        throttled = [r for r in records if r["status"] == 429]
        assert len(throttled) == burst, "Cloudflare refused the operator beyond the injected burst"
        for refused in throttled:
            # Requests already in flight when the 429 came back may land just after it; none
            # may be sent until its retry-after has passed.
            during = [
                r
                for r in records
                if refused["time"] + 1.0 < r["time"] < refused["time"] + retry_after - 0.5
            ]
            assert during == [], f"requests during a retry-after pause: {during}"
        busiest = max_in_window((r["time"] for r in records), window)
        assert busiest <= limit, f"{busiest} requests in one {window:g}s window (limit {limit})"
        assert_no_token_leak(
            controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
        )
    finally:
        admin.clear_faults()
        admin.restore_rate_limit()


def test_5xx_and_dropped_connections_are_retried_without_duplicates(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    admin, account, count = cf_account.admin, cf_account.account_id, 3
    # A create that failed this way may still have been carried out: the operator waits a few
    # request timeouts before it looks again, so a short timeout keeps the test short.
    process = start_operator(
        fault_namespace, CFTUNNEL_REQUEST_TIMEOUT_SECONDS="3", CFTUNNEL_RESYNC_SECONDS=RESYNC
    )
    since = admin.last_seq()
    try:
        # Every request gets a 503 at first: the objects say so, with a Warning event.
        admin.set_faults(account_id=account, error_rate=1.0, error_status=503)
        apply(controlplane, *fleet(fault_namespace, account, cf_account.token, count))
        wait_for_condition(
            controlplane,
            TUNNELS,
            fault_namespace,
            "tunnel-0",
            "CloudflareSynced",
            "False",
            reason="CloudflareUnavailable",
        )
        wait_for_event(controlplane, fault_namespace, "CloudflareUnavailable")
        # Then a fifth of the requests lose their connection and a fifth of the rest get a
        # 502: retries get everything through, creates and deletes alike, without duplicates.
        admin.set_faults(
            account_id=account, seed=SEED, drop_rate=0.2, error_rate=0.2, error_status=502
        )
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=120)
        assert_no_duplicates(admin, account)
        assert len(live_tunnels(admin, account)) == count
        assert len(stored_services(admin, account)) == count
        tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]

        delete_all(controlplane, fault_namespace)
        wait_all_gone(controlplane, fault_namespace, timeout=120)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []
        answers = Counter(r["status"] for r in admin.requests(account_id=account, since_seq=since))
        assert answers[503] >= 5, f"the outage was not seen: {answers}"
        assert answers[502] > 0, f"no 502 was answered: {answers}"
        assert answers[0] > 0, f"no connection was dropped: {answers}"
        assert_no_token_leak(
            controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
        )
    finally:
        admin.clear_faults()


def test_timed_out_requests_carried_out_later_make_no_duplicates(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    admin, account, count = cf_account.admin, cf_account.account_id, 3
    process = start_operator(
        fault_namespace, CFTUNNEL_REQUEST_TIMEOUT_SECONDS="1", CFTUNNEL_RESYNC_SECONDS=RESYNC
    )
    creates = ["tunnels.create", "vpc_services.create"]
    try:
        # Creates answer only after the operator gave up on them, yet Cloudflare carries them
        # out: the operator must find what it created instead of creating it again. Cloudflare
        # refuses a second live tunnel of the same name (409), but not a second VPC service:
        # a service create in doubt must not be repeated while it may still land. (Reads are
        # fast, so everything can converge while the fault lasts.)
        admin.set_faults(latency_ms=1800, operations=creates, account_id=account)
        apply(controlplane, *fleet(fault_namespace, account, cf_account.token, count))
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=120)
        assert_no_duplicates(admin, account)
        assert all(admin.count(op, account_id=account) >= count for op in creates)
        # Then every call times out, periodic checks included: the objects report it.
        admin.set_faults(latency_ms=1800, account_id=account)
        wait_for_condition(
            controlplane,
            TUNNELS,
            fault_namespace,
            "tunnel-0",
            "CloudflareSynced",
            "False",
            reason="CloudflareUnavailable",
        )
        admin.clear_faults()
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=120)
        assert_no_duplicates(admin, account)
        assert len(live_tunnels(admin, account)) == count
        assert len(stored_services(admin, account)) == count
        tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]

        # Deletes that time out but are carried out: once the fault ends, the 404 of a retry
        # means done.
        admin.set_faults(latency_ms=1800, operations=["vpc_services.delete"], account_id=account)
        delete_all(controlplane, fault_namespace)
        wait_for(
            lambda: not stored_services(admin, account),
            timeout=60,
            what="the timed-out deletes carried out on Cloudflare",
        )
        admin.clear_faults()
        wait_all_gone(controlplane, fault_namespace, timeout=120)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []
        assert_no_token_leak(
            controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
        )
    finally:
        admin.clear_faults()


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A Cloudflare emulator of this test's own, as a process with a state file."""
    process = EmulatorProcess(
        state_file=tmp_path / "cloudflare-state.json",
        log_path=tmp_path / "cloudflare.log",
        accounts=[(uuid.uuid4().hex, secrets.token_urlsafe(30))],
    )
    process.start()
    yield process
    process.stop()


def test_cloudflare_restarted_on_its_saved_state_mid_reconcile(
    controlplane: ControlPlane,
    fault_namespace: str,
    emulator_process: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    request: pytest.FixtureRequest,
) -> None:
    rng = rng_for(request)
    (account, token), count = emulator_process.accounts[0], 4
    admin = emulator_process.admin()
    process = start_operator(
        fault_namespace,
        CFTUNNEL_CLOUDFLARE_API_URL=emulator_process.url,
        CFTUNNEL_REQUEST_TIMEOUT_SECONDS="3",
        CFTUNNEL_RESYNC_SECONDS=RESYNC,
    )
    try:
        apply(controlplane, *fleet(fault_namespace, account, token, count))
        # Fault injection: a crash (state written less than 0.2 s ago may be lost, as if
        # Cloudflare had lost it) and then a clean restart, each at a random moment of the
        # creation and each with an outage of random length.
        for crash in (emulator_process.kill, emulator_process.stop):
            time.sleep(rng.uniform(0.5, 3.0))
            crash()
            time.sleep(rng.uniform(0.5, 2.0))
            emulator_process.start()
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=150)
        assert_no_duplicates(admin, account)
        assert len(live_tunnels(admin, account)) == count
        assert len(stored_services(admin, account)) == count
        tokens = [token, *run_tokens(controlplane, fault_namespace)]

        delete_all(controlplane, fault_namespace)
        time.sleep(rng.uniform(0.5, 2.0))  # fault injection: a random moment of the deletion
        emulator_process.stop()
        emulator_process.start()
        wait_all_gone(controlplane, fault_namespace, timeout=120)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []
        assert_no_token_leak(
            controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
        )
    finally:
        admin.close()


def test_operator_killed_at_random_points_while_creating_and_deleting(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
    request: pytest.FixtureRequest,
) -> None:
    rng = rng_for(request)
    admin, account, count = cf_account.admin, cf_account.account_id, 8
    process = start_operator(fault_namespace, CFTUNNEL_RESYNC_SECONDS=RESYNC)

    def kill_and_restart() -> None:
        time.sleep(rng.uniform(0.2, 3.0))  # fault injection: a random point of the work
        process.kill()
        process.start()  # the log file keeps every run's lines

    try:
        # Slow creates a little, so that kills also land between a create Cloudflare carried
        # out and the status write that records its id.
        admin.set_faults(
            latency_ms=300,
            operations=["tunnels.create", "vpc_services.create"],
            account_id=account,
        )
        apply(controlplane, *fleet(fault_namespace, account, cf_account.token, count))
        for _ in range(3):
            kill_and_restart()
        admin.clear_faults()
        wait_converged(controlplane, fault_namespace, admin, account, 2 * count, timeout=180)
        assert_no_duplicates(admin, account)
        # Not even a duplicate made and then deleted: every tunnel ever stored is in use.
        assert len(admin.tunnels(account)) == count
        assert len(stored_services(admin, account)) == count
        tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]

        delete_all(controlplane, fault_namespace)
        for _ in range(3):
            kill_and_restart()
        wait_all_gone(controlplane, fault_namespace, timeout=180)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []
        assert_no_token_leak(
            controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
        )
    finally:
        admin.clear_faults()


def test_objects_deleted_before_their_ids_were_recorded_leave_nothing_behind(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    admin, account = cf_account.admin, cf_account.account_id
    process = start_operator(fault_namespace)
    try:
        admin.set_faults(
            latency_ms=4000,
            operations=["tunnels.create", "vpc_services.create"],
            account_id=account,
        )
        apply(
            controlplane,
            token_secret(fault_namespace, cf_account.token),
            tunnel_manifest(fault_namespace, "office", account_id=account),
            vpcservice_manifest(
                fault_namespace,
                "external",
                # A tunnel this operator does not manage: the service needs no Tunnel object.
                tunnelId=str(uuid.uuid4()),
                cloudflare={
                    "accountId": account,
                    "apiTokenSecretRef": {"name": "cloudflare-api-token", "key": "token"},
                },
                host={"ipv4": "10.0.0.1"},
            ),
        )

        def intents_recorded() -> bool:
            tunnel = get_object(controlplane, TUNNELS, fault_namespace, "office")
            service = get_object(controlplane, VPCSERVICES, fault_namespace, "external")
            return bool(
                (tunnel.get("status") or {}).get("tunnelName")
                and (service.get("status") or {}).get("serviceName")
            )

        # The names are recorded just before the (slowed down) creates are sent.
        wait_for(intents_recorded, timeout=30, what="both create intents in status")
        process.kill()
        wait_for(
            lambda: live_tunnels(admin, account) and stored_services(admin, account),
            timeout=30,
            what="both objects created on Cloudflare",
        )
        # Deleted while the operator is down, before it could record the Cloudflare ids.
        delete_all(controlplane, fault_namespace)
        admin.clear_faults()
        process.start()
        wait_all_gone(controlplane, fault_namespace, timeout=90)
        assert live_tunnels(admin, account) == []
        assert stored_services(admin, account) == []
    finally:
        admin.clear_faults()


def test_operator_keeps_working_across_an_apiserver_restart(
    controlplane: ControlPlane,
    fault_namespace: str,
    namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
    operator: OperatorProcess,
) -> None:
    admin, account = cf_account.admin, cf_account.account_id
    process = start_operator(fault_namespace, CFTUNNEL_RESYNC_SECONDS=RESYNC)
    apply(controlplane, *fleet(fault_namespace, account, cf_account.token, 1))
    wait_converged(controlplane, fault_namespace, admin, account, 2, timeout=90)
    private_pid, session_pid = process.pid, operator.pid

    # A Tunnel is being created when the apiserver goes away: its (slowed down) Cloudflare
    # create may return during the outage, cutting the rest of that run short.
    admin.set_faults(latency_ms=2500, operations=["tunnels.create"], account_id=account)
    apply(controlplane, tunnel_manifest(fault_namespace, "during-restart", account_id=account))
    wait_for(
        lambda: (
            get_object(controlplane, TUNNELS, fault_namespace, "during-restart").get("status") or {}
        ).get("tunnelName"),
        timeout=30,
        what="the create of the Tunnel to start",
    )
    # The session's control plane, shared by every test: restarted once, here, and healthy
    # again before anything else runs (restart_apiserver waits for /readyz).
    try:
        controlplane.restart_apiserver()
    finally:
        admin.clear_faults()
    assert controlplane.kubectl("get", "--raw=/readyz").stdout.strip() == "ok"
    restarted = time.monotonic()

    # Changes made after the restart reach the Deployment, Cloudflare and a new object.
    controlplane.kubectl(
        "patch",
        TUNNELS,
        "tunnel-0",
        "-n",
        fault_namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"connector": {"replicas": 2}}}),
    )
    controlplane.kubectl(
        "patch",
        VPCSERVICES,
        "service-0",
        "-n",
        fault_namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"ports": {"http": 9090}}}),
    )
    apply(
        controlplane,
        tunnel_manifest(fault_namespace, "after-restart", account_id=account),
    )

    def reconciled() -> bool:
        deployment = get_object(controlplane, "deployment", fault_namespace, "tunnel-0-cloudflared")
        ports = [s.get("http_port") for s in stored_services(admin, account)]
        return bool(deployment.get("spec", {}).get("replicas") == 2 and ports == [9090])

    wait_for(reconciled, timeout=90, what="the changes made after the restart", interval=1)
    wait_converged(controlplane, fault_namespace, admin, account, 4, timeout=90)
    converged_after = time.monotonic() - restarted
    # A run cut short by the outage is retried as an outage (seconds), not as a crash of the
    # handler (Kopf's one-minute default backoff).
    assert converged_after < 45, f"converged {converged_after:.0f}s after the apiserver was back"
    assert_no_duplicates(admin, account)
    assert len(live_tunnels(admin, account)) == 3

    # The session operator reconnected too: a Tunnel in its namespaces gets its tunnel.
    apply(
        controlplane,
        token_secret(namespace, cf_account.token),
        tunnel_manifest(namespace, "after-restart", account_id=account),
    )
    wait_for(
        lambda: (
            get_object(controlplane, TUNNELS, namespace, "after-restart").get("status") or {}
        ).get("tunnelId"),
        timeout=90,
        what="the session operator to create a tunnel after the restart",
    )
    # Neither operator process restarted, and both answer their liveness probe.
    assert (process.pid, operator.pid) == (private_pid, session_pid)
    assert process.running
    assert operator.running
    process.wait_healthy(5)
    operator.wait_healthy(5)

    tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]
    delete_all(controlplane, fault_namespace)
    wait_all_gone(controlplane, fault_namespace, timeout=90)
    assert [t["name"] for t in live_tunnels(admin, account)] == [f"{namespace}-after-restart"]
    assert stored_services(admin, account) == []
    assert_no_token_leak(
        controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
    )


def service_fields(service: dict[str, Any]) -> dict[str, Any]:
    """A stored service without its timestamps."""
    return {k: v for k, v in service.items() if k not in ("created_at", "updated_at")}


def test_cloudflare_changes_made_while_the_operator_was_down_are_put_back(
    controlplane: ControlPlane,
    fault_namespace: str,
    cf_account: Any,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    # The periodic check puts drift back (test_tunnel.py, test_vpcservice.py); here the drift
    # happens while the operator is down, and its resume must find every change at once.
    admin, account = cf_account.admin, cf_account.account_id
    process = start_operator(fault_namespace, CFTUNNEL_RESYNC_SECONDS=RESYNC)
    apply(controlplane, *fleet(fault_namespace, account, cf_account.token, 2))
    wait_converged(controlplane, fault_namespace, admin, account, 4, timeout=90)
    items = {i["metadata"]["name"]: i for i in namespace_objects(controlplane, fault_namespace)}
    renamed, deleted = (items[f"tunnel-{i}"]["status"]["tunnelId"] for i in (0, 1))
    edited, removed = (items[f"service-{i}"]["status"]["serviceId"] for i in (0, 1))
    wanted_names = {t["name"] for t in live_tunnels(admin, account)}
    wanted_service = next(
        service_fields(s) for s in stored_services(admin, account) if s["service_id"] == edited
    )

    process.kill()
    admin.edit_tunnel(account, renamed, {"name": "renamed-by-hand"})
    admin.edit_tunnel(account, deleted, {"deleted_at": "2026-01-01T00:00:00Z"})
    admin.edit_vpc_service(account, edited, {"http_port": 9999, "name": "edited-by-hand"})
    admin.delete_vpc_service(account, removed)
    process.start()

    def put_back() -> bool:
        services = {s["service_id"]: service_fields(s) for s in stored_services(admin, account)}
        names = {t["name"] for t in live_tunnels(admin, account)}
        edits_undone = services.get(edited) == wanted_service and len(services) == 2
        return names == wanted_names and edits_undone

    wait_for(put_back, timeout=60, what="every change on Cloudflare put back", interval=1)
    wait_converged(controlplane, fault_namespace, admin, account, 4, timeout=60)
    assert_no_duplicates(admin, account)
    assert len(live_tunnels(admin, account)) == 2
    items = {i["metadata"]["name"]: i for i in namespace_objects(controlplane, fault_namespace)}
    assert items["tunnel-0"]["status"]["tunnelId"] == renamed
    assert items["tunnel-1"]["status"]["tunnelId"] != deleted
    assert items["service-1"]["status"]["serviceId"] != removed
    assert items["service-1"]["status"]["serviceId"] in items["service-1"]["status"]["binding"]
    reasons = {e.get("reason") for e in events(controlplane, fault_namespace)}
    assert "TunnelDeleted" in reasons
    tokens = [cf_account.token, *run_tokens(controlplane, fault_namespace)]

    delete_all(controlplane, fault_namespace)
    wait_all_gone(controlplane, fault_namespace, timeout=90)
    assert live_tunnels(admin, account) == []
    assert stored_services(admin, account) == []
    assert_no_token_leak(
        controlplane, fault_namespace, {"operator log": process.log_text()}, tokens
    )
