"""``make bench``: how fast N Tunnels and N VPCServices converge, and what they cost.

    python -m cftunnel_devtools.bench --tunnels 20 --services 20 \\
        [--rate-limit 12 --rate-window 30] [--resync SECONDS] [--out bench-results/]

Everything runs locally and as separate processes, so that each one's CPU is its own: the
control plane (``ControlPlane.start()``, with an audit log of the operator's requests), the
Cloudflare API emulator (``python -m cloudflare_emulator`` enforcing ``--rate-limit`` requests
per ``--rate-window`` seconds per token) and the operator (``OperatorProcess``), whose own
budget is 5/6 of the emulator's, as in production (1,000 of Cloudflare's 1,200 per 5 minutes).

Phases and what each measures:

1. **Create.** N Tunnels and N VPCServices (one per Tunnel) are created at once. Convergence
   is the time until every object is Ready; it is compared with the rate-limit floor, the
   create-path Cloudflare calls divided by the operator's allowed rate. Cloudflare calls come
   from the emulator's request log (by operation, with timestamps); Kubernetes requests from
   the kube-apiserver's audit log, filtered to the operator's own ServiceAccount, so that
   nothing else (controllers, kwok, this script) is counted.
2. **Steady state.** Once Kopf has no handler left to retry and the operator has written
   nothing for 10 s: a window of twice the resync interval with nothing changing, for
   Cloudflare and Kubernetes requests per hour, and writes (which must be zero).
3. **Latency.** On the idle operator: a Tunnel's ``spec.connector.replicas`` and a
   VPCService's port are patched, one pair at a time; the time until the Deployment's new
   replica count is seen on a watch, and until the emulator logs the VPC service's PUT.
   Patches are paced so that they stay inside the share of the budget periodic checks leave.

Throughout, the operator's RSS and CPU time are sampled with psutil. Results go to
``<out>/bench-<time>-n<N>.{json,md,png}``; see ``docs/benchmark.md`` for measured figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cftunnel_devtools.controlplane import ControlPlane, free_port, repo_root, wait_until
from cftunnel_devtools.processes import OperatorProcess

__all__ = ["BenchSettings", "main", "run_bench"]

GROUP, VERSION = "cftunnel.dev", "v1alpha1"
NAMESPACE = "bench"
OPERATOR_NAMESPACE = "cftunnel-system"
OPERATOR_ACCOUNT = "cftunnel-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
TOKEN_SECRET = "cloudflare-api-token"  # noqa: S105 - the Secret's name
# The operator's budget as a share of the emulator's limit: 1,000 of 1,200 in production.
OPERATOR_SHARE = 5 / 6
# Share of the budget periodic checks may use (cftunnel_operator.reconcile.context).
PERIODIC_SHARE = 0.5
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# Cloudflare operations that belong to creating objects, as opposed to periodic checks.
CREATE_PATH_OPERATIONS = {
    "Tunnel": ("tunnels.create", "tunnels.list", "tunnels.token"),
    "VPCService": ("vpc_services.create", "vpc_services.list"),
    "token": ("tokens.verify_account", "tokens.verify_user"),
}
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
# Status writes with their bodies, to tell what a write at rest changed.
- level: Request
  users: ["{OPERATOR_USER}"]
  verbs: ["patch", "update"]
  resources:
  - group: "{GROUP}"
    resources: ["tunnels/status", "vpcservices/status"]
- level: Metadata
  users: ["{OPERATOR_USER}"]
- level: None
"""


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- settings and results -------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    tunnels: int = 20
    services: int = 20
    rate_limit: int = 12
    """Emulator requests per token per window (Cloudflare: 1,200)."""
    rate_window: float = 30.0
    """Emulator window in seconds (Cloudflare: 300)."""
    resync: float | None = None
    """The operator's periodic check interval; default: the rate window (as in production)."""
    replicas: int = 1
    latency_samples: int = 10
    out: Path = Path("bench-results")
    nodes: int | None = None
    operator_env: tuple[tuple[str, str], ...] = ()
    """Extra ``CFTUNNEL_*`` settings for the operator (e.g. a log level while investigating)."""

    @property
    def operator_rate_limit(self) -> int:
        return max(1, math.floor(self.rate_limit * OPERATOR_SHARE))

    @property
    def resync_seconds(self) -> float:
        return self.resync if self.resync is not None else self.rate_window

    @property
    def fake_nodes(self) -> int:
        # kwok nodes take 500 pods each; keep room for the latency phase's extra replicas.
        pods = self.tunnels * (self.replicas + 1)
        return self.nodes or max(3, math.ceil(pods / 400))


@dataclass
class Sample:
    """One psutil reading of a process."""

    t: float
    rss_mib: float
    cpu_seconds: float


@dataclass
class Timeline:
    """Ready objects over time (seconds since the create phase began)."""

    t: list[float] = field(default_factory=list)
    tunnels_ready: list[int] = field(default_factory=list)
    services_ready: list[int] = field(default_factory=list)


# --- processes ------------------------------------------------------------------------------


class AuditedControlPlane(ControlPlane):
    """The local control plane with an audit log of the operator's requests (its user only)."""

    @property
    def audit_log(self) -> Path:
        return self.work_dir / "audit.log"

    def _spawn(self, name: str, args: Sequence[str]) -> Any:
        if name == "kube-apiserver":
            policy = self.work_dir / "audit-policy.yaml"
            policy.write_text(AUDIT_POLICY)
            args = [
                *args,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-maxsize=0",
            ]
        return super()._spawn(name, args)


class EmulatorProcess:
    """``python -m cloudflare_emulator`` with one account and the scaled rate limit."""

    def __init__(self, settings: BenchSettings, account: str, token: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/client/v4"
        self.admin_url = f"http://127.0.0.1:{self.port}/__emulator"
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cloudflare_emulator",
                    "--port",
                    str(self.port),
                    "--account",
                    account,
                    "--token",
                    token,
                    "--rate-limit",
                    str(settings.rate_limit),
                    "--rate-window",
                    str(settings.rate_window),
                    # Simulated cloudflared: tunnels report healthy, as real ones would.
                    "--auto-connect",
                    str(settings.replicas),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError("the Cloudflare emulator exited early")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/health", timeout=2) as response:  # noqa: S310
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=30, what="the Cloudflare emulator")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


class ProcessSampler:
    """Samples a process's RSS and CPU time every ``interval`` seconds on a thread."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> Sample | None:
        import psutil

        try:
            with self._process.oneshot():
                cpu = self._process.cpu_times()
                rss = self._process.memory_info().rss
        except psutil.Error:
            return None
        reading = Sample(time.time(), rss / 2**20, cpu.user + cpu.system)
        self.samples.append(reading)
        return reading

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]


class DeploymentWatch:
    """Records (time, name, spec.replicas) of every Deployment event in a namespace."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self._api_client = api_client
        self._namespace = namespace
        self.seen: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deployments", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def first(self, name: str, replicas: int, after: float) -> float | None:
        with self._lock:
            for moment, seen_name, seen_replicas in self.seen:
                if seen_name == name and seen_replicas == replicas and moment >= after:
                    return moment
        return None

    def _run(self) -> None:
        from kubernetes import client, watch

        apps = client.AppsV1Api(self._api_client)
        while not self._stop.is_set():
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    apps.list_namespaced_deployment,
                    self._namespace,
                    timeout_seconds=60,
                    _request_timeout=90,
                ):
                    moment = time.time()
                    obj = event["object"]
                    with self._lock:
                        self.seen.append((moment, obj.metadata.name, int(obj.spec.replicas or 0)))
                    if self._stop.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
                        break
            except Exception:
                time.sleep(0.5)


# --- the benchmark ----------------------------------------------------------------------------


def tunnel_name(index: int) -> str:
    return f"tun-{index:04d}"


def service_name(index: int) -> str:
    return f"svc-{index:04d}"


def manifests(settings: BenchSettings, account: str) -> tuple[list[dict[str, Any]], ...]:
    tunnels = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Tunnel",
            "metadata": {"name": tunnel_name(i), "namespace": NAMESPACE},
            "spec": {
                "cloudflare": {
                    "accountId": account,
                    "apiTokenSecretRef": {"name": TOKEN_SECRET, "key": "token"},
                },
                "connector": {"replicas": settings.replicas},
            },
        }
        for i in range(settings.tunnels)
    ]
    services = [
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "VPCService",
            "metadata": {"name": service_name(i), "namespace": NAMESPACE},
            "spec": {
                "tunnelRef": {"name": tunnel_name(i % max(1, settings.tunnels))},
                "host": {"ipv4": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"},
                "ports": {"http": 8080},
            },
        }
        for i in range(settings.services)
    ]
    return tunnels, services


def create_all(plane: ControlPlane, objects: Sequence[Mapping[str, Any]], chunk: int = 250) -> None:
    for start in range(0, len(objects), chunk):
        doc = {"apiVersion": "v1", "kind": "List", "items": list(objects[start : start + chunk])}
        plane.kubectl("create", "-f", "-", input=json.dumps(doc), timeout=600)


def is_ready(obj: Mapping[str, Any]) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _is_progress(annotation: str, value: str) -> bool:
    """A Kopf progress record: a handler started and not finished, or waiting for its retry."""
    if not annotation.startswith(f"{GROUP}/"):
        return False
    try:
        record = json.loads(value)
    except ValueError:
        return False
    return isinstance(record, dict) and "started" in record


def audit_events(path: Path) -> Iterator[dict[str, Any]]:
    """The audit log's events (one JSON object per line), with ``t`` as epoch seconds."""
    if not path.exists():
        return
    with path.open() as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            stamp = event.get("requestReceivedTimestamp") or event.get("stageTimestamp")
            event["t"] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            yield event


def _observed_health(event: Mapping[str, Any]) -> bool:
    """A status write that records what a periodic check saw of the tunnel on Cloudflare (its
    status and connector count): a change of the world, not a write for nothing."""
    fields = set((event.get("requestObject") or {}).get("status") or {})
    seen = {"cloudflareStatus", "connectors"}
    return bool(fields & seen) and fields <= seen | {"conditions"}


def audit_key(event: Mapping[str, Any]) -> str:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "?")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return f"{event.get('verb')} {resource}"


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # Nearest rank: with few samples the p99 is the largest one, which is what it should say.
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def scrape_metrics(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def metric_sum(values: Mapping[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


class Bench:
    def __init__(self, settings: BenchSettings, work: Path) -> None:
        self.s = settings
        self.work = work
        self.account = uuid.uuid4().hex
        self.token = secrets.token_urlsafe(30)
        self.result: dict[str, Any] = {"settings": _settings_dict(settings)}

    # -- set-up ------------------------------------------------------------------------------

    def _install(self, plane: ControlPlane) -> Path:
        root = repo_root()
        for crd in sorted((root / "crds").glob("*.yaml")):
            plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        plane.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/tunnels.cftunnel.dev",
            "crd/vpcservices.cftunnel.dev",
        )
        plane.kubectl("create", "namespace", OPERATOR_NAMESPACE)
        plane.kubectl("create", "namespace", NAMESPACE)
        plane.kubectl("create", "serviceaccount", OPERATOR_ACCOUNT, "-n", OPERATOR_NAMESPACE)
        # The operator's own identity, so that the audit log tells its requests apart; the
        # chart's narrower RBAC is not what is measured here.
        plane.kubectl(
            "create",
            "clusterrolebinding",
            "bench-operator",
            "--clusterrole=cluster-admin",
            f"--serviceaccount={OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}",
        )
        plane.kubectl(
            "create",
            "secret",
            "generic",
            TOKEN_SECRET,
            "-n",
            NAMESPACE,
            f"--from-literal=token={self.token}",
        )
        return plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)

    def _operator(self, kubeconfig: Path, emulator: EmulatorProcess) -> tuple[OperatorProcess, int]:
        health, metrics = free_port(), free_port()
        env = {
            "KUBECONFIG": str(kubeconfig),
            "CFTUNNEL_CLOUDFLARE_API_URL": emulator.url,
            "CFTUNNEL_WATCH_NAMESPACES": NAMESPACE,
            "CFTUNNEL_RATE_LIMIT": str(self.s.operator_rate_limit),
            "CFTUNNEL_RATE_WINDOW_SECONDS": str(self.s.rate_window),
            "CFTUNNEL_RESYNC_SECONDS": str(self.s.resync_seconds),
            "CFTUNNEL_GUARD_MODE": "Warn",
            "CFTUNNEL_LOG_FORMAT": "json",
            "CFTUNNEL_HEALTH_PORT": str(health),
            "CFTUNNEL_METRICS_PORT": str(metrics),
            **dict(self.s.operator_env),
        }
        operator = OperatorProcess(env=env, log_path=self.work / "operator.log", health_port=health)
        operator.start()
        return operator, metrics

    # -- phases ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.s
        say(f"control plane with {s.fake_nodes} kwok nodes (first run provisions binaries)")
        started = AuditedControlPlane.start(work_dir=self.work / "controlplane", nodes=s.fake_nodes)
        with cast(AuditedControlPlane, started) as plane:
            kubeconfig = self._install(plane)
            emulator = EmulatorProcess(s, self.account, self.token, self.work / "emulator.log")
            operator: OperatorProcess | None = None
            samplers: list[ProcessSampler] = []
            try:
                emulator.wait_ready()
                operator, metrics_port = self._operator(kubeconfig, emulator)
                assert operator.pid is not None
                samplers = [ProcessSampler(operator.pid), ProcessSampler(emulator.popen.pid)]
                for sampler in samplers:
                    sampler.start()
                api = plane.api_client()
                api.user_agent = "cftunnel-bench"
                from cloudflare_emulator import AdminClient

                with AdminClient(emulator.admin_url, timeout=60) as admin:
                    self._create_phase(plane, api, admin)
                    self._settle(plane, api)
                    self._steady_phase(admin)
                    self._latency_phase(api, admin, metrics_port)
                    self.result["operator_metrics"] = scrape_metrics(metrics_port)
                    records = admin.requests()
                self._analyse(records, plane.audit_log, samplers[0], samplers[1])
            finally:
                # A second Ctrl-C must not leave the children running: finish the clean-up.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    for sampler in samplers:
                        sampler.stop()
                    if operator is not None:
                        operator.stop()
                    emulator.stop()
                    plane.stop()
                finally:
                    signal.signal(signal.SIGINT, previous)
        return self.result

    def _create_phase(self, plane: ControlPlane, api: Any, admin: Any) -> None:
        from kubernetes import client

        s = self.s
        tunnels, services = manifests(s, self.account)
        custom = client.CustomObjectsApi(api)
        say(f"creating {s.tunnels} Tunnels and {s.services} VPCServices")
        start = time.time()
        create_all(plane, tunnels)
        create_all(plane, services)
        created = time.time()
        timeline = Timeline()
        ready_at: dict[str, float] = {}
        total = s.tunnels + s.services
        floor = self._floor_seconds(s.tunnels + s.services + 1)
        deadline = start + max(600.0, 4 * floor + 300)
        interval = 1.0 if total <= 400 else 2.0
        while True:
            now = time.time()
            counts = []
            for plural in ("tunnels", "vpcservices"):
                listing = cast(
                    dict[str, Any],
                    custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural),
                )
                ready = 0
                for item in listing["items"]:
                    if is_ready(item):
                        ready += 1
                        ready_at.setdefault(f"{plural}/{item['metadata']['name']}", now - start)
                counts.append(ready)
            timeline.t.append(now - start)
            timeline.tunnels_ready.append(counts[0])
            timeline.services_ready.append(counts[1])
            if counts[0] == s.tunnels and counts[1] == s.services:
                break
            if now > deadline:
                raise RuntimeError(
                    f"not converged after {now - start:.0f}s: {counts[0]}/{s.tunnels} Tunnels "
                    f"and {counts[1]}/{s.services} VPCServices Ready"
                )
            if len(timeline.t) % max(1, int(15 / interval)) == 0:
                say(f"  {now - start:5.0f}s: {counts[0]} Tunnels, {counts[1]} VPCServices Ready")
            time.sleep(interval)
        converged = time.time()
        say(f"converged in {converged - start:.1f}s")
        self.result["create"] = {
            "start": start,
            "created": created,
            "converged": converged,
            "seconds": converged - start,
            "apply_seconds": created - start,
            "timeline": asdict(timeline),
            "ready_at": ready_at,
        }

    def _latency_phase(self, api: Any, admin: Any, metrics_port: int) -> None:
        from kubernetes import client

        s = self.s
        custom = client.CustomObjectsApi(api)
        samples = min(s.latency_samples, s.tunnels, s.services)
        watch = DeploymentWatch(api, NAMESPACE)
        watch.start()
        time.sleep(2)  # the watch's initial listing
        # Cloudflare PUTs share the budget with periodic checks: space them so that they fit in
        # what the checks leave, which is what an idle operator has to offer.
        spacing = 1.2 * s.rate_window / (s.operator_rate_limit * (1 - PERIODIC_SHARE))
        spacing = max(1.0, spacing)
        say(f"latency: {samples} pairs of spec changes, {spacing:.1f}s apart")
        before = scrape_metrics(metrics_port)
        deployment_latency: list[float] = []
        cloudflare_latency: list[float] = []
        failures: list[str] = []
        listing = cast(
            dict[str, Any],
            custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "vpcservices"),
        )
        services = {
            item["metadata"]["name"]: item["status"]["serviceId"] for item in listing["items"]
        }
        for i in range(samples):
            started = time.time()
            seq = admin.last_seq()
            replicas = s.replicas + 1
            sent_tunnel = time.time()
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "tunnels",
                tunnel_name(i),
                {"spec": {"connector": {"replicas": replicas}}},
            )
            sent_service = time.time()
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "vpcservices",
                service_name(i),
                {"spec": {"ports": {"http": 8081}}},
            )
            service_id = services[service_name(i)]
            deployment = f"{tunnel_name(i)}-cloudflared"
            seen_deployment: float | None = None
            seen_cloudflare: float | None = None
            deadline = time.time() + 60
            while time.time() < deadline and (seen_deployment is None or seen_cloudflare is None):
                if seen_deployment is None:
                    seen_deployment = watch.first(deployment, replicas, sent_tunnel)
                if seen_cloudflare is None:
                    for record in admin.requests(since_seq=seq):
                        if record["operation"] == "vpc_services.replace" and record[
                            "path"
                        ].endswith(service_id):
                            seen_cloudflare = record["time"]
                            break
                time.sleep(0.05)
            if seen_deployment is None:
                failures.append(f"{deployment}: replicas not seen within 60s")
            else:
                deployment_latency.append(seen_deployment - sent_tunnel)
            if seen_cloudflare is None:
                failures.append(f"{service_name(i)}: no PUT within 60s")
            else:
                cloudflare_latency.append(seen_cloudflare - sent_service)
            time.sleep(max(0.0, started + spacing - time.time()))
        watch.stop()
        after = scrape_metrics(metrics_port)
        waits = "cftunnel_cloudflare_rate_budget_waits_total"
        self.result["latency"] = {
            "samples": samples,
            "spacing_seconds": spacing,
            "to_deployment": _summary(deployment_latency),
            "to_cloudflare": _summary(cloudflare_latency),
            "budget_waits_during_phase": metric_sum(after, waits) - metric_sum(before, waits),
            "failures": failures,
        }
        say(
            "latency p50: Deployment "
            f"{_fmt(self.result['latency']['to_deployment']['p50'])}, Cloudflare "
            f"{_fmt(self.result['latency']['to_cloudflare']['p50'])}"
        )

    def _settle(self, plane: AuditedControlPlane, api: Any) -> None:
        """Wait until Kopf has no handler pending a retry and the operator writes nothing.

        A create handler that had to wait (a VPCService whose Tunnel had no id yet) keeps its
        retry scheduled even when the Tunnel watch has made the object Ready meanwhile; until
        it has run, Kopf holds later spec changes back for it.
        """
        from kubernetes import client

        custom = client.CustomObjectsApi(api)
        started = time.time()
        deadline = started + 300
        quiet_since, last_writes = time.time(), -1
        pending: list[str] = []
        while time.time() < deadline:
            pending = []
            for plural in ("tunnels", "vpcservices"):
                listing = cast(
                    dict[str, Any],
                    custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural),
                )
                for item in listing["items"]:
                    annotations = item["metadata"].get("annotations") or {}
                    if any(_is_progress(k, v) for k, v in annotations.items()):
                        pending.append(f"{plural}/{item['metadata']['name']}")
            events = audit_events(plane.audit_log)
            writes = len([e for e in events if e["verb"] in WRITE_VERBS])
            if writes != last_writes:
                last_writes, quiet_since = writes, time.time()
            if not pending and time.time() - quiet_since >= 10:
                break
            time.sleep(2)
        self.result["settle"] = {"seconds": time.time() - started, "still_pending": pending}
        say(
            f"idle after {time.time() - started:.0f}s"
            + (f"; pending: {pending}" if pending else "")
        )

    def _steady_phase(self, admin: Any) -> None:
        window = 2 * self.s.resync_seconds
        say(f"steady state: watching {window:.0f}s with nothing changing")
        start = time.time()
        seq = admin.last_seq()
        time.sleep(window)
        end = time.time()
        self.result["steady"] = {"start": start, "end": end, "seconds": end - start, "seq": seq}

    # -- analysis ----------------------------------------------------------------------------

    def _floor_seconds(self, calls: int) -> float:
        """The rate-limit floor as the design defines it: calls divided by the allowed rate."""
        return calls * self.s.rate_window / self.s.operator_rate_limit

    def _window_minimum(self, calls: int) -> float:
        """The least time a sliding-window limit allows for ``calls``: a full budget at once,
        then one more budget per window."""
        budget = self.s.operator_rate_limit
        return max(0, math.ceil(calls / budget) - 1) * self.s.rate_window

    def _analyse(
        self,
        records: Sequence[Mapping[str, Any]],
        audit_log: Path,
        operator: ProcessSampler,
        emulator: ProcessSampler,
    ) -> None:
        s, create, steady = self.s, self.result["create"], self.result["steady"]
        start, converged = create["start"], create["converged"]
        in_create = [r for r in records if start <= r["time"] <= converged]
        by_operation = Counter(r["operation"] for r in in_create)
        by_status = Counter(str(r["status"]) for r in in_create)
        path_calls = {
            kind: sum(by_operation[op] for op in operations)
            for kind, operations in CREATE_PATH_OPERATIONS.items()
        }
        create_path_total = sum(path_calls.values())
        periodic = len(in_create) - create_path_total
        floor = self._floor_seconds(create_path_total)
        floor_all = self._floor_seconds(len(in_create))
        create.update(
            {
                "cloudflare_calls": len(in_create),
                "cloudflare_by_operation": dict(sorted(by_operation.items())),
                "cloudflare_by_status": dict(sorted(by_status.items())),
                "create_path_calls": create_path_total,
                "other_calls": periodic,
                "calls_per_tunnel": path_calls["Tunnel"] / max(1, s.tunnels),
                "calls_per_vpcservice": path_calls["VPCService"] / max(1, s.services),
                "token_checks": path_calls["token"],
                "floor_seconds": floor,
                "ratio_to_floor": create["seconds"] / floor if floor else None,
                "window_minimum_seconds": self._window_minimum(create_path_total),
                "floor_seconds_all_calls": floor_all,
            }
        )
        curve = sorted(r["time"] - start for r in records if r["time"] >= start)
        create["cloudflare_curve"] = curve
        self.result["cloudflare_requests"] = [
            [round(r["time"] - start, 3), r["operation"], r["status"], r["method"], r["path"]]
            for r in records
        ]

        events = list(audit_events(audit_log))
        objects = s.tunnels + s.services
        create_events = [e for e in events if start <= e["t"] <= converged]
        writes = [e for e in create_events if e["verb"] in WRITE_VERBS]
        create["kubernetes_requests"] = len(create_events)
        create["kubernetes_writes"] = len(writes)
        create["kubernetes_writes_per_object"] = len(writes) / max(1, objects)
        create["kubernetes_reads_per_object"] = (len(create_events) - len(writes)) / max(1, objects)
        create["kubernetes_by_request"] = dict(
            sorted(Counter(audit_key(e) for e in create_events).items())
        )

        window = steady["end"] - steady["start"]
        steady_cf = [r for r in records if steady["start"] <= r["time"] <= steady["end"]]
        steady_kube = [e for e in events if steady["start"] <= e["t"] <= steady["end"]]
        cf_writes = [r for r in steady_cf if r["method"] not in ("GET", "HEAD")]
        kube_writes = [e for e in steady_kube if e["verb"] in WRITE_VERBS]
        observations = [e for e in kube_writes if _observed_health(e)]
        per_hour = 3600 / window
        budget_per_window = s.operator_rate_limit
        steady.update(
            {
                "cloudflare_calls": len(steady_cf),
                "cloudflare_writes": len(cf_writes),
                "cloudflare_by_operation": dict(
                    sorted(Counter(r["operation"] for r in steady_cf).items())
                ),
                "cloudflare_per_hour": len(steady_cf) * per_hour,
                "cloudflare_share_of_budget": (len(steady_cf) / window)
                * s.rate_window
                / budget_per_window,
                "kubernetes_requests": len(steady_kube),
                "kubernetes_writes": len(kube_writes),
                "kubernetes_writes_observing_health": len(observations),
                "kubernetes_write_details": [
                    {
                        "request": audit_key(e),
                        "object": (e.get("objectRef") or {}).get("name"),
                        "fields": sorted((e.get("requestObject") or {}).get("status") or {}),
                    }
                    for e in kube_writes
                ],
                "kubernetes_per_hour": len(steady_kube) * per_hour,
                "kubernetes_by_request": dict(
                    sorted(Counter(audit_key(e) for e in steady_kube).items())
                ),
            }
        )

        def usage(sampler: ProcessSampler, begin: float, end: float) -> dict[str, Any]:
            within = sampler.between(begin, end)
            if len(within) < 2:
                return {}
            cpu = within[-1].cpu_seconds - within[0].cpu_seconds
            wall = within[-1].t - within[0].t
            return {
                "cpu_seconds": cpu,
                "cpu_share_of_one_core": cpu / wall if wall else None,
                "peak_rss_mib": max(x.rss_mib for x in within),
                "last_rss_mib": within[-1].rss_mib,
            }

        everything = (operator.samples[0].t, operator.samples[-1].t) if operator.samples else (0, 0)
        self.result["resources"] = {
            "operator": {
                "whole_run": usage(operator, *everything),
                "create": usage(operator, start, converged),
                "steady": usage(operator, steady["start"], steady["end"]),
                "rss_curve": [(x.t - start, x.rss_mib) for x in operator.samples],
                "cpu_curve": [(x.t - start, x.cpu_seconds) for x in operator.samples],
            },
            "emulator": {"create": usage(emulator, start, converged)},
            "load_average": os.getloadavg(),
            "cpus": os.cpu_count(),
        }


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else None,
        "max": max(values) if values else None,
        "values": list(values),
    }


def _fmt(value: float | None, unit: str = "s", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["out"] = str(settings.out)
    data["operator_rate_limit"] = settings.operator_rate_limit
    data["resync_seconds"] = settings.resync_seconds
    data["fake_nodes"] = settings.fake_nodes
    return data


# --- reports --------------------------------------------------------------------------------


def targets(result: Mapping[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the design's quality bars this run can speak to."""
    create, steady, latency = result["create"], result["steady"], result["latency"]
    operator = result["resources"]["operator"]
    peak = (operator.get("whole_run") or {}).get("peak_rss_mib")
    ratio = create.get("ratio_to_floor")
    p50s = [latency["to_cloudflare"]["p50"], latency["to_deployment"]["p50"]]
    objects = result["settings"]["tunnels"] + result["settings"]["services"]
    observed = steady.get("kubernetes_writes_observing_health", 0)
    return [
        (
            "Cloudflare calls per Tunnel on the create path <= 2",
            f"{create['calls_per_tunnel']:.2f}",
            create["calls_per_tunnel"] <= 2,
        ),
        (
            "Cloudflare calls per VPCService on the create path <= 1",
            f"{create['calls_per_vpcservice']:.2f}",
            create["calls_per_vpcservice"] <= 1,
        ),
        (
            "convergence within 10% of calls / allowed rate",
            "n/a" if ratio is None else f"{ratio:.2f}x the floor",
            None if ratio is None else ratio <= 1.10,
        ),
        (
            "no writes at rest when nothing changed (Kubernetes and Cloudflare)",
            f"{steady['kubernetes_writes']} Kubernetes ({observed} record a tunnel's health "
            f"first seen by a periodic check), {steady['cloudflare_writes']} Cloudflare",
            steady["kubernetes_writes"] == observed and steady["cloudflare_writes"] == 0,
        ),
        (
            "periodic reads inside the budget",
            f"{100 * steady['cloudflare_share_of_budget']:.0f}% of the budget",
            steady["cloudflare_share_of_budget"] <= 1.0,
        ),
        (
            f"periodic reads inside their {100 * PERIODIC_SHARE:.0f}% share of the budget",
            f"{100 * steady['cloudflare_share_of_budget']:.0f}% of the budget",
            steady["cloudflare_share_of_budget"] <= PERIODIC_SHARE * 1.1,
        ),
        (
            "spec change to Cloudflare and Deployment p50 < 2 s (idle operator)",
            f"Cloudflare {_fmt(p50s[0])}, Deployment {_fmt(p50s[1])}",
            None if None in p50s else all(p is not None and p < 2 for p in p50s),
        ),
        (
            "operator RSS < 150 MiB (design: at 1,000 + 1,000 objects)",
            f"{_fmt(peak, ' MiB', 0)} peak at {objects} objects",
            None if peak is None else peak < 150,
        ),
    ]


def markdown(result: Mapping[str, Any], command: str) -> str:
    s, create, steady = result["settings"], result["create"], result["steady"]
    latency, resources = result["latency"], result["resources"]
    operator = resources["operator"]

    def usage_line(name: str, usage: Mapping[str, Any]) -> str:
        if not usage:
            return f"| {name} | n/a | n/a | n/a |"
        share = usage.get("cpu_share_of_one_core")
        return (
            f"| {name} | {usage['cpu_seconds']:.1f} | "
            f"{'n/a' if share is None else f'{100 * share:.0f}%'} | {usage['peak_rss_mib']:.0f} |"
        )

    lines = [
        f"# Benchmark: {s['tunnels']} Tunnels + {s['services']} VPCServices",
        "",
        f"`{command}`",
        "",
        f"Emulator limit {s['rate_limit']} requests per {s['rate_window']:g} s per token; operator "
        f"budget {s['operator_rate_limit']} per {s['rate_window']:g} s; resync "
        f"{s['resync_seconds']:g} s; {s['replicas']} cloudflared replica(s) per Tunnel; "
        f"{resources['cpus']} CPUs, load average at the end "
        f"{', '.join(f'{x:.2f}' for x in resources['load_average'])}.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    for target, measured, met in targets(result):
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {verdict} |")
    lines += [
        "",
        "## Create",
        "",
        f"* Converged (every object Ready) in **{create['seconds']:.1f} s** "
        f"(creating the objects with kubectl took {create['apply_seconds']:.1f} s of it).",
        f"* Create-path Cloudflare calls: {create['create_path_calls']} "
        f"({create['calls_per_tunnel']:.2f} per Tunnel, "
        f"{create['calls_per_vpcservice']:.2f} per VPCService, {create['token_checks']} token "
        f"checks); other calls during convergence (periodic checks): {create['other_calls']}.",
        f"* Rate-limit floor (create-path calls / allowed rate): {create['floor_seconds']:.1f} s; "
        f"convergence is **{create['ratio_to_floor']:.2f}x** the floor. (A sliding window lets "
        f"a full budget through at once, so the least possible time is "
        f"{create['window_minimum_seconds']:.0f} s; counting every call made during "
        f"convergence the floor is {create['floor_seconds_all_calls']:.1f} s.)",
        f"* Kubernetes (operator's requests, audit log): {create['kubernetes_writes']} writes "
        f"({create['kubernetes_writes_per_object']:.1f} per object), "
        f"{create['kubernetes_requests'] - create['kubernetes_writes']} reads "
        f"({create['kubernetes_reads_per_object']:.1f} per object).",
        "",
        "| Cloudflare operation (create phase) | calls |",
        "| --- | --- |",
        *[f"| {op} | {n} |" for op, n in create["cloudflare_by_operation"].items()],
        "",
        "| Kubernetes request (create phase) | count |",
        "| --- | --- |",
        *[f"| {key} | {n} |" for key, n in create["kubernetes_by_request"].items()],
        "",
        "## Spec change latency (idle operator)",
        "",
        f"{latency['samples']} Tunnel replica changes and {latency['samples']} VPCService port "
        f"changes, {latency['spacing_seconds']:.1f} s apart; rate-budget waits during the "
        f"phase: {latency['budget_waits_during_phase']:.0f}.",
        "",
        "| path | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        f"| VPCService port -> Cloudflare PUT | {_fmt(latency['to_cloudflare']['p50'])} | "
        f"{_fmt(latency['to_cloudflare']['p99'])} | {_fmt(latency['to_cloudflare']['max'])} |",
        f"| Tunnel replicas -> Deployment spec | {_fmt(latency['to_deployment']['p50'])} | "
        f"{_fmt(latency['to_deployment']['p99'])} | {_fmt(latency['to_deployment']['max'])} |",
        *([f"\nFailures: {'; '.join(latency['failures'])}"] if latency["failures"] else []),
        "",
        f"## Steady state ({steady['seconds']:.0f} s window, nothing changing)",
        "",
        f"* Cloudflare: {steady['cloudflare_calls']} calls ({steady['cloudflare_per_hour']:.0f} "
        f"per hour, {100 * steady['cloudflare_share_of_budget']:.0f}% of the budget), "
        f"{steady['cloudflare_writes']} writes: {steady['cloudflare_by_operation']}.",
        f"* Kubernetes: {steady['kubernetes_requests']} requests "
        f"({steady['kubernetes_per_hour']:.0f} per hour), {steady['kubernetes_writes']} writes: "
        f"{steady['kubernetes_by_request']}.",
        *[
            f"  * {w['request']} {w['object']}: {', '.join(w['fields']) or '(no status fields)'}"
            for w in steady["kubernetes_write_details"]
        ],
        "",
        "## Operator process",
        "",
        "| phase | CPU seconds | CPU (one core) | peak RSS MiB |",
        "| --- | --- | --- | --- |",
        usage_line("create", operator["create"]),
        usage_line("steady state", operator["steady"]),
        usage_line("whole run", operator["whole_run"]),
        usage_line("emulator, create", resources["emulator"]["create"]),
        "",
    ]
    return "\n".join(lines)


def write_results(result: dict[str, Any], out: Path, command: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    s = result["settings"]
    stem = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-n{s['tunnels']}"
    result["command"] = command
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    stem.with_suffix(".md").write_text(markdown(result, command))
    try:
        from cftunnel_devtools.bench_plot import plot

        plot(result, stem.with_suffix(".png"))
    except ImportError as error:
        say(f"no plot ({error}); install the dev extras for matplotlib")
    return stem


def run_bench(settings: BenchSettings, *, command: str, keep_work: bool = False) -> Path:
    work = Path(tempfile.mkdtemp(prefix="cftunnel-bench-"))
    try:
        result = Bench(settings, work).run()
        stem = write_results(result, settings.out, command)
        for suffix in (".log",):
            source = work / f"operator{suffix}"
            if source.exists():
                (stem.parent / f"{stem.name}-operator{suffix}").write_bytes(source.read_bytes())
        return stem
    finally:
        if not keep_work:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work folder kept: {work}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cftunnel_devtools.bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = BenchSettings()
    parser.add_argument("--tunnels", type=int, default=defaults.tunnels, metavar="N")
    parser.add_argument("--services", type=int, default=defaults.services, metavar="N")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=defaults.rate_limit,
        metavar="L",
        help="emulator requests per window per token (Cloudflare: 1200); operator gets 5/6",
    )
    parser.add_argument(
        "--rate-window",
        type=float,
        default=defaults.rate_window,
        metavar="W",
        help="emulator rate window in seconds (Cloudflare: 300)",
    )
    parser.add_argument(
        "--resync",
        type=float,
        default=None,
        metavar="SECONDS",
        help="operator's periodic check interval (default: the rate window)",
    )
    parser.add_argument("--replicas", type=int, default=defaults.replicas)
    parser.add_argument("--latency-samples", type=int, default=defaults.latency_samples)
    parser.add_argument("--nodes", type=int, default=None, help="kwok nodes (default: by pods)")
    parser.add_argument("--out", type=Path, default=defaults.out)
    parser.add_argument("--keep-work", action="store_true", help="keep logs and audit log")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="CFTUNNEL_X=VALUE",
        help="extra operator setting (repeatable), e.g. CFTUNNEL_LOG_LEVEL=DEBUG",
    )
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (a CI timeout, kill) stops everything the benchmark started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    if args.tunnels < 1 or args.services < 0 or args.rate_limit < 2 or args.rate_window <= 0:
        print("need --tunnels >= 1, --services >= 0, --rate-limit >= 2, --rate-window > 0")
        return 2
    settings = BenchSettings(
        tunnels=args.tunnels,
        services=args.services,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        resync=args.resync,
        replicas=args.replicas,
        latency_samples=args.latency_samples,
        out=args.out,
        nodes=args.nodes,
        operator_env=tuple(
            (key, value) for key, _, value in (item.partition("=") for item in args.operator_env)
        ),
    )
    command = "python -m cftunnel_devtools.bench " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    stem = run_bench(settings, command=command.strip(), keep_work=args.keep_work)
    print(Path(f"{stem}.md").read_text())
    say(f"results: {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
