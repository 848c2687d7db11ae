"""``make demo``: the operator doing its job with nothing but this repository.

It provisions and starts the local control plane, starts the Cloudflare API emulator (whose
simulated connectors attach to every new tunnel, standing in for cloudflared), installs the
CRDs, runs the operator process with default credentials for the emulated account, applies
``examples/demo/``, waits until every Tunnel and VPCService is Ready, prints them and the Worker
binding snippets, and stops everything it started (``--keep`` keeps it all running until
Ctrl-C). No Cloudflare account and no Docker are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from cftunnel_devtools.controlplane import ControlPlane, free_port, repo_root, wait_until
from cftunnel_devtools.processes import EmulatorProcess, OperatorProcess

__all__ = ["main"]

DEMO_ACCOUNT = "0123456789abcdef0123456789abcdef"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def run_demo(*, keep: bool, work_dir: Path, plane: ControlPlane | None = None) -> int:
    """Run the demo; with ``plane`` given, use that control plane and leave it running."""
    if plane is not None:
        return _demo_on(plane, keep=keep, work_dir=work_dir)
    say("starting the local control plane (the first run builds or downloads its binaries)")
    with ControlPlane.start(work_dir=work_dir / "controlplane") as started:
        say(f"control plane ready: {started.apiserver_url}")
        result = _demo_on(started, keep=keep, work_dir=work_dir)
    say("demo finished; everything it started is stopped")
    return result


def demo_namespaces(root: Path) -> list[str]:
    """The namespaces ``examples/demo`` creates: the demo's operator watches only these."""
    import yaml

    found = []
    for path in sorted((root / "examples" / "demo").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Namespace":
                found.append(str(doc["metadata"]["name"]))
    return found


def _install_crds(plane: ControlPlane, root: Path) -> None:
    for crd in sorted((root / "crds").glob("*.yaml")):
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/tunnels.cftunnel.dev",
        "crd/vpcservices.cftunnel.dev",
    )


def _start_operator(
    plane: ControlPlane, emulator: EmulatorProcess, token: str, namespaces: list[str], work: Path
) -> OperatorProcess:
    token_file = work / "api-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    health_port = free_port()
    operator = OperatorProcess(
        env={
            "KUBECONFIG": str(plane.kubeconfig),
            "CFTUNNEL_CLOUDFLARE_API_URL": emulator.url,
            "CFTUNNEL_ACCOUNT_ID": DEMO_ACCOUNT,
            "CFTUNNEL_API_TOKEN_FILE": str(token_file),
            "CFTUNNEL_WATCH_NAMESPACES": ",".join(namespaces),
            "CFTUNNEL_RESYNC_SECONDS": "5",
            "CFTUNNEL_GUARD_MODE": "Warn",
            "CFTUNNEL_LOG_FORMAT": "text",
            "CFTUNNEL_HEALTH_PORT": str(health_port),
            "CFTUNNEL_METRICS_PORT": str(free_port()),
        },
        log_path=work / "operator.log",
        health_port=health_port,
    )
    operator.start()
    return operator


def _wait_and_show(plane: ControlPlane, namespaces: list[str]) -> None:
    for namespace in namespaces:
        plane.kubectl(
            "wait",
            "--for=condition=Ready",
            "tunnels.cftunnel.dev,vpcservices.cftunnel.dev",
            "--all",
            "-n",
            namespace,
            "--timeout=180s",
            timeout=200,
        )

    def connected() -> bool:
        statuses = [
            status
            for namespace in namespaces
            for status in plane.kubectl(
                "get",
                "tunnels.cftunnel.dev",
                "-n",
                namespace,
                "-o",
                "jsonpath={.items[*].status.cloudflareStatus}",
            ).stdout.split()
        ]
        return bool(statuses) and all(status == "healthy" for status in statuses)

    # The emulator's simulated connectors show up as healthy at the next periodic check.
    wait_until(connected, timeout=60, what="tunnels to report healthy")
    for namespace in namespaces:
        print(plane.kubectl("get", "cftun,vpcsvc", "-n", namespace, "-o", "wide").stdout)
    say("Worker bindings (paste under vpc_services in your wrangler config):")
    for namespace in namespaces:
        listing = plane.kubectl("get", "vpcservices.cftunnel.dev", "-n", namespace, "-o", "json")
        for item in json.loads(listing.stdout)["items"]:
            meta = item["metadata"]
            print(f"  {meta['namespace']}/{meta['name']}: {item['status']['binding']}", flush=True)


def _wait_for_interrupt(plane: ControlPlane, work: Path) -> None:
    say(f"still running; in another shell: export KUBECONFIG={plane.kubeconfig}")
    say(f"operator log: {work / 'operator.log'}; Ctrl-C stops everything")
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop:
        time.sleep(0.5)


def _demo_on(plane: ControlPlane, *, keep: bool, work_dir: Path) -> int:
    root = repo_root()
    namespaces = demo_namespaces(root)
    token = secrets.token_urlsafe(32)
    # The emulator's simulated connectors attach to every new tunnel, standing in for
    # cloudflared (the kwok pods run no process).
    emulator = EmulatorProcess(
        log_path=work_dir / "emulator.log",
        accounts=[(DEMO_ACCOUNT, token)],
        extra_args=["--auto-connect", "2"],
    )
    operator: OperatorProcess | None = None
    try:
        emulator.start()
        say(f"Cloudflare API emulator ready: {emulator.url}")
        _install_crds(plane, root)
        operator = _start_operator(plane, emulator, token, namespaces, work_dir)
        say("operator running; applying examples/demo/")
        plane.kubectl("apply", "-f", str(root / "examples" / "demo"))
        say("waiting for every Tunnel and VPCService to be Ready")
        _wait_and_show(plane, namespaces)
        if keep:
            _wait_for_interrupt(plane, work_dir)
    except Exception:
        if operator is not None:
            print(operator.log_tail(40), file=sys.stderr)
        raise
    finally:
        if operator is not None:
            operator.stop()
        emulator.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cftunnel_devtools.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args(argv)
    keep_dir = os.environ.get("CFTUNNEL_DEMO_DIR")
    if keep_dir:
        Path(keep_dir).mkdir(parents=True, exist_ok=True)
        return run_demo(keep=args.keep, work_dir=Path(keep_dir))
    with tempfile.TemporaryDirectory(prefix="cftunnel-demo-") as work:
        return run_demo(keep=args.keep, work_dir=Path(work))


if __name__ == "__main__":
    sys.exit(main())
