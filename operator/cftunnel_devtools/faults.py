"""Helpers for fault tests: a Cloudflare emulator run as a process of its own (so that it can be
killed and restarted on its state file), the checks every fault test makes, and arithmetic on
the emulator's request log.

The checks follow the design's promise under injected faults: no duplicate Cloudflare object,
nothing left behind after deletion, and no token in any log line, event or status. Waiting is
done with deadlines (``cftunnel_devtools.testing.wait_for``), never with fixed sleeps.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftunnel_devtools.controlplane import ControlPlane, free_port
from cftunnel_devtools.testing import get_object

__all__ = [
    "TUNNELS",
    "VPCSERVICES",
    "EmulatorProcess",
    "assert_no_duplicates",
    "assert_no_secret_in",
    "events",
    "live_tunnels",
    "max_in_window",
    "namespace_objects",
    "private_namespace",
    "run_tokens",
    "stored_services",
]

TUNNELS = "tunnels.cftunnel.dev"
VPCSERVICES = "vpcservices.cftunnel.dev"
MANAGED_BY = "app.kubernetes.io/managed-by=cftunnel-operator"


@dataclass
class EmulatorProcess:
    """``python -m cloudflare_emulator`` on a fixed port with a state file.

    The port stays the same across restarts, so an operator pointed at ``url`` reaches the
    restarted emulator without being reconfigured. ``accounts`` are ``(account id, token)``
    pairs seeded at every start (tokens are stored as digests, so they are given again).
    """

    state_file: Path
    log_path: Path
    accounts: Sequence[tuple[str, str]]
    rate_limit: int | None = None
    rate_window: float | None = None
    port: int = field(default_factory=free_port)
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/__emulator"

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def admin(self) -> Any:
        """An ``AdminClient`` for this emulator (close it, or use it as a context manager)."""
        from cloudflare_emulator import AdminClient

        return AdminClient(self.admin_url)

    def start(self, *, timeout: float = 30) -> None:
        if self.running:
            return
        args = [
            sys.executable,
            "-m",
            "cloudflare_emulator",
            "--port",
            str(self.port),
            "--state-file",
            str(self.state_file),
        ]
        for account_id, token in self.accounts:
            args += ["--account", account_id, "--token", token]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        if self.rate_window is not None:
            args += ["--rate-window", str(self.rate_window)]
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with self.admin() as admin:
            admin.wait_ready(timeout)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM: the emulator saves its state and exits."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(timeout=10)
        self._popen = None

    def kill(self) -> None:
        """SIGKILL: changes of the last moments (state is written within 0.2 s) may be lost."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(timeout=10)
        self._popen = None


@contextmanager
def private_namespace(cp: ControlPlane, name: str) -> Iterator[str]:
    """A namespace created for one test and deleted (without waiting) afterwards."""
    cp.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def live_tunnels(admin: Any, account_id: str) -> list[dict[str, Any]]:
    """The account's tunnels that are not deleted."""
    return [t for t in admin.tunnels(account_id) if not t.get("deleted_at")]


def stored_services(admin: Any, account_id: str) -> list[dict[str, Any]]:
    """The account's Workers VPC services (a deleted service is gone from the store)."""
    services: list[dict[str, Any]] = admin.vpc_services(account_id)
    return services


def assert_no_duplicates(admin: Any, account_id: str) -> None:
    """No two live tunnels, and no two VPC services, share a name."""
    tunnel_names = Counter(t["name"] for t in live_tunnels(admin, account_id))
    service_names = Counter(s["name"] for s in stored_services(admin, account_id))
    twice = {name: n for name, n in (tunnel_names + service_names).items() if n > 1}
    assert not {n for n in tunnel_names if tunnel_names[n] > 1}, f"duplicate tunnels: {twice}"
    assert not {n for n in service_names if service_names[n] > 1}, f"duplicate services: {twice}"


def namespace_objects(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Every Tunnel and VPCService left in the namespace (to prove no finalizer got stuck)."""
    out = cp.kubectl("get", f"{TUNNELS},{VPCSERVICES}", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def events(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def run_tokens(cp: ControlPlane, namespace: str) -> list[str]:
    """The run tokens in the namespace's token Secrets (read them before deleting the Tunnels)."""
    out = cp.kubectl("get", "secrets", "-n", namespace, "-l", MANAGED_BY, "-o", "json").stdout
    tokens = []
    for item in json.loads(out)["items"]:
        raw = (item.get("data") or {}).get("token")
        if raw:
            tokens.append(base64.b64decode(raw).decode())
    return tokens


def statuses(cp: ControlPlane, namespace: str) -> str:
    """Every Tunnel's and VPCService's status in the namespace, as one JSON text."""
    return json.dumps([item.get("status") for item in namespace_objects(cp, namespace)])


def assert_no_secret_in(texts: Mapping[str, str], secrets: Iterable[str]) -> None:
    """No secret appears in any of the texts (operator logs, events, status)."""
    wanted = [s for s in secrets if s]
    assert wanted, "no secret to look for"
    for where, text in texts.items():
        for index, secret in enumerate(wanted):
            assert secret not in text, f"secret #{index} found in {where}"


def max_in_window(times: Iterable[float], window: float) -> int:
    """The largest number of moments that fit in any half-open interval of ``window`` seconds."""
    ordered = sorted(times)
    best = 0
    start = 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def object_status(cp: ControlPlane, resource: str, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_object(cp, resource, namespace, name).get("status") or {}
    return status
