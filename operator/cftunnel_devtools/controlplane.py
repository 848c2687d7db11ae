"""A real Kubernetes control plane started as local processes: tests, the demo, the benchmark.

It runs etcd, kube-apiserver (RBAC authorization, static-token admin, service-account tokens),
kube-controller-manager, kube-scheduler and kwok with a few fake nodes, so that Deployments
really become available and owner references really garbage-collect, without Docker.

Use it from Python::

    with ControlPlane.start() as cp:
        cp.kubectl("get", "nodes")

or from the command line (``python -m cftunnel_devtools.controlplane up``), which keeps it
running until interrupted. It stops exactly the processes it started, by their process ids.
The binaries come from ``hack/provision-controlplane.sh`` (see there for where they are found).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["ControlPlane", "ControlPlaneError", "provision_binaries", "repo_root"]

ADMIN_USER = "cftunnel-admin"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be provided or started."""


def repo_root() -> Path:
    """The repository this package is checked out in (the launcher is a development tool)."""
    return Path(__file__).resolve().parents[2]


def provision_binaries() -> Path:
    """Run the provisioning script and return the folder that holds every binary."""
    script = repo_root() / "hack" / "provision-controlplane.sh"
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"{script.name} failed with exit code {result.returncode}")
    bin_dir = Path(result.stdout.strip().splitlines()[-1])
    missing = [name for name in BINARIES if not (bin_dir / name).exists()]
    if missing:
        raise ControlPlaneError(f"binaries missing from {bin_dir}: {', '.join(missing)}")
    return bin_dir


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``check`` until it returns true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    """A running local control plane. Build one with :meth:`start`."""

    bin_dir: Path
    work_dir: Path
    nodes: int = 3
    kubeconfig: Path = field(init=False)
    apiserver_url: str = field(init=False)
    admin_token: str = field(init=False)
    _processes: list[_Process] = field(default_factory=list, init=False)
    _owns_work_dir: bool = field(default=False, init=False)
    _etcd_data: Path = field(init=False)

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def start(
        cls, *, work_dir: Path | None = None, bin_dir: Path | None = None, nodes: int = 3
    ) -> ControlPlane:
        """Provide the binaries, start every component and wait until workloads can run."""
        owns = work_dir is None
        work = Path(tempfile.mkdtemp(prefix="cftunnel-cp-")) if work_dir is None else work_dir
        work.mkdir(parents=True, exist_ok=True)
        plane = cls(bin_dir=bin_dir or provision_binaries(), work_dir=work, nodes=nodes)
        plane._owns_work_dir = owns
        try:
            plane._boot()
        except BaseException:
            plane.stop()
            raise
        return plane

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop exactly the processes this object started, newest first."""
        for process in reversed(self._processes):
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)
        self._processes.clear()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if hasattr(self, "_etcd_data"):
            shutil.rmtree(self._etcd_data, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port (for fault tests)."""
        process = next(p for p in self._processes if p.name == "kube-apiserver")
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait(timeout=10)
        self._processes.remove(process)
        self._start_apiserver(self._apiserver_port)
        self._wait_apiserver_ready()

    # -- helpers for callers ---------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment for a child process that should use this control plane."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the matching kubectl against this control plane (admin unless told otherwise)."""
        command = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}"]
        result = subprocess.run(
            [*command, *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane."""
        result = subprocess.run(
            [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def api_client(self, kubeconfig: Path | None = None) -> ApiClient:
        """A ``kubernetes`` client for this control plane (admin unless told otherwise)."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig or self.kubeconfig)
        )
        return client

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, path: Path | None = None, hours: int = 24
    ) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (token from the TokenRequest API)."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={hours}h"
        ).stdout.strip()
        target = path or self.work_dir / f"kubeconfig-{namespace}-{name}"
        self._write_kubeconfig(target, user=f"{namespace}-{name}", token=token)
        return target

    # -- boot ------------------------------------------------------------------------------------

    def _boot(self) -> None:
        self.admin_token = secrets.token_urlsafe(32)
        (self.work_dir / "logs").mkdir(exist_ok=True)
        self._write_pki()
        self._start_etcd()
        self._apiserver_port = free_port()
        self.apiserver_url = f"https://127.0.0.1:{self._apiserver_port}"
        self._start_apiserver(self._apiserver_port)
        self._wait_apiserver_ready()
        self.kubeconfig = self.work_dir / "kubeconfig"
        self._write_kubeconfig(self.kubeconfig, user=ADMIN_USER, token=self.admin_token)
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.work_dir / 'sa.key'}",
                f"--root-ca-file={self._ca_file}",
                "--controllers=*",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                # Fake nodes never go away; react fast when a test deletes things.
                "--concurrent-gc-syncs=10",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.240.0.1",
                "--server-address=127.0.0.1:0",
                "--node-lease-duration-seconds=40",
                f"--config={Path(__file__).with_name('kwok-stages.yaml')}",
            ],
        )
        self._create_nodes()
        wait_until(self._default_service_account_exists, timeout=90, what="controllers")

    def _write_pki(self) -> None:
        key = self.work_dir / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"],
            check=True,
            capture_output=True,
        )
        tokens = self.work_dir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)

    @property
    def _ca_file(self) -> Path:
        # kube-apiserver generates a self-signed serving certificate into --cert-dir.
        return self.work_dir / "certs" / "apiserver.crt"

    def _spawn(self, name: str, args: Sequence[str]) -> _Process:
        log_path = self.work_dir / "logs" / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own session: a Ctrl-C in the caller's terminal reaches us, not the children,
            # so that stop() can shut them down in order.
            start_new_session=True,
        )
        log.close()
        process = _Process(name, popen, log_path)
        self._processes.append(process)
        return process

    def _start_etcd(self) -> None:
        # etcd on tmpfs when there is one: fsync-free storage keeps the apiserver fast.
        shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp folder inside it
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.work_dir
        self._etcd_data = Path(tempfile.mkdtemp(prefix="cftunnel-etcd-", dir=base))
        client, peer = free_port(), free_port()
        self._etcd_url = f"http://127.0.0.1:{client}"
        process = self._spawn(
            "etcd",
            [
                f"--data-dir={self._etcd_data}",
                f"--listen-client-urls={self._etcd_url}",
                f"--advertise-client-urls={self._etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            self._check_alive(process)
            try:
                with urllib.request.urlopen(f"{self._etcd_url}/health", timeout=2) as response:  # noqa: S310
                    return bool(json.load(response).get("health") == "true")
            except (OSError, ValueError):
                return False

        wait_until(healthy, timeout=60, what="etcd")

    def _start_apiserver(self, port: int) -> None:
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={self._etcd_url}",
                f"--cert-dir={self.work_dir / 'certs'}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                f"--token-auth-file={self.work_dir / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.work_dir / 'sa.key'}",
                f"--service-account-signing-key-file={self.work_dir / 'sa.key'}",
                "--enable-priority-and-fairness=false",
                "--event-ttl=1h",
                # Close open watches when stopping: without it, the graceful shutdown waits
                # 60 s for them (operators and controllers keep some open at all times), and
                # so long an outage lets node leases expire and marks every pod not ready.
                "--shutdown-watch-termination-grace-period=2s",
            ],
        )

    def _apiserver(self) -> _Process:
        return next(p for p in self._processes if p.name == "kube-apiserver")

    def _wait_apiserver_ready(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def ready() -> bool:
            self._check_alive(self._apiserver())
            request = urllib.request.Request(  # noqa: S310 - a loopback https URL we built
                f"{self.apiserver_url}/readyz",
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
                    return bool(response.status == 200)
            except (OSError, urllib.error.HTTPError):
                return False

        wait_until(ready, timeout=120, what="kube-apiserver /readyz", interval=0.3)

    def _write_kubeconfig(self, path: Path, *, user: str, token: str) -> None:
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.apiserver_url,
                        "certificate-authority": str(self._ca_file),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
            "current-context": user,
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def _create_nodes(self) -> None:
        zones = ("zone-a", "zone-b")
        items = []
        for index in range(self.nodes):
            name = f"kwok-node-{index}"
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "topology.kubernetes.io/zone": zones[index % len(zones)],
                            "type": "kwok",
                        },
                    },
                    "status": {
                        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "500"},
                        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "500"},
                    },
                }
            )
        node_list = {"apiVersion": "v1", "kind": "List", "items": items}
        self.kubectl("apply", "-f", "-", input=json.dumps(node_list))

        def nodes_ready() -> bool:
            for process in self._processes:
                self._check_alive(process)
            result = self.kubectl(
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}"
                '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
                check=False,
            )
            return result.stdout.split() == ["True"] * self.nodes

        wait_until(nodes_ready, timeout=90, what="kwok nodes to become Ready", interval=0.5)

    def _default_service_account_exists(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0

    def _check_alive(self, process: _Process) -> None:
        if not process.alive():
            raise ControlPlaneError(
                f"{process.name} exited with code {process.popen.returncode}:\n{process.log_tail()}"
            )


@contextlib.contextmanager
def running(nodes: int = 3) -> Iterator[ControlPlane]:
    """Context manager over :meth:`ControlPlane.start`."""
    plane = ControlPlane.start(nodes=nodes)
    try:
        yield plane
    finally:
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cftunnel_devtools.controlplane {provision,up}``."""
    parser = argparse.ArgumentParser(prog="cftunnel_devtools.controlplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", help="provide the binaries and print their folder")
    up = sub.add_parser("up", help="start a control plane and keep it running until Ctrl-C")
    up.add_argument("--dir", type=Path, help="work folder (kubeconfig, logs); default a temp dir")
    up.add_argument("--nodes", type=int, default=3, help="number of kwok fake nodes")
    args = parser.parse_args(argv)
    if args.command == "provision":
        print(provision_binaries())
        return 0
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ControlPlane.start(work_dir=args.dir, nodes=args.nodes) as plane:
        print(f"control plane ready; export KUBECONFIG={plane.kubeconfig}", flush=True)
        print(f"binaries in {plane.bin_dir}; logs in {plane.work_dir / 'logs'}", flush=True)
        while not stop:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
