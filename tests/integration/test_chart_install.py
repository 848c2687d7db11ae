"""The Helm chart installed for real: ``helm install``, ``upgrade`` and ``uninstall`` on the local
control plane, and the operator run with exactly what the chart gives it.

The operator process runs with the chart's ServiceAccount token and the ``CFTUNNEL_*`` settings
read back from the installed Deployment, so a Tunnel and a VPCService that reach Ready prove the
chart's RBAC and settings are enough; ``kubectl auth can-i`` and a real request with the same
token prove the RBAC is not more than needed.

Cluster-scoped objects (ClusterRole, ClusterRoleBinding, the guard's admission policies, CRDs) are
shared with every other test of the session: each release has its own ``fullnameOverride`` and
is uninstalled when its fixture ends, and the guard is installed in ``Warn`` mode only, which
never refuses a request. Namespaces use the ``chart-`` prefix, which the session operator (it
watches ``t-*``) never touches.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cftunnel_devtools.controlplane import ControlPlane, free_port, repo_root
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    get_object,
    token_secret,
    vpcservice_manifest,
    wait_for,
    wait_for_condition,
)
from cftunnel_operator.api.names import FINALIZER
from cftunnel_operator.kube.guards import WHY_NO_AUTOSCALING

pytestmark = pytest.mark.controlplane

CHART = repo_root() / "charts" / "cftunnel-operator"
TUNNELS = "tunnels.cftunnel.dev"
VPCSERVICES = "vpcservices.cftunnel.dev"
CRD_NAMES = ("tunnels.cftunnel.dev", "vpcservices.cftunnel.dev")
CREDENTIALS_SECRET = "cloudflare-api-token"
# What the operator process may differ in from the chart's Deployment, and why: the metrics and
# health ports (the pod has its own network namespace; here they would collide with other
# processes on the host) and the token file (the kubelet mounts the Secret at that path in the
# pod; here the same token is written to a local file). Everything else is the chart's.
LOCAL_OVERRIDES = ("CFTUNNEL_METRICS_PORT", "CFTUNNEL_HEALTH_PORT", "CFTUNNEL_API_TOKEN_FILE")


@dataclass(frozen=True)
class Account:
    account_id: str
    token: str
    admin: Any  # cloudflare_emulator.AdminClient


@dataclass(frozen=True)
class Release:
    """An installed release of the chart, watching one namespace of its own."""

    name: str
    namespace: str
    fullname: str
    values: Path
    watched: str
    """The one namespace in ``watchNamespaces``."""
    other: str
    """A namespace the release does not watch (holds a Secret the operator must not read)."""
    account: Account

    @property
    def service_account(self) -> str:
        return self.fullname  # serviceAccount.name is empty: the release's full name

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def deployment_env(controlplane: ControlPlane, release: Release) -> dict[str, str]:
    """The operator container's environment as the installed Deployment has it."""
    deployment = json.loads(
        controlplane.kubectl(
            "get", "deployment", release.fullname, "-n", release.namespace, "-o", "json"
        ).stdout
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {}
    for item in container["env"]:
        assert "valueFrom" not in item, f"{item['name']} is not a plain value"
        env[item["name"]] = item.get("value", "")
    return env


def can_i(controlplane: ControlPlane, release: Release, *args: str) -> bool:
    result = controlplane.kubectl("auth", "can-i", *args, f"--as={release.username}", check=False)
    return result.stdout.strip() == "yes"


def live_tunnels(account: Account) -> list[dict[str, Any]]:
    return [t for t in account.admin.tunnels(account.account_id) if not t.get("deleted_at")]


def helm_uninstall(controlplane: ControlPlane, name: str, namespace: str) -> None:
    if controlplane.helm("status", name, "-n", namespace, check=False).returncode == 0:
        controlplane.helm("uninstall", name, "-n", namespace, "--wait", "--timeout", "60s")


def drop_finalizers(controlplane: ControlPlane, namespace: str) -> None:
    """Let a namespace go when a failed test left objects that no operator will finalize."""
    names = controlplane.kubectl(
        "get", f"{VPCSERVICES},{TUNNELS}", "-n", namespace, "-o", "name", check=False
    ).stdout.split()
    for name in names:
        controlplane.kubectl(
            "patch", name, "-n", namespace, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def account(emulator: Any) -> Account:
    from cloudflare_emulator import AdminClient

    admin = AdminClient(emulator.admin_url)
    account_id = uuid.uuid4().hex
    token = secrets.token_urlsafe(30)
    admin.seed(account_id, token)
    return Account(account_id, token, admin)


@pytest.fixture(scope="module")
def release(
    controlplane: ControlPlane,
    crds: list[str],
    emulator: Any,
    account: Account,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """The chart installed in namespaced mode, guard in Warn mode, CRDs left to the session.

    ``crds.enabled=false`` because the session has installed the same CRDs with kubectl: a
    second owner would be refused by Helm (see the CRD test below for taking them over).
    ``cloudflare.apiUrl`` points at the emulator, so the rendered setting is used as it is.
    """
    suffix = secrets.token_hex(3)
    name = f"cft-{suffix}"
    release = Release(
        name=name,
        namespace=f"chart-system-{suffix}",
        fullname=f"cftunnel-{suffix}",
        values=tmp_path_factory.mktemp("chart") / "values.yaml",
        watched=f"chart-{suffix}-a",
        other=f"chart-{suffix}-b",
        account=account,
    )
    values = {
        "fullnameOverride": release.fullname,
        "crds": {"enabled": False},
        "watchNamespaces": [release.watched],
        "guard": {"mode": "Warn"},
        "cloudflare": {
            "apiUrl": emulator.url,
            "accountId": account.account_id,
            "existingSecret": CREDENTIALS_SECRET,
        },
    }
    release.values.write_text(yaml.safe_dump(values))
    for namespace in (release.namespace, release.watched, release.other):
        controlplane.kubectl("create", "namespace", namespace)
    apply(controlplane, token_secret(release.namespace, account.token, name=CREDENTIALS_SECRET))
    # Another namespace's credentials: what namespaced RBAC must keep the operator away from.
    apply(controlplane, token_secret(release.other, "not-for-the-operator", name="elsewhere"))
    try:
        controlplane.helm(
            "install", name, str(CHART), "-n", release.namespace, "-f", str(release.values),
            "--wait", "--timeout", "90s",
        )  # fmt: skip
        yield release
    finally:
        helm_uninstall(controlplane, name, release.namespace)
        drop_finalizers(controlplane, release.watched)
        for namespace in (release.watched, release.other, release.namespace):
            controlplane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chart_operator(
    controlplane: ControlPlane, release: Release, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator process as the chart's Deployment would run it."""
    work = tmp_path_factory.mktemp("chart-operator")
    env = deployment_env(controlplane, release)
    assert set(LOCAL_OVERRIDES) <= set(env), sorted(env)
    token_file = work / "token"
    secret = json.loads(
        controlplane.kubectl(
            "get", "secret", CREDENTIALS_SECRET, "-n", release.namespace, "-o", "json"
        ).stdout
    )
    token_file.write_bytes(base64.b64decode(secret["data"]["token"]))
    token_file.chmod(0o600)
    health_port = free_port()
    env.update(
        {
            "CFTUNNEL_METRICS_PORT": str(free_port()),
            "CFTUNNEL_HEALTH_PORT": str(health_port),
            "CFTUNNEL_API_TOKEN_FILE": str(token_file),
            # Outside a pod Kopf logs in from the kubeconfig: the chart ServiceAccount's token.
            "KUBECONFIG": str(
                controlplane.service_account_kubeconfig(release.namespace, release.service_account)
            ),
        }
    )
    process = OperatorProcess(env=env, log_path=work / "operator.log", health_port=health_port)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def ready_objects(
    controlplane: ControlPlane, release: Release, chart_operator: OperatorProcess
) -> dict[str, dict[str, Any]]:
    """A Tunnel and a VPCService (tunnelRef, hostname host) in the watched namespace, Ready.

    Neither names credentials: the chart's default account and token are used.
    """
    namespace = release.watched
    apply(
        controlplane,
        {
            "apiVersion": "cftunnel.dev/v1alpha1",
            "kind": "Tunnel",
            "metadata": {"name": "office", "namespace": namespace},
            "spec": {"connector": {"replicas": 2}},
        },
        vpcservice_manifest(
            namespace,
            "orders-api",
            tunnelRef={"name": "office"},
            type="http",
            host={"hostname": "orders.internal.example"},
            ports={"http": 8080},
        ),
    )
    try:
        tunnel = wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=90)
        service = wait_for_condition(
            controlplane, VPCSERVICES, namespace, "orders-api", "Ready", timeout=60
        )
    except AssertionError:
        print(chart_operator.log_tail(80))
        raise
    return {"tunnel": tunnel, "service": service}


# --- tests ----------------------------------------------------------------------------------------


def test_chart_lints_with_the_values_it_is_installed_with(
    controlplane: ControlPlane, release: Release
) -> None:
    result = controlplane.helm("lint", "--strict", str(CHART), "-f", str(release.values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_operator_with_chart_serviceaccount_and_settings_makes_objects_ready(
    controlplane: ControlPlane,
    release: Release,
    chart_operator: OperatorProcess,
    ready_objects: dict[str, dict[str, Any]],
) -> None:
    env = deployment_env(controlplane, release)
    assert env["CFTUNNEL_WATCH_NAMESPACES"] == release.watched
    assert env["CFTUNNEL_GUARD_MODE"] == "Warn"
    tunnel, service = ready_objects["tunnel"], ready_objects["service"]
    assert tunnel["status"]["accountId"] == release.account.account_id
    assert tunnel["status"]["readyReplicas"] == 2
    assert [t["id"] for t in live_tunnels(release.account)] == [tunnel["status"]["tunnelId"]]
    assert service["status"]["tunnelId"] == tunnel["status"]["tunnelId"]
    assert service["status"]["serviceId"] in service["status"]["binding"]
    [stored] = release.account.admin.vpc_services(release.account.account_id)
    assert stored["service_id"] == service["status"]["serviceId"]
    # Nothing the operator asked the apiserver for was refused.
    assert "forbidden" not in chart_operator.log_text().lower(), chart_operator.log_tail(40)


def test_guard_in_warn_mode_admits_a_scale_with_the_reason(
    controlplane: ControlPlane, release: Release, ready_objects: dict[str, dict[str, Any]]
) -> None:
    def warned() -> str | None:
        result = controlplane.kubectl(
            "scale", "deployment", "office-cloudflared", "-n", release.watched,
            "--replicas=5", "--dry-run=server", check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stderr if WHY_NO_AUTOSCALING in result.stderr else None

    message = wait_for(warned, timeout=30, what="the guard's warning")
    assert "Warning:" in message
    assert "office" in message


def test_namespaced_rbac_grants_no_more_than_needed(
    controlplane: ControlPlane, release: Release, chart_operator: OperatorProcess
) -> None:
    # What the operator needs, where it works.
    for verb, resource in (
        ("get", "secrets"),
        ("create", "deployments.apps"),
        ("patch", "deployments.apps/scale"),
        ("patch", "tunnels.cftunnel.dev/status"),
        ("create", "events"),
    ):
        assert can_i(controlplane, release, verb, resource, "-n", release.watched), resource
    assert can_i(controlplane, release, "get", "namespaces")
    # Nothing in a namespace it does not watch, and nothing cluster-wide beyond reads.
    for verb, resource in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "deployments.apps"),
        ("list", "tunnels.cftunnel.dev"),
    ):
        assert not can_i(controlplane, release, verb, resource, "-n", release.other), resource
    assert not can_i(controlplane, release, "list", "secrets", "--all-namespaces")
    assert not can_i(controlplane, release, "create", "namespaces")
    assert not can_i(controlplane, release, "create", "clusterrolebindings")

    # The same with the ServiceAccount's own token, as the operator authenticates.
    kubeconfig = Path(chart_operator.env["KUBECONFIG"])
    refused = controlplane.kubectl(
        "get", "secret", "elsewhere", "-n", release.other, kubeconfig=kubeconfig, check=False
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower(), refused.stderr
    everywhere = controlplane.kubectl(
        "get", "secrets", "--all-namespaces", kubeconfig=kubeconfig, check=False
    )
    assert everywhere.returncode != 0
    assert "forbidden" in everywhere.stderr.lower(), everywhere.stderr
    # Where it works it reads the Secrets it is pointed at, one by one, but lists none.
    allowed = controlplane.kubectl(
        "get", "secret", "cloudflare-api-token", "-n", release.watched,
        kubeconfig=kubeconfig, check=False,
    )  # fmt: skip
    assert "forbidden" not in allowed.stderr.lower(), allowed.stderr
    listing = controlplane.kubectl(
        "get", "secrets", "-n", release.watched, kubeconfig=kubeconfig, check=False
    )
    assert "forbidden" in listing.stderr.lower(), listing.stderr

    # No wildcard anywhere, and Roles only where the operator watches.
    selector = f"app.kubernetes.io/instance={release.name}"
    objects = json.loads(
        controlplane.kubectl(
            "get", "clusterroles,roles", "--all-namespaces", "-l", selector, "-o", "json"
        ).stdout
    )["items"]
    kinds = sorted((o["kind"], o["metadata"].get("namespace", "")) for o in objects)
    assert kinds == [("ClusterRole", ""), ("Role", release.watched)]
    for obj in objects:
        for rule in obj["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (obj["kind"], rule)
            assert "nonResourceURLs" not in rule
    [cluster_role] = [o for o in objects if o["kind"] == "ClusterRole"]
    verbs = {verb for rule in cluster_role["rules"] for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "watch"}


def test_helm_upgrade_changes_the_operator_settings(
    controlplane: ControlPlane, release: Release
) -> None:
    assert deployment_env(controlplane, release)["CFTUNNEL_LOG_LEVEL"] == "info"
    controlplane.helm(
        "upgrade", release.name, str(CHART), "-n", release.namespace, "-f", str(release.values),
        "--set", "logLevel=debug", "--wait", "--timeout", "90s",
    )  # fmt: skip
    env = deployment_env(controlplane, release)
    assert env["CFTUNNEL_LOG_LEVEL"] == "debug"
    assert env["CFTUNNEL_WATCH_NAMESPACES"] == release.watched
    history = json.loads(
        controlplane.helm("history", release.name, "-n", release.namespace, "-o", "json").stdout
    )
    assert [entry["revision"] for entry in history] == [1, 2]


def test_uninstall_keeps_tunnels_until_an_operator_deletes_them(
    controlplane: ControlPlane,
    release: Release,
    chart_operator: OperatorProcess,
    ready_objects: dict[str, dict[str, Any]],
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    namespace, account = release.watched, release.account
    tunnel_id = ready_objects["tunnel"]["status"]["tunnelId"]
    # The chart's Deployment goes with the release: so does the process standing in for it.
    chart_operator.stop()
    controlplane.helm("uninstall", release.name, "-n", release.namespace, "--wait")

    # The release's cluster-scoped objects are gone ...
    leftovers = controlplane.kubectl(
        "get", "clusterroles,clusterrolebindings,validatingadmissionpolicies,"
        "validatingadmissionpolicybindings", "-l", f"app.kubernetes.io/instance={release.name}",
        "-o", "name",
    ).stdout.split()  # fmt: skip
    assert leftovers == []
    # ... the Tunnels and their Cloudflare objects are not, and keep their finalizers.
    for resource, name in ((TUNNELS, "office"), (VPCSERVICES, "orders-api")):
        obj = get_object(controlplane, resource, namespace, name)
        assert FINALIZER in obj["metadata"]["finalizers"]
    assert [t["id"] for t in live_tunnels(account)] == [tunnel_id]
    assert len(account.admin.vpc_services(account.account_id)) == 1

    # Deleting them with no operator running only marks them: the finalizers hold them.
    controlplane.kubectl("delete", f"{VPCSERVICES},{TUNNELS}", "--all", "-n", namespace,
                         "--wait=false")  # fmt: skip
    time.sleep(3)  # the window under observation: nothing may remove them meanwhile
    tunnel = get_object(controlplane, TUNNELS, namespace, "office")
    assert tunnel["metadata"]["deletionTimestamp"]
    assert [t["id"] for t in live_tunnels(account)] == [tunnel_id]

    # An operator back for the namespace (a reinstalled chart) finishes the deletion cleanly.
    token_file = tmp_path / "token"
    token_file.write_text(account.token)
    start_operator(
        namespace,
        CFTUNNEL_ACCOUNT_ID=account.account_id,
        CFTUNNEL_API_TOKEN_FILE=str(token_file),
    )

    def all_gone() -> bool:
        left = controlplane.kubectl(
            "get", f"{VPCSERVICES},{TUNNELS}", "-n", namespace, "-o", "name"
        ).stdout.split()
        return not left

    wait_for(all_gone, timeout=90, what="the Tunnel and VPCService to be deleted")
    assert live_tunnels(account) == []
    assert account.admin.vpc_services(account.account_id) == []


def test_chart_takes_over_crds_applied_with_kubectl_and_keeps_them_on_uninstall(
    controlplane: ControlPlane, crds: list[str]
) -> None:
    """The session's CRDs were applied with kubectl, as users do from ``crds/``. Helm adopts
    existing objects that carry its ownership label and annotations; with ``crds.keep`` (the
    default) ``helm uninstall`` then leaves them, and every Tunnel with them."""
    suffix = secrets.token_hex(3)
    name, namespace = f"crds-{suffix}", f"chart-crds-{suffix}"
    controlplane.kubectl("create", "namespace", namespace)
    ownership = {
        "meta.helm.sh/release-name": name,
        "meta.helm.sh/release-namespace": namespace,
    }

    def tunnel_count() -> int:
        out = controlplane.kubectl("get", TUNNELS, "--all-namespaces", "-o", "name").stdout
        return len(out.split())

    try:
        for crd in CRD_NAMES:
            controlplane.kubectl(
                "label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite"
            )
            controlplane.kubectl(
                "annotate", "crd", crd, *(f"{k}={v}" for k, v in ownership.items()), "--overwrite"
            )
        before = tunnel_count()
        controlplane.helm(
            "install", name, str(CHART), "-n", namespace, "--set", f"fullnameOverride={name}",
            "--set", "guard.enabled=false", "--set", "rbac.create=false",
            "--set", "metrics.service.enabled=false",
        )  # fmt: skip
        manifest = controlplane.helm("get", "manifest", name, "-n", namespace).stdout
        kinds = [doc["kind"] for doc in yaml.safe_load_all(manifest) if doc]
        assert kinds.count("CustomResourceDefinition") == len(CRD_NAMES)
        for crd in CRD_NAMES:
            live = json.loads(controlplane.kubectl("get", "crd", crd, "-o", "json").stdout)
            assert live["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        result = controlplane.helm("uninstall", name, "-n", namespace, "--wait")
        assert "kept due to the resource policy" in result.stdout + result.stderr
        for crd in CRD_NAMES:
            controlplane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                                 f"crd/{crd}")  # fmt: skip
        assert tunnel_count() == before
    finally:
        helm_uninstall(controlplane, name, namespace)
        # Leave the session's CRDs owned by nobody, as the session fixture made them.
        for crd in CRD_NAMES:
            controlplane.kubectl("annotate", "crd", crd, *(f"{k}-" for k in ownership), check=False)
            controlplane.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by-", check=False)
        controlplane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
