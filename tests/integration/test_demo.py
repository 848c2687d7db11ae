"""``make demo``'s path: the demo run on the session's control plane (it brings its own
emulator and operator process and watches only the demo's namespaces)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cftunnel_devtools.controlplane import ControlPlane, repo_root
from cftunnel_devtools.demo import demo_namespaces, run_demo

pytestmark = pytest.mark.controlplane


def test_demo_converges_and_prints_bindings(
    controlplane: ControlPlane, crds: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespaces = demo_namespaces(repo_root())
    assert namespaces, "examples/demo creates its namespaces"
    try:
        assert run_demo(keep=False, work_dir=tmp_path, plane=controlplane) == 0
        out = capsys.readouterr().out
        assert "Worker bindings" in out
        assert '"service_id"' in out
        for namespace in namespaces:
            tunnels = controlplane.kubectl(
                "get",
                "tunnels.cftunnel.dev",
                "-n",
                namespace,
                "-o",
                "jsonpath={.items[*].status.cloudflareStatus}",
            ).stdout.split()
            assert tunnels
            assert set(tunnels) == {"healthy"}
        # The demo stopped what it started: its operator log ends with a clean stop.
        assert (tmp_path / "operator.log").exists()
    finally:
        for namespace in namespaces:
            # Its operator is gone: drop finalizers so the namespace can go.
            for kind in ("vpcservices.cftunnel.dev", "tunnels.cftunnel.dev"):
                names = controlplane.kubectl(
                    "get", kind, "-n", namespace, "-o", "name", check=False
                ).stdout.split()
                for name in names:
                    controlplane.kubectl(
                        "patch",
                        name,
                        "-n",
                        namespace,
                        "--type=merge",
                        "-p",
                        '{"metadata":{"finalizers":null}}',
                        check=False,
                    )
            controlplane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
