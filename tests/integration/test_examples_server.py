"""Every manifest in ``examples/`` passes ``kubectl apply --dry-run=server`` on a real
kube-apiserver with the project's CRDs: structural schema, defaults, strict field validation and
every CEL rule of the CRDs.

Each file's namespaces are created for real under a unique prefix (a dry run needs them to
exist) and the objects moved into them, references included, so that the examples' own
namespaces (``demo`` is also used by the demo's test) are never touched.
"""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from cftunnel_devtools.controlplane import ControlPlane, repo_root

pytestmark = pytest.mark.controlplane

EXAMPLES = repo_root() / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))


def relocated(docs: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The documents with every namespace renamed to ``<prefix><name>``."""
    docs = copy.deepcopy(docs)

    def moved(name: str) -> str:
        return f"{prefix}{name}"[:63]

    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = moved(meta["name"])
            continue
        meta["namespace"] = moved(meta["namespace"])
        spec = doc.get("spec") or {}
        for ref in (spec.get("tunnelRef"), (spec.get("host") or {}).get("service")):
            if isinstance(ref, dict) and ref.get("namespace"):
                ref["namespace"] = moved(ref["namespace"])
    return docs


def as_list(docs: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_passes_server_side_validation(
    controlplane: ControlPlane, crds: list[str], path: Path
) -> None:
    docs = relocated(
        [d for d in yaml.safe_load_all(path.read_text()) if d], f"ex-{secrets.token_hex(3)}-"
    )
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    objects = [d for d in docs if d["kind"] != "Namespace"]
    try:
        controlplane.kubectl("apply", "-f", "-", input=as_list(namespaces))
        result = controlplane.kubectl(
            "apply", "--dry-run=server", "--validate=strict", "-f", "-",
            input=as_list(objects), check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("(server dry run)") == len(objects), result.stdout

        # The same objects, one broken by a rule only CEL checks, are refused: the dry run
        # really evaluates the CRDs' validation rules.
        broken = copy.deepcopy(objects)
        service = next((d for d in broken if d["kind"] == "VPCService"), None)
        if service is not None:
            service["spec"]["host"] = {"hostname": "a.example", "ipv4": "10.0.0.1"}
            refused = controlplane.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=as_list(broken), check=False
            )
            assert refused.returncode != 0
            assert "spec.host must set exactly one form" in refused.stderr, refused.stderr
    finally:
        for namespace in namespaces:
            controlplane.kubectl(
                "delete", "namespace", namespace["metadata"]["name"], "--wait=false", check=False
            )
