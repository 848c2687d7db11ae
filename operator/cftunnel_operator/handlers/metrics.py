"""Prometheus metrics of the operator, and the HTTP endpoint that serves them.

Everything lives in one :class:`OperatorMetrics`, registered in its own ``CollectorRegistry``
(never the process-global one), so that a test can build as many as it likes:

* it is the Cloudflare client's :class:`~cftunnel_operator.cloudflare.RequestObserver`
  (requests by operation and status, their duration, retries, rate-budget waits);
* :func:`metered` wraps one reconcile call and records its result, duration and the guard
  interventions among its events;
* two Kopf indices from :func:`register` keep ``cftunnel_objects``: every Tunnel and
  VPCService by the status of its stored Ready condition (Kopf drops a deleted object's entry);
* collectors read the remaining rate budget per token and the Kubernetes write count at scrape
  time.

The endpoint (:class:`MetricsServer`, started by :func:`register`'s start-up handler) runs on
Kopf's event loop rather than in a thread: the rate budgets it reads are plain asyncio objects,
and reading them from the loop itself needs no lock. Metric names and labels are documented in
``docs/metrics.md``; changing one is a breaking change for dashboards and alerts.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import kopf
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cftunnel_operator import __version__
from cftunnel_operator.api import names
from cftunnel_operator.api.conditions import ConditionType, Reason
from cftunnel_operator.cloudflare import RateBudget
from cftunnel_operator.config import OperatorConfig
from cftunnel_operator.handlers.memo import OperatorMemo

__all__ = [
    "GUARD_REASONS",
    "RESULTS",
    "MetricsServer",
    "OperatorMetrics",
    "metered",
    "metrics_of",
    "ready_index",
    "register",
]

#: Where the start-up handler keeps the process's metrics (and their server) in ``memo.extras``.
MEMO_KEY: Final = "metrics"
SERVER_KEY: Final = "metrics_server"

#: How a reconcile run ended: converged (or nothing to do), a retry scheduled, or an exception.
RESULTS: Final[tuple[str, ...]] = ("ok", "retry", "error")

#: Event reasons that mean a guard acted: a scale put back, or an autoscaler found aiming at
#: a connector. They are the ``kind`` label of ``cftunnel_guard_interventions_total``.
GUARD_REASONS: Final[tuple[str, ...]] = (
    Reason.MANUAL_SCALE,
    Reason.HORIZONTAL_POD_AUTOSCALER,
    Reason.SCALED_OBJECT,
    Reason.VERTICAL_POD_AUTOSCALER,
)

KINDS: Final[tuple[str, ...]] = (names.TUNNEL_KIND, names.VPCSERVICE_KIND)
READY_STATES: Final[tuple[str, ...]] = ("True", "False", "Unknown")
# Characters of the token's SHA-256 fingerprint used as a label: enough to tell tokens apart,
# and a digest prefix of a random token reveals nothing about it.
TOKEN_LABEL_LENGTH: Final = 12

# Reconciles wait for the rate budget, so their tail is long: buckets reach five minutes.
RECONCILE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _Event(Protocol):
    @property
    def reason(self) -> str: ...


class Outcome(Protocol):
    """What :func:`metered` reads from a reconcile outcome (Tunnel's and VPCService's)."""

    @property
    def retry_after(self) -> float | None: ...

    @property
    def events(self) -> Sequence[_Event]: ...


OutcomeT = TypeVar("OutcomeT", bound=Outcome)


class OperatorMetrics:
    """Every metric of one operator process, in a registry of its own.

    Implements the Cloudflare client's ``RequestObserver``: pass it as
    ``CloudflareClients(..., observer=metrics)``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "cftunnel_reconcile_total",
            "Reconcile runs by kind and result (ok, retry, error).",
            ["kind", "result"],
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "cftunnel_reconcile_duration_seconds",
            "Duration of reconcile runs, rate-budget waits included.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.cloudflare_requests = Counter(
            "cftunnel_cloudflare_requests_total",
            "Cloudflare API requests (HTTP attempts) by operation and HTTP status.",
            ["operation", "status"],
            registry=r,
        )
        self.cloudflare_seconds = Histogram(
            "cftunnel_cloudflare_request_duration_seconds",
            "Duration of Cloudflare API requests (one HTTP attempt, without budget waits).",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.cloudflare_retries = Counter(
            "cftunnel_cloudflare_retries_total",
            "Cloudflare API attempts that failed and were repeated, by operation and reason.",
            ["operation", "reason"],
            registry=r,
        )
        self.budget_waits = Counter(
            "cftunnel_cloudflare_rate_budget_waits_total",
            "Cloudflare requests that had to wait for the rate budget (or a 429 pause).",
            registry=r,
        )
        self.budget_wait_seconds = Counter(
            "cftunnel_cloudflare_rate_budget_wait_seconds_total",
            "Seconds Cloudflare requests spent waiting for the rate budget (or a 429 pause).",
            registry=r,
        )
        self.guard_interventions = Counter(
            "cftunnel_guard_interventions_total",
            "Scale changes put back (ManualScale) and autoscalers found targeting a connector.",
            ["kind"],
            registry=r,
        )
        build = Gauge(
            "cftunnel_build_info",
            "The operator's version (value is always 1).",
            ["version"],
            registry=r,
        )
        build.labels(__version__).set(1)
        # Series that exist from the start, so that rate() and alerts see a zero, not nothing.
        for kind in KINDS:
            for result in RESULTS:
                self.reconciles.labels(kind, result)
        for reason in GUARD_REASONS:
            self.guard_interventions.labels(reason)

        self._objects: Mapping[str, Mapping[str, Collection[Any]]] = {}
        self._budgets: Callable[[], Mapping[str, RateBudget]] = dict
        self._kube_writes: Callable[[], int] | None = None
        r.register(_StateCollector(self))

    # --- RequestObserver ------------------------------------------------------------------

    def on_request(self, operation: str, status: int | None, seconds: float) -> None:
        label = str(status) if status is not None else "transport_error"
        self.cloudflare_requests.labels(operation, label).inc()
        self.cloudflare_seconds.labels(operation).observe(seconds)

    def on_budget_wait(self, seconds: float) -> None:
        self.budget_waits.inc()
        self.budget_wait_seconds.inc(seconds)

    def on_retry(self, operation: str, reason: str) -> None:
        self.cloudflare_retries.labels(operation, reason).inc()

    # --- reconciles and objects -----------------------------------------------------------

    def reconciled(self, kind: str, result: str, seconds: float) -> None:
        self.reconciles.labels(kind, result).inc()
        self.reconcile_seconds.labels(kind).observe(seconds)

    def count_guard_events(self, events: Iterable[_Event]) -> None:
        for event in events:
            if event.reason in GUARD_REASONS:
                self.guard_interventions.labels(str(event.reason)).inc()

    def objects_by_ready(self) -> dict[tuple[str, str], int]:
        """How many objects of each kind have each Ready status."""
        counts = {(kind, ready): 0 for kind in KINDS for ready in READY_STATES}
        for kind, index in self._objects.items():
            for ready in READY_STATES:
                counts[(kind, ready)] = len(index.get(ready, ()))
        return counts

    # --- values read at scrape time -------------------------------------------------------

    def track(
        self,
        *,
        budgets: Callable[[], Mapping[str, RateBudget]],
        kube_writes: Callable[[], int],
    ) -> None:
        """Where to read the per-token rate budgets and the Kubernetes write count from."""
        self._budgets = budgets
        self._kube_writes = kube_writes

    def track_objects(self, indices: Mapping[str, Mapping[str, Collection[Any]]]) -> None:
        """Per kind, an index of its objects by Ready status (see :func:`register`)."""
        self._objects = indices

    def exposition(self) -> bytes:
        """The text exposition format of every metric (what ``/metrics`` answers)."""
        return generate_latest(self.registry)


class _StateCollector:
    """Values that live elsewhere and are read when scraped."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families(sample=False)

    def collect(self) -> Iterable[Metric]:
        return self._families(sample=True)

    def _families(self, *, sample: bool) -> list[Metric]:
        m = self._metrics
        objects = GaugeMetricFamily(
            "cftunnel_objects",
            "Tunnels and VPCServices by the status of their Ready condition.",
            labels=["kind", "ready"],
        )
        remaining = GaugeMetricFamily(
            "cftunnel_cloudflare_rate_budget_remaining",
            "Cloudflare requests the token could send right now (token: fingerprint prefix).",
            labels=["token"],
        )
        limit = GaugeMetricFamily(
            "cftunnel_cloudflare_rate_budget_limit",
            "Cloudflare requests allowed per window for the token (token: fingerprint prefix).",
            labels=["token"],
        )
        writes = CounterMetricFamily(
            "cftunnel_kubernetes_writes",
            "Write requests (create, apply, patch, delete) of the operator's Kubernetes client.",
            labels=[],
        )
        if sample:
            for (kind, ready), count in sorted(m.objects_by_ready().items()):
                objects.add_metric([kind, ready], count)
            for fingerprint, budget in sorted(m._budgets().items()):
                token = fingerprint[:TOKEN_LABEL_LENGTH]
                remaining.add_metric([token], budget.remaining())
                limit.add_metric([token], budget.limit)
            if m._kube_writes is not None:
                writes.add_metric([], m._kube_writes())
        return [objects, remaining, limit, writes]


def metrics_of(memo: OperatorMemo) -> OperatorMetrics | None:
    """The process's metrics, once the start-up handler has made them."""
    found = memo.extras.get(MEMO_KEY)
    return found if isinstance(found, OperatorMetrics) else None


async def metered(memo: OperatorMemo, kind: str, run: Awaitable[OutcomeT]) -> OutcomeT:
    """Await one reconcile (``run``) and record its result, its duration and its guard events.

    ``outcome = await metered(memo, names.TUNNEL_KIND, reconcile_tunnel(ctx, tunnel, mode))``
    """
    metrics = metrics_of(memo)
    if metrics is None:
        return await run
    started = time.perf_counter()
    try:
        outcome = await run
    except Exception:
        metrics.reconciled(kind, "error", time.perf_counter() - started)
        raise
    result = "ok" if outcome.retry_after is None else "retry"
    metrics.reconciled(kind, result, time.perf_counter() - started)
    metrics.count_guard_events(outcome.events)
    return outcome


def ready_index(body: Mapping[str, Any], **_: Any) -> dict[str, str]:
    """Index an object under the status of its Ready condition ("Unknown" when it has none)."""
    meta = body.get("metadata") or {}
    ready = "Unknown"
    for condition in (body.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == ConditionType.READY:
            status = str(condition.get("status"))
            ready = status if status in READY_STATES else "Unknown"
    return {ready: f"{meta.get('namespace')}/{meta.get('name')}"}


def register(
    registry: kopf.OperatorRegistry, config: OperatorConfig, metrics: OperatorMetrics
) -> None:
    """Serve ``metrics`` on ``config.metrics_port`` while the operator runs, and keep
    ``cftunnel_objects`` from two Kopf indices of the objects by Ready status.

    Kopf keeps an index entry per object and drops it when the object is deleted, whatever
    removed it; the initial listing after a restart fills it before any handler runs.
    """
    index_ids = {kind: f"metrics_{kind.lower()}s_by_ready" for kind in KINDS}
    plurals = {
        names.TUNNEL_KIND: names.TUNNEL_PLURAL,
        names.VPCSERVICE_KIND: names.VPCSERVICE_PLURAL,
    }
    for kind in KINDS:
        kopf.index(
            names.GROUP, names.VERSION, plurals[kind], registry=registry, id=index_ids[kind]
        )(ready_index)

    @kopf.on.startup(registry=registry, id="metrics-startup")
    async def serve_metrics(memo: OperatorMemo, **kwargs: Any) -> None:
        # Kopf hands every index to every handler by its id, activity handlers included.
        metrics.track_objects({kind: kwargs[index_id] for kind, index_id in index_ids.items()})
        memo.extras[MEMO_KEY] = metrics
        server = MetricsServer(metrics, port=config.metrics_port)
        await server.start()
        memo.extras[SERVER_KEY] = server

    @kopf.on.cleanup(registry=registry, id="metrics-cleanup")
    async def stop_serving(memo: OperatorMemo, **_: Any) -> None:
        server = memo.extras.pop(SERVER_KEY, None)
        if isinstance(server, MetricsServer):
            await server.stop()


class MetricsServer:
    """``GET /metrics`` on the event loop that runs the operator.

    ```
    server = MetricsServer(metrics, port=9090)
    await server.start()
    ...
    await server.stop()
    ```
    """

    def __init__(self, metrics: OperatorMetrics, *, host: str = "0.0.0.0", port: int) -> None:  # noqa: S104 - scraped from outside the pod
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            # Permanent: a taken port does not free itself, and the process should stop.
            raise kopf.PermanentError(
                f"cannot serve metrics on port {self.port} (CFTUNNEL_METRICS_PORT): "
                f"{error.strerror or error}"
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
