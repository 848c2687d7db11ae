"""Shared fixtures: one local control plane, one Cloudflare emulator and one operator process
per test session; a fresh namespace and a fresh Cloudflare account per test.

Integration tests never skip for want of a control plane: when the binaries are missing the
fixture provisions them (see ``hack/provision-controlplane.sh``) or the tests error out.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane, free_port, repo_root
from cftunnel_devtools.processes import OperatorProcess

REPO = repo_root()
CRD_DIR = REPO / "crds"
# The session operator watches namespaces with this prefix; tests that run an operator of
# their own (crash tests, other settings) use another prefix so that the two never compete.
TEST_NAMESPACE_PREFIX = "t-"
OPERATOR_RESYNC_SECONDS = 8


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane.start(work_dir=tmp_path_factory.mktemp("controlplane"))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crds(controlplane: ControlPlane) -> list[str]:
    """Install every CRD in ``crds/`` and wait until each is Established."""
    files = sorted(CRD_DIR.glob("*.yaml"))
    assert files, "no CRDs found in crds/"
    for path in files:
        controlplane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    names = [
        controlplane.kubectl("get", "-f", str(path), "-o", "name").stdout.strip() for path in files
    ]
    for name in names:
        controlplane.kubectl("wait", "--for=condition=Established", "--timeout=60s", name)
    return names


def _unique_namespace(prefix: str, request: pytest.FixtureRequest) -> str:
    base = request.node.name.lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40].strip("-")
    return f"{prefix}{cleaned}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(controlplane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = _unique_namespace(TEST_NAMESPACE_PREFIX, request)
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass(frozen=True)
class CloudflareAccount:
    """A fresh emulated Cloudflare account with an account-owned API token."""

    account_id: str
    token: str
    admin: Any  # cloudflare_emulator.AdminClient
    api_url: str


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cloudflare_emulator import EmulatorServer

    state = tmp_path_factory.mktemp("emulator") / "state.json"
    with EmulatorServer(port=0, state_file=state) as server:
        yield server


@pytest.fixture
def cf_account(emulator: Any) -> CloudflareAccount:
    from cloudflare_emulator import AdminClient

    admin = AdminClient(emulator.admin_url)
    account_id = uuid.uuid4().hex
    token = secrets.token_urlsafe(30)
    admin.seed(account_id, token)
    return CloudflareAccount(account_id, token, admin, emulator.url)


@pytest.fixture
def start_operator(
    controlplane: ControlPlane,
    crds: list[str],
    emulator: Any,
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start an extra operator process (own settings, own namespaces); stopped after the test."""
    started: list[OperatorProcess] = []

    def start(watch: str, **settings: str) -> OperatorProcess:
        port = free_port()
        process = OperatorProcess(
            env=operator_env(controlplane, emulator, watch=watch, health_port=port, **settings),
            log_path=tmp_path / f"operator-{len(started)}.log",
            health_port=port,
        )
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


def operator_env(
    controlplane: ControlPlane, emulator: Any, *, watch: str, health_port: int, **extra: str
) -> dict[str, str]:
    """The ``CFTUNNEL_*`` settings tests run the operator with."""
    env = {
        "KUBECONFIG": str(controlplane.kubeconfig),
        "CFTUNNEL_CLOUDFLARE_API_URL": emulator.url,
        "CFTUNNEL_WATCH_NAMESPACES": watch,
        "CFTUNNEL_RESYNC_SECONDS": str(OPERATOR_RESYNC_SECONDS),
        "CFTUNNEL_HEALTH_PORT": str(health_port),
        "CFTUNNEL_METRICS_PORT": str(free_port()),
        "CFTUNNEL_LOG_FORMAT": "json",
        "CFTUNNEL_GUARD_MODE": "Warn",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def operator(
    controlplane: ControlPlane,
    crds: list[str],
    emulator: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator under test, watching every ``t-*`` namespace."""
    port = free_port()
    process = OperatorProcess(
        env=operator_env(
            controlplane, emulator, watch=f"{TEST_NAMESPACE_PREFIX}*", health_port=port
        ),
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        health_port=port,
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        if os.environ.get("PRINT_OPERATOR_LOGS"):
            print(process.log_text())


__all__ = ["CRD_DIR", "REPO", "CloudflareAccount", "Path", "operator_env"]
