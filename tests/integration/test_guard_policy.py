"""The chart's autoscaler guard on a real kube-apiserver: the ValidatingAdmissionPolicies rendered
by helm refuse (Enforce) or warn about (Warn) autoscalers and scale changes aimed at a cloudflared
Deployment, and leave everything else alone.

The guarded namespace holds two Tunnels (the policies' parameters) and, for each, what the
operator would write, built by the operator's own builders (``cftunnel_operator.kube.children``):
token Secret, Deployment and PodDisruptionBudget, owned by the Tunnel. The namespace does not use
the ``t-`` prefix, so the session's operator never acts on it.

The policies are cluster-scoped. Each test class installs them under its own Helm release name,
and the bindings are narrowed to the class's namespace so that they never affect other tests;
they are deleted when the class ends. The Warn class therefore also proves that the guard works
again after it was uninstalled and reinstalled.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import yaml

from cftunnel_devtools.controlplane import ControlPlane, repo_root, wait_until
from cftunnel_operator.api.names import API_VERSION, FIELD_MANAGER, GROUP, TUNNEL_KIND
from cftunnel_operator.api.tunnel import ConnectorSpec
from cftunnel_operator.kube.children import (
    OwnerRef,
    deployment_name,
    desired_deployment,
    desired_pdb,
    desired_token_secret,
    token_hash,
)
from cftunnel_operator.kube.guards import WHY_NO_AUTOSCALING

pytestmark = pytest.mark.controlplane

CHART = repo_root() / "charts" / "cftunnel-operator"
IMAGE = "docker.io/cloudflare/cloudflared:2026.8.2"
TUNNEL = "office"
CONNECTOR = deployment_name(TUNNEL)
SPARE_TUNNEL = "spare"
SPARE_CONNECTOR = deployment_name(SPARE_TUNNEL)
UNGUARDED = "web"
OPERATOR_SA = "operator"
EXEMPT_SA = "break-glass"
SCALER_SA = "scaler"
ENFORCEMENT_TIMEOUT = 60

# Minimal CRDs so that the ScaledObject and VerticalPodAutoscaler paths run for real; a
# schema-less object is all the policies need.
AUTOSCALER_CRDS = {
    "scaledobjects.keda.sh": ("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
    "verticalpodautoscalers.autoscaling.k8s.io": (
        "autoscaling.k8s.io",
        "v1",
        "VerticalPodAutoscaler",
        "verticalpodautoscalers",
    ),
}


# --- helpers ------------------------------------------------------------------------------------


def apply(controlplane: ControlPlane, *objects: dict[str, Any]) -> CompletedProcess[str]:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    return controlplane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(document))


def create(
    controlplane: ControlPlane, obj: dict[str, Any], *, dry_run: bool = False
) -> CompletedProcess[str]:
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return controlplane.kubectl(*args, input=json.dumps(obj), check=False)


def refused_by_guard(result: CompletedProcess[str]) -> bool:
    return (
        result.returncode != 0
        and "ValidatingAdmissionPolicy" in result.stderr
        and WHY_NO_AUTOSCALING in result.stderr
    )


def warned_by_guard(result: CompletedProcess[str]) -> bool:
    return (
        result.returncode == 0
        and "Warning:" in result.stderr
        and WHY_NO_AUTOSCALING in result.stderr
    )


def hpa(namespace: str, name: str, target: str, *, version: str = "v2") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 2,
        "maxReplicas": 5,
    }
    if version == "v1":
        spec["targetCPUUtilizationPercentage"] = 70
    return {
        "apiVersion": f"autoscaling/{version}",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def scaled_object(namespace: str, name: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace},
        # No kind: KEDA defaults it to Deployment, and so must the guard.
        "spec": {"scaleTargetRef": {"name": target}, "triggers": []},
    }


def vpa(namespace: str, name: str, target: str, mode: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    }
    if mode is not None:
        spec["updatePolicy"] = {"updateMode": mode}
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def scale(
    controlplane: ControlPlane,
    namespace: str,
    name: str,
    count: int,
    *,
    kubeconfig: Path,
    dry_run: bool = False,
) -> CompletedProcess[str]:
    """``kubectl scale`` as the user of ``kubeconfig``."""
    args = ["scale", "deployment", name, "-n", namespace, f"--replicas={count}"]
    args += ["--dry-run=server"] if dry_run else []
    return controlplane.kubectl(*args, kubeconfig=kubeconfig, check=False)


def merge_patch(
    controlplane: ControlPlane, guarded: Guarded, name: str, patch: dict[str, Any]
) -> CompletedProcess[str]:
    """``kubectl patch`` of a Deployment as the non-exempt user."""
    return controlplane.kubectl(
        "patch", "deployment", name, "-n", guarded.namespace, "--type=merge",
        "-p", json.dumps(patch), kubeconfig=guarded.scaler, check=False,
    )  # fmt: skip


def replicas(controlplane: ControlPlane, namespace: str, name: str) -> int:
    out = controlplane.kubectl(
        "get", "deployment", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}"
    ).stdout
    return int(out)


def install_autoscaler_crds(controlplane: ControlPlane) -> None:
    """Install the minimal CRDs unless the cluster already has these kinds."""
    for crd_name, (group, version, kind, plural) in AUTOSCALER_CRDS.items():
        if controlplane.kubectl("get", "crd", crd_name, check=False).returncode == 0:
            continue
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": crd_name,
                # *.k8s.io groups are protected; the real VPA CRD carries this approval.
                "annotations": {
                    "api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/63797"
                },
            },
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                "versions": [
                    {
                        "name": version,
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
        controlplane.kubectl("apply", "-f", "-", input=json.dumps(crd))
    for crd_name in AUTOSCALER_CRDS:
        controlplane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd_name}"
        )


def render_guard(controlplane: ControlPlane, release: str, namespace: str, mode: str) -> str:
    """The guard policies as the chart renders them, bindings narrowed to ``namespace``."""
    server = json.loads(controlplane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    rendered = controlplane.helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", server["gitVersion"],
        "--show-only", "templates/guard-policy.yaml",
        "--set", f"guard.mode={mode}",
        "--set", f"serviceAccount.name={OPERATOR_SA}",
        "--set-json", f'guard.exemptUsernames=["system:serviceaccount:{namespace}:{EXEMPT_SA}"]',
    ).stdout  # fmt: skip
    items = [doc for doc in yaml.safe_load_all(rendered) if doc]
    kinds = sorted(item["kind"] for item in items)
    assert kinds == ["ValidatingAdmissionPolicy"] * 4 + ["ValidatingAdmissionPolicyBinding"] * 4
    for item in items:
        if item["kind"] == "ValidatingAdmissionPolicyBinding":
            item["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def create_tunnel(controlplane: ControlPlane, namespace: str, name: str) -> OwnerRef:
    """A Tunnel object; no operator watches this namespace, so it only serves as a parameter."""
    tunnel = {
        "apiVersion": API_VERSION,
        "kind": TUNNEL_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"connector": {"replicas": 2}},
    }
    created = json.loads(
        controlplane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(tunnel)).stdout
    )
    return OwnerRef(name, namespace, created["metadata"]["uid"])


@dataclass(frozen=True)
class Guarded:
    """A namespace with two guarded connectors, an unguarded Deployment and three identities."""

    namespace: str
    scaler: Path
    """A user with RBAC to scale Deployments, not exempt from the guard."""
    exempt: Path
    """A user listed in guard.exemptUsernames."""
    operator: Path
    """The operator's ServiceAccount, as the chart names it."""


def setup_namespace(controlplane: ControlPlane, namespace: str) -> Guarded:
    controlplane.kubectl("create", "namespace", namespace)
    # The cloudflared pods must pass Pod Security "restricted": enforced on the pods, and warned
    # about on the Deployment (the warn level also checks workload templates).
    controlplane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )  # fmt: skip
    for name in (OPERATOR_SA, EXEMPT_SA, SCALER_SA):
        controlplane.kubectl("create", "serviceaccount", name, "-n", namespace)
    controlplane.kubectl(
        "create", "role", "scale-deployments", "-n", namespace,
        "--verb=get,list,watch,patch,update", "--resource=deployments,deployments.apps/scale",
    )  # fmt: skip
    for name in (OPERATOR_SA, EXEMPT_SA, SCALER_SA):
        controlplane.kubectl(
            "create", "rolebinding", f"scale-deployments-{name}", "-n", namespace,
            "--role=scale-deployments", f"--serviceaccount={namespace}:{name}",
        )  # fmt: skip

    for tunnel, count in ((TUNNEL, 2), (SPARE_TUNNEL, 1)):
        owner = create_tunnel(controlplane, namespace, tunnel)
        token = secrets.token_urlsafe(32)
        applied = apply(
            controlplane,
            desired_token_secret(owner, token),
            desired_deployment(
                owner, ConnectorSpec(), image=IMAGE, token_hash=token_hash(token), replicas=count
            ),
            desired_pdb(owner),
        )
        # Pod Security warns about a Deployment whose pods it would refuse.
        assert "PodSecurity" not in applied.stderr, applied.stderr
    controlplane.kubectl(
        "create", "deployment", UNGUARDED, "-n", namespace, "--image=registry.invalid/web:1",
    )  # fmt: skip

    guarded = Guarded(
        namespace=namespace,
        scaler=controlplane.service_account_kubeconfig(namespace, SCALER_SA),
        exempt=controlplane.service_account_kubeconfig(namespace, EXEMPT_SA),
        operator=controlplane.service_account_kubeconfig(namespace, OPERATOR_SA),
    )
    for kubeconfig in (guarded.scaler, guarded.exempt, guarded.operator):

        def authorized(kubeconfig: Path = kubeconfig) -> bool:
            return (
                controlplane.kubectl(
                    "get", "deployments", "-n", namespace, kubeconfig=kubeconfig, check=False
                ).returncode
                == 0
            )

        wait_until(authorized, timeout=30, what="RoleBindings to take effect")
    return guarded


def wait_for_guard(controlplane: ControlPlane, guarded: Guarded, mode: str) -> None:
    """Poll until every policy acts: the apiserver picks policies, bindings and parameters up
    from its informers a moment after they are created."""
    namespace = guarded.namespace
    effective = refused_by_guard if mode == "Enforce" else warned_by_guard
    probes: dict[str, Callable[[], CompletedProcess[str]]] = {
        "HorizontalPodAutoscaler": lambda: create(
            controlplane, hpa(namespace, "probe", CONNECTOR), dry_run=True
        ),
        "ScaledObject": lambda: create(
            controlplane, scaled_object(namespace, "probe", CONNECTOR), dry_run=True
        ),
        "VerticalPodAutoscaler": lambda: create(
            controlplane, vpa(namespace, "probe", CONNECTOR, "Auto"), dry_run=True
        ),
        "scale": lambda: scale(
            controlplane, namespace, CONNECTOR, 7, kubeconfig=guarded.scaler, dry_run=True
        ),
    }
    for what, probe in probes.items():

        def acts(probe: Callable[[], CompletedProcess[str]] = probe) -> bool:
            return effective(probe())

        wait_until(acts, timeout=ENFORCEMENT_TIMEOUT, what=f"the {what} policy", interval=0.5)


@pytest.fixture(scope="class")
def guard(
    request: pytest.FixtureRequest, controlplane: ControlPlane, crds: list[str]
) -> Iterator[Guarded]:
    """The guard policies in the mode the class names, and a namespace they guard (``crds``:
    the Tunnel CRD, whose objects are the policies' parameters)."""
    mode: str = request.cls.MODE
    suffix = secrets.token_hex(3)
    namespace = f"guard-{mode.lower()}-{suffix}"
    install_autoscaler_crds(controlplane)
    policies = render_guard(controlplane, f"guard-{mode.lower()}-{suffix}", namespace, mode)
    try:
        guarded = setup_namespace(controlplane, namespace)
        controlplane.kubectl("apply", "--server-side", "-f", "-", input=policies)
        wait_for_guard(controlplane, guarded, mode)
        yield guarded
    finally:
        controlplane.kubectl("delete", "--ignore-not-found", "-f", "-", input=policies, check=False)
        controlplane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- Enforce ----------------------------------------------------------------------------------


class TestEnforce:
    MODE = "Enforce"

    @pytest.mark.parametrize("version", ["v2", "v1"])
    def test_hpa_targeting_the_connector_is_refused_with_the_reason(
        self, controlplane: ControlPlane, guard: Guarded, version: str
    ) -> None:
        result = create(
            controlplane, hpa(guard.namespace, "cloudflared-hpa", CONNECTOR, version=version)
        )
        assert refused_by_guard(result), result.stderr
        message = result.stderr
        assert "HorizontalPodAutoscaler cloudflared-hpa targets" in message
        assert f"Deployment {CONNECTOR}" in message
        assert f"Tunnel {TUNNEL}" in message
        assert "spec.connector.replicas" in message

    def test_hpa_targeting_another_deployment_is_admitted(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        result = create(controlplane, hpa(guard.namespace, "web-hpa", UNGUARDED))
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr

    def test_every_connector_in_the_namespace_is_guarded(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        result = create(controlplane, hpa(guard.namespace, "spare-hpa", SPARE_CONNECTOR))
        assert refused_by_guard(result), result.stderr
        assert f"Tunnel {SPARE_TUNNEL}" in result.stderr

    def test_scaled_object_targeting_the_connector_is_refused(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        result = create(controlplane, scaled_object(guard.namespace, "queue", CONNECTOR))
        assert refused_by_guard(result), result.stderr
        assert "ScaledObject queue targets" in result.stderr
        assert f"Tunnel {TUNNEL}" in result.stderr
        admitted = create(controlplane, scaled_object(guard.namespace, "web-queue", UNGUARDED))
        assert admitted.returncode == 0, admitted.stderr

    @pytest.mark.parametrize("mode", ["Auto", "Recreate", "InPlaceOrRecreate", None])
    def test_vpa_that_evicts_pods_is_refused(
        self, controlplane: ControlPlane, guard: Guarded, mode: str | None
    ) -> None:
        result = create(controlplane, vpa(guard.namespace, "sizer", CONNECTOR, mode))
        assert refused_by_guard(result), result.stderr
        assert "VerticalPodAutoscaler sizer targets" in result.stderr
        assert f"updateMode {mode or 'Auto'}" in result.stderr
        assert "spec.connector.resources" in result.stderr

    def test_vpa_that_only_recommends_is_admitted_but_cannot_be_switched_to_evict(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        for mode in ("Off", "Initial"):
            admitted = create(
                controlplane, vpa(guard.namespace, f"advisor-{mode.lower()}", CONNECTOR, mode)
            )
            assert admitted.returncode == 0, admitted.stderr
        switched = controlplane.kubectl(
            "patch",
            "verticalpodautoscalers.autoscaling.k8s.io",
            "advisor-off",
            "-n",
            guard.namespace,
            "--type=merge",
            "-p",
            '{"spec":{"updatePolicy":{"updateMode":"Auto"}}}',
            check=False,
        )
        assert refused_by_guard(switched), switched.stderr

    def test_kubectl_scale_is_refused_with_the_reason(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        before = replicas(controlplane, guard.namespace, CONNECTOR)
        result = scale(
            controlplane, guard.namespace, CONNECTOR, before + 3, kubeconfig=guard.scaler
        )
        assert refused_by_guard(result), result.stderr
        assert "kubectl scale is refused" in result.stderr
        assert f"Tunnel {TUNNEL}" in result.stderr
        assert "spec.connector.replicas" in result.stderr
        assert replicas(controlplane, guard.namespace, CONNECTOR) == before

    def test_changing_replicas_in_the_deployment_is_refused_but_other_changes_are_not(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        before = replicas(controlplane, guard.namespace, CONNECTOR)
        patched = merge_patch(controlplane, guard, CONNECTOR, {"spec": {"replicas": before + 1}})
        assert refused_by_guard(patched), patched.stderr
        assert "Changing spec.replicas is refused" in patched.stderr
        labelled = merge_patch(
            controlplane, guard, CONNECTOR, {"metadata": {"labels": {"team": "edge"}}}
        )
        assert labelled.returncode == 0, labelled.stderr

    def test_exempt_user_may_scale(self, controlplane: ControlPlane, guard: Guarded) -> None:
        target = replicas(controlplane, guard.namespace, CONNECTOR) + 1
        result = scale(controlplane, guard.namespace, CONNECTOR, target, kubeconfig=guard.exempt)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr
        assert replicas(controlplane, guard.namespace, CONNECTOR) == target

    def test_operator_server_side_apply_changes_replicas(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        target = replicas(controlplane, guard.namespace, CONNECTOR) + 1
        uid = controlplane.kubectl(
            "get",
            f"tunnels.{GROUP}",
            TUNNEL,
            "-n",
            guard.namespace,
            "-o",
            "jsonpath={.metadata.uid}",
        ).stdout
        owner = OwnerRef(TUNNEL, guard.namespace, uid)
        desired = desired_deployment(
            owner, ConnectorSpec(), image=IMAGE, token_hash="0" * 16, replicas=target
        )
        # As the operator applies: its field manager, taking spec.replicas back (force) from
        # whoever scaled before.
        controlplane.kubectl(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            "-f", "-", input=json.dumps(desired), kubeconfig=guard.operator,
        )  # fmt: skip
        assert replicas(controlplane, guard.namespace, CONNECTOR) == target

    def test_unguarded_deployment_scales_freely(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        result = scale(controlplane, guard.namespace, UNGUARDED, 3, kubeconfig=guard.scaler)
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr

    def test_controllers_keep_working_on_guarded_deployments(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        """The Deployment controller rolls out and reports status (the pods pass Pod Security
        "restricted"), and the garbage collector removes the children of a deleted Tunnel.
        Runs last in the class: it deletes the spare Tunnel."""

        def available() -> bool:
            status: dict[str, Any] = json.loads(
                controlplane.kubectl(
                    "get", "deployment", SPARE_CONNECTOR, "-n", guard.namespace, "-o", "json"
                ).stdout
            ).get("status", {})
            return status.get("availableReplicas") == 1 and status.get("updatedReplicas") == 1

        wait_until(available, timeout=60, what=f"{SPARE_CONNECTOR} to become available")
        controlplane.kubectl(
            "delete", f"tunnels.{GROUP}", SPARE_TUNNEL, "-n", guard.namespace,
            "--cascade=foreground", "--timeout=60s",
        )  # fmt: skip
        selector = f"app.kubernetes.io/instance={SPARE_TUNNEL}"

        def collected() -> bool:
            left = controlplane.kubectl(
                "get", "deployments,replicasets,pods,secrets,poddisruptionbudgets",
                "-n", guard.namespace, "-l", selector, "-o", "name",
            )  # fmt: skip
            return left.stdout.strip() == ""

        wait_until(collected, timeout=60, what=f"the children of Tunnel {SPARE_TUNNEL} to go")


# --- Warn ---------------------------------------------------------------------------------------


class TestWarn:
    MODE = "Warn"

    def test_hpa_is_admitted_with_the_warning(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        result = create(controlplane, hpa(guard.namespace, "cloudflared-hpa", CONNECTOR))
        assert warned_by_guard(result), result.stderr
        assert "HorizontalPodAutoscaler cloudflared-hpa targets" in result.stderr
        controlplane.kubectl("get", "hpa", "cloudflared-hpa", "-n", guard.namespace)

    def test_kubectl_scale_is_admitted_with_the_warning(
        self, controlplane: ControlPlane, guard: Guarded
    ) -> None:
        target = replicas(controlplane, guard.namespace, CONNECTOR) + 1
        result = scale(controlplane, guard.namespace, CONNECTOR, target, kubeconfig=guard.scaler)
        assert warned_by_guard(result), result.stderr
        assert "kubectl scale will be undone by the operator" in result.stderr
        assert replicas(controlplane, guard.namespace, CONNECTOR) == target
