"""Start-up: read the settings, configure logging, register the handlers and run Kopf.

Kopf runs embedded (``kopf.run``) in standalone mode: one replica with ``strategy: Recreate`` is
the supported shape (Kopf has no Lease-based leader election). Storage names are pinned here
once and for all (see the Kopf notes: changing them re-runs handlers and duplicates children).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import httpx
import kopf

from cftunnel_operator import __version__
from cftunnel_operator.api import names
from cftunnel_operator.cloudflare import CloudflareClients
from cftunnel_operator.config import ConfigError, OperatorConfig
from cftunnel_operator.handlers import metrics as metrics_handlers
from cftunnel_operator.handlers import tunnel as tunnel_handlers
from cftunnel_operator.handlers import vpcservice as vpcservice_handlers
from cftunnel_operator.handlers.logging import configure_logging
from cftunnel_operator.handlers.memo import OperatorMemo
from cftunnel_operator.kube.client import KubeApi
from cftunnel_operator.reconcile.context import ReconcileContext

__all__ = ["build_registry", "run_operator"]

logger = logging.getLogger("cftunnel_operator")


def _kubernetes_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    # Threads of asyncio.to_thread share one pool; keep enough connections for them.
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers of the operator, registered for these settings."""
    registry = kopf.OperatorRegistry()
    metrics = metrics_handlers.OperatorMetrics()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the mounted ServiceAccount token; elsewhere: the kubeconfig.
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: OperatorMemo, **_: Any) -> None:
        settings.persistence.finalizer = names.FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=names.KOPF_STORAGE_PREFIX, v1=False
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=names.KOPF_STORAGE_PREFIX, key="last-handled-configuration", v1=False
        )
        settings.posting.loggers = False
        settings.networking.request_timeout = 60
        settings.watching.server_timeout = 300
        # No limit: a limit below the number of objects can deadlock indexers (Kopf notes).
        settings.queueing.worker_limit = None
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.request_timeout_seconds),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            headers={"User-Agent": f"cftunnel-operator/{__version__}"},
        )
        memo.extras["http"] = http
        memo.context = context = ReconcileContext(
            config=config,
            kube=KubeApi(_kubernetes_client(), names.FIELD_MANAGER),
            clouds=CloudflareClients(
                http,
                config.cloudflare_api_url,
                rate_limit=config.rate_limit,
                window_seconds=config.rate_window_seconds,
                observer=metrics,
            ),
        )
        metrics.track(budgets=context.clouds.budgets, kube_writes=lambda: context.kube.writes)
        logger.info(
            "cftunnel-operator %s started: Cloudflare API %s, namespaces %s, guard %s, "
            "metrics on port %d",
            __version__,
            config.cloudflare_api_url,
            ",".join(config.watch_namespaces) or "all",
            config.guard_mode.value,
            config.metrics_port,
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: OperatorMemo, **_: Any) -> None:
        http = memo.extras.pop("http", None)
        if http is not None:
            await http.aclose()

    tunnel_handlers.register(registry, config)
    vpcservice_handlers.register(registry, config)
    metrics_handlers.register(registry, config, metrics)
    return registry


def run_operator(argv: Sequence[str]) -> int:
    """Run until stopped; a bad setting exits with status 2 and names the variable."""
    if argv and argv[0] in ("-h", "--help"):
        print(
            "cftunnel-operator: configured through CFTUNNEL_* environment variables "
            "(see the README)."
        )
        return 0
    if argv and argv[0] == "--version":
        print(__version__)
        return 0
    try:
        config = OperatorConfig.from_env()
    except ConfigError as error:
        print(f"cftunnel-operator: invalid configuration: {error}", file=sys.stderr)
        return 2
    configure_logging(config)
    registry = build_registry(config)
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not config.watch_namespaces,
        namespaces=config.watch_namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
        memo=OperatorMemo(config=config),
    )
    return 0
