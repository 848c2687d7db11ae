"""The Helm chart, rendered by the real helm binary: it lints, renders the objects each mode
needs with least-privilege RBAC and a restricted pod, passes every operator setting to the
operator as the ``CFTUNNEL_*`` variables it accepts, and its schema refuses unknown values.

Only the last test needs the control plane (the apiserver validates the rendered objects);
the others need nothing but helm.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cftunnel_devtools.controlplane import ControlPlane, provision_binaries, repo_root
from cftunnel_operator.config import ConfigError, OperatorConfig

REPO = repo_root()
CHART = REPO / "charts" / "cftunnel-operator"
RELEASE = "cft"
RELEASE_NAMESPACE = "cftunnel-system"
FULLNAME = f"{RELEASE}-cftunnel-operator"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"


def _kubernetes_version() -> str:
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("KUBERNETES_VERSION missing from hack/versions.env")


@pytest.fixture(scope="session")
def helm() -> Path:
    return provision_binaries() / "helm"


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm_template(helm: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, namespace: str = RELEASE_NAMESPACE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(helm),
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                namespace,
                "--kube-version",
                _kubernetes_version(),
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    return run


@pytest.fixture(scope="session")
def render(helm_template: Callable[..., subprocess.CompletedProcess[str]]) -> Render:
    """Render the chart with ``--set``-style arguments; return the objects."""

    def run(*args: str, namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
        result = helm_template(*args, namespace=namespace)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


@pytest.fixture(scope="session")
def default_objects(render: Render) -> list[dict[str, Any]]:
    return render()


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in _container(objects)["env"]}


def _rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] == kind for rule in o.get("rules", [])]


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _expand(group: str, resources: str, verbs: str) -> set[tuple[str, str, str]]:
    return {(group, r, v) for r in resources.split() for v in verbs.split()}


NAMESPACED_GRANTS = (
    _expand("cftunnel.dev", "tunnels vpcservices", "get list watch patch")
    | _expand("cftunnel.dev", "tunnels/status vpcservices/status", "get patch")
    | _expand("cftunnel.dev", "tunnels/finalizers vpcservices/finalizers", "update")
    | _expand("", "secrets", "get create patch")
    | _expand("", "services", "get")
    | _expand("apps", "deployments", "get list watch create patch")
    | _expand("apps", "deployments/scale", "patch")
    | _expand("policy", "poddisruptionbudgets", "get create patch")
    | _expand("autoscaling", "horizontalpodautoscalers", "get list watch")
    | _expand("keda.sh", "scaledobjects", "get list watch")
    | _expand("autoscaling.k8s.io", "verticalpodautoscalers", "get list watch")
    | _expand("", "events", "create patch")
    | _expand("events.k8s.io", "events", "create patch")
)
CLUSTER_GRANTS = _expand("apiextensions.k8s.io", "customresourcedefinitions", "get list watch") | (
    _expand("", "namespaces", "get list watch")
)
# The guard's ValidatingAdmissionPolicy (another template of the chart) adds these kinds.
GUARD_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_helm_lint_passes(helm: Path) -> None:
    for extra in ([], ["--strict"], ["--strict", "--set", "watchNamespaces={a,b}"]):
        result = subprocess.run(
            [str(helm), "lint", str(CHART), *extra], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_default_render_has_the_operator_objects(default_objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in default_objects if o["kind"] not in GUARD_KINDS)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Service",
            "ServiceAccount",
        ]
    )
    crds = {
        o["metadata"]["name"] for o in default_objects if o["kind"] == "CustomResourceDefinition"
    }
    assert crds == {"tunnels.cftunnel.dev", "vpcservices.cftunnel.dev"}
    for obj in default_objects:
        if obj["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"].get("namespace") in (None, RELEASE_NAMESPACE), obj["kind"]


def test_rendered_crds_equal_the_source_crds(default_objects: list[dict[str, Any]]) -> None:
    for path in sorted((REPO / "crds").glob("*.yaml")):
        source = yaml.safe_load(path.read_text())
        rendered = _one(default_objects, "CustomResourceDefinition", source["metadata"]["name"])
        annotations = rendered["metadata"].pop("annotations")
        assert annotations == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
        }
        assert rendered == source


def test_crds_can_be_left_out_or_not_kept(render: Render) -> None:
    assert not [
        o for o in render("--set", "crds.enabled=false") if o["kind"].endswith("Definition")
    ]
    for crd in [o for o in render("--set", "crds.keep=false") if o["kind"].endswith("Definition")]:
        assert "annotations" not in crd["metadata"]


def test_deployment_runs_one_operator_with_a_restricted_pod(
    default_objects: list[dict[str, Any]],
) -> None:
    deployment = _one(default_objects, "Deployment", FULLNAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(default_objects)
    assert container["image"] == "ghcr.io/cftunnel-operator/cftunnel-operator:0.1.0"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9090,
        "health": 8080,
    }
    assert container["resources"]["limits"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # Without credentials nothing is mounted and the operator is told of no token file.
    assert "CFTUNNEL_API_TOKEN_FILE" not in _env(default_objects)


def test_image_digest_pins_the_image(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    objects = render("--set", f"image.digest={digest}", "--set", "image.tag=1.2.3")
    assert _container(objects)["image"].endswith(f"cftunnel-operator:1.2.3@{digest}")


def test_deployment_env_carries_every_setting(render: Render, tmp_path: Path) -> None:
    values = {
        "cloudflare": {
            "apiUrl": "http://cloudflare-emulator.test:8787/client/v4",
            "accountId": ACCOUNT_ID,
            "existingSecret": "cf-token",
            "existingSecretKey": "api-token",
        },
        "watchNamespaces": ["edge", "shop"],
        "rateLimit": 500,
        "rateWindowSeconds": 60,
        "resyncSeconds": 120,
        "guard": {"mode": "Warn"},
        "cloudflared": {"image": "docker.io/cloudflare/cloudflared:2026.8.2"},
        "clusterDomain": "cluster.example",
        "tunnelNamePrefix": "eu1-",
        "logFormat": "text",
        "logLevel": "debug",
        "metrics": {"port": 9191},
        "health": {"port": 8181},
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.test:3128"}],
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    objects = render("--values", str(values_file))
    env = _env(objects)
    token_file = "/var/run/secrets/cftunnel.dev/cloudflare/token"
    assert {k: v for k, v in env.items() if k.startswith("CFTUNNEL_")} == {
        "CFTUNNEL_CLOUDFLARE_API_URL": "http://cloudflare-emulator.test:8787/client/v4",
        "CFTUNNEL_ACCOUNT_ID": ACCOUNT_ID,
        "CFTUNNEL_API_TOKEN_FILE": token_file,
        "CFTUNNEL_WATCH_NAMESPACES": "edge,shop",
        "CFTUNNEL_RATE_LIMIT": "500",
        "CFTUNNEL_RATE_WINDOW_SECONDS": "60",
        "CFTUNNEL_RESYNC_SECONDS": "120",
        "CFTUNNEL_GUARD_MODE": "Warn",
        "CFTUNNEL_CLOUDFLARED_IMAGE": "docker.io/cloudflare/cloudflared:2026.8.2",
        "CFTUNNEL_CLUSTER_DOMAIN": "cluster.example",
        "CFTUNNEL_TUNNEL_NAME_PREFIX": "eu1-",
        "CFTUNNEL_LOG_FORMAT": "text",
        "CFTUNNEL_LOG_LEVEL": "debug",
        "CFTUNNEL_METRICS_PORT": "9191",
        "CFTUNNEL_HEALTH_PORT": "8181",
    }
    assert env["HTTPS_PROXY"] == "http://proxy.test:3128"
    # The operator's own settings model accepts exactly what the chart passes.
    config = OperatorConfig.from_env({k: v for k, v in env.items() if k.startswith("CFTUNNEL_")})
    assert config.watch_namespaces == ("edge", "shop")
    assert config.api_token_file == Path(token_file)
    assert config.metrics_port == 9191
    # The token comes from the named key of the existing Secret, mounted read-only.
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "cloudflare-credentials")
    assert volume["secret"]["secretName"] == "cf-token"
    assert volume["secret"]["items"] == [{"key": "api-token", "path": "token"}]
    mount = next(m for m in _container(objects)["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {
        "name": "cloudflare-credentials",
        "mountPath": "/var/run/secrets/cftunnel.dev/cloudflare",
        "readOnly": True,
    }
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_default_env_is_accepted_by_the_operator(default_objects: list[dict[str, Any]]) -> None:
    env = _env(default_objects)
    config = OperatorConfig.from_env(env)
    assert config.watch_namespaces == ()
    assert (config.metrics_port, config.health_port) == (9090, 8080)
    assert config.guard_mode == "Enforce"
    with pytest.raises(ConfigError):  # the comparison is not vacuous
        OperatorConfig.from_env({**env, "CFTUNNEL_GUARD_MODE": "Block"})


def test_guard_warn_mode_renders(render: Render) -> None:
    objects = render("--set", "guard.mode=Warn")
    assert _env(objects)["CFTUNNEL_GUARD_MODE"] == "Warn"


def test_chart_created_secret_holds_the_token(render: Render) -> None:
    objects = render("--set", "cloudflare.apiToken=s3cr3t-token")
    secret = _one(objects, "Secret", f"{FULLNAME}-cloudflare")
    assert secret["data"] == {"token": "czNjcjN0LXRva2Vu"}
    env = _env(objects)
    assert env["CFTUNNEL_API_TOKEN_FILE"] == "/var/run/secrets/cftunnel.dev/cloudflare/token"
    assert "s3cr3t-token" not in json.dumps(_one(objects, "Deployment"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "notAValue=1"], "additional properties 'notAValue' not allowed"),
        (["--set", "metrics.notAValue=1"], "additional properties 'notAValue' not allowed"),
        (["--set", "guard.mode=Block"], "guard"),
        (["--set", "logFormat=xml"], "logFormat"),
        (["--set", "cloudflare.apiToken=a", "--set", "cloudflare.existingSecret=b"], "only one"),
        (["--set", "serviceAccount.create=false"], "serviceAccount.name"),
        (
            [
                "--set",
                "metrics.service.enabled=false",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ],
            "metrics.service.enabled",
        ),
    ],
)
def test_bad_values_are_refused(
    helm_template: Callable[..., subprocess.CompletedProcess[str]], args: list[str], message: str
) -> None:
    result = helm_template(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_cluster_wide_rbac_grants_exactly_what_the_operator_needs(
    default_objects: list[dict[str, Any]],
) -> None:
    assert _grants(_rules(default_objects, "ClusterRole")) == NAMESPACED_GRANTS | CLUSTER_GRANTS
    assert not _rules(default_objects, "Role")
    binding = _one(default_objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"]["name"] == FULLNAME
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}
    ]


def test_namespaced_mode_grants_roles_in_each_namespace_only(render: Render) -> None:
    objects = render("--set", "watchNamespaces={edge,shop}")
    assert _grants(_rules(objects, "ClusterRole")) == CLUSTER_GRANTS
    assert not [g for g in _grants(_rules(objects, "ClusterRole")) if g[1] == "secrets"]
    roles = [o for o in objects if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["edge", "shop"]
    for role in roles:
        assert _grants(role["rules"]) == NAMESPACED_GRANTS
    bindings = [o for o in objects if o["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["edge", "shop"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    assert _env(objects)["CFTUNNEL_WATCH_NAMESPACES"] == "edge,shop"


def test_no_rbac_rule_uses_a_wildcard(render: Render) -> None:
    for args in ([], ["--set", "watchNamespaces={edge}"]):
        for obj in render(*args):
            for rule in obj.get("rules", []) if obj["kind"] in {"Role", "ClusterRole"} else []:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], (obj["kind"], rule)
                assert "nonResourceURLs" not in rule
                assert "resourceNames" not in rule


def test_rbac_can_be_left_out(render: Render) -> None:
    kinds = {o["kind"] for o in render("--set", "rbac.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_metrics_service_and_service_monitor(render: Render) -> None:
    objects = render(
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    service = _one(objects, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_network_policy_admits_only_the_needed_traffic(render: Render) -> None:
    policy = _one(render("--set", "networkPolicy.enabled=true"), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {"metrics", "health"}
    egress = {
        frozenset((p["port"], p["protocol"]) for p in rule["ports"]): rule.get("to")
        for rule in spec["egress"]
    }
    assert egress == {
        frozenset({(53, "UDP"), (53, "TCP")}): None,
        frozenset({(443, "TCP"), (6443, "TCP")}): [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        frozenset({(443, "TCP")}): [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
    }


@pytest.fixture
def second_namespace(controlplane: ControlPlane, namespace: str) -> Iterator[str]:
    name = f"{namespace[:55]}-b"
    controlplane.kubectl("create", "namespace", name)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.controlplane
def test_rendered_manifests_are_valid_objects_for_the_apiserver_and_restricted_pods(
    controlplane: ControlPlane,
    helm_template: Callable[..., subprocess.CompletedProcess[str]],
    namespace: str,
    second_namespace: str,
) -> None:
    variants = [
        [],
        [
            "--set",
            f"watchNamespaces={{{namespace},{second_namespace}}}",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "cloudflare.apiToken=token",
            "--set",
            f"cloudflare.accountId={ACCOUNT_ID}",
            "--set",
            "guard.mode=Warn",
        ],
    ]
    # Pod Security admission warns about workloads whose pods would break the restricted level.
    controlplane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted"
    )
    for args in variants:
        rendered = helm_template(*args, namespace=namespace)
        assert rendered.returncode == 0, rendered.stderr
        applied = controlplane.kubectl(
            "apply", "--dry-run=server", "-f", "-", input=rendered.stdout, check=False
        )
        assert applied.returncode == 0, applied.stderr
        assert "deployment.apps/" in applied.stdout
        assert "PodSecurity" not in applied.stderr, applied.stderr
