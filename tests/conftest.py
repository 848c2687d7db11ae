"""Shared fixtures: one local control plane, one Cloudflare emulator and one operator process
per test session; a fresh namespace and a fresh Cloudflare account per test.

Integration tests never skip for want of a control plane: when the binaries are missing the
fixture provisions them (see ``hack/provision-controlplane.sh``) or the tests error out.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane, free_port, repo_root, wait_until
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
        env=operator_env(controlplane, emulator, watch=f"{TEST_NAMESPACE_PREFIX}*", health_port=port),
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        health_port=port,
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        if os.environ.get("CFTUNNEL_KEEP_LOGS"):
            print(process.log_text())


def custom_object(
    controlplane: ControlPlane, kind_plural: str, namespace: str, name: str
) -> dict[str, Any]:
    """Read a cftunnel.dev object as a dict (empty dict when it does not exist)."""
    import json

    result = controlplane.kubectl(
        "get", f"{kind_plural}.cftunnel.dev", name, "-n", namespace, "-o", "json", check=False
    )
    return json.loads(result.stdout) if result.returncode == 0 else {}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for item in obj.get("status", {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return {}


def wait_for_condition(
    controlplane: ControlPlane,
    kind_plural: str,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    *,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until the object's condition has the status (and reason); return the object."""
    seen: dict[str, Any] = {}

    def check() -> bool:
        nonlocal seen
        seen = custom_object(controlplane, kind_plural, namespace, name)
        found = condition(seen, type_)
        return found.get("status") == status and (reason is None or found.get("reason") == reason)

    try:
        wait_until(check, timeout=timeout, what=f"{kind_plural}/{name} {type_}={status}", interval=0.3)
    except Exception as error:
        raise AssertionError(f"{error}; last seen status: {seen.get('status')}") from None
    return seen


__all__ = [
    "CRD_DIR",
    "REPO",
    "CloudflareAccount",
    "Path",
    "condition",
    "custom_object",
    "operator_env",
    "wait_for_condition",
]
