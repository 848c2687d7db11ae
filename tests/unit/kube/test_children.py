"""The desired children of a Tunnel: token Secret, cloudflared Deployment and PodDisruptionBudget,
as the design asks for them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cftunnel_operator.api.names import ANNOTATION_TOKEN_HASH, API_VERSION, TUNNEL_KIND
from cftunnel_operator.api.tunnel import ConnectorSpec
from cftunnel_operator.kube.children import (
    DEFAULT_RESOURCES,
    TOKEN_FILE,
    OwnerRef,
    deployment_name,
    desired_deployment,
    desired_pdb,
    desired_token_secret,
    pdb_name,
    token_hash,
    token_secret_name,
)

TUNNEL = OwnerRef(name="office", namespace="edge", uid="0b6a2f0e-6c2c-4a55-9b3e-1f1f7d0d2c11")
TOKEN = "eyJhIjoiMDEyMzQ1Njc4OWFiY2RlZiIsInQiOiJmNzBmZjk4NSIsInMiOiJzZWNyZXQifQ=="
IMAGE = "docker.io/cloudflare/cloudflared:2026.8.2"

OPERATOR_LABELS = {
    "app.kubernetes.io/name": "cloudflared",
    "app.kubernetes.io/instance": "office",
    "app.kubernetes.io/managed-by": "cftunnel-operator",
    "cftunnel.dev/tunnel": "office",
}
SELECTOR = {"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": "office"}


def deployment(spec: ConnectorSpec | None = None, *, replicas: int = 2, token: str = TOKEN) -> Any:
    return desired_deployment(
        TUNNEL,
        spec or ConnectorSpec(),
        image=IMAGE,
        token_hash=token_hash(token),
        replicas=replicas,
    )


def pod_spec(obj: Any) -> Any:
    return obj["spec"]["template"]["spec"]


def container(obj: Any) -> Any:
    (only,) = pod_spec(obj)["containers"]
    return only


# --- names, metadata, owner ----------------------------------------------------------------


def test_child_names_follow_the_tunnel_name() -> None:
    assert deployment_name("office") == "office-cloudflared"
    assert pdb_name("office") == "office-cloudflared"
    assert token_secret_name("office") == "office-cloudflared-token"


@pytest.mark.parametrize(
    ("obj", "name"),
    [
        (desired_token_secret(TUNNEL, TOKEN), "office-cloudflared-token"),
        (deployment(), "office-cloudflared"),
        (desired_pdb(TUNNEL), "office-cloudflared"),
    ],
    ids=["secret", "deployment", "pdb"],
)
def test_every_child_is_named_labelled_and_owned_by_the_tunnel(obj: Any, name: str) -> None:
    metadata = obj["metadata"]
    assert metadata["name"] == name
    assert metadata["namespace"] == "edge"
    assert OPERATOR_LABELS.items() <= metadata["labels"].items()
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": TUNNEL_KIND,
            "name": "office",
            "uid": TUNNEL.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    json.dumps(obj)  # plain JSON, ready for server-side apply


def test_builders_are_pure_and_return_fresh_objects() -> None:
    first, second = deployment(), deployment()
    assert first == second
    first["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "1Gi"
    assert deployment() == second
    assert DEFAULT_RESOURCES["limits"] == {"memory": "512Mi"}


# --- token Secret -----------------------------------------------------------------------------


def test_token_secret_holds_the_token_under_data() -> None:
    secret = desired_token_secret(TUNNEL, TOKEN)
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN


def test_token_hash_is_a_short_stable_digest_that_does_not_reveal_the_token() -> None:
    digest = token_hash(TOKEN)
    assert digest == token_hash(TOKEN)
    assert len(digest) == 16
    assert all(c in "0123456789abcdef" for c in digest)
    assert digest not in TOKEN
    assert token_hash(TOKEN + "x") != digest


# --- Deployment: shape and rollout ---------------------------------------------------------


def test_deployment_runs_the_fixed_replica_count_passed_in() -> None:
    obj = deployment(ConnectorSpec(replicas=5), replicas=3)
    assert obj["apiVersion"] == "apps/v1"
    assert obj["kind"] == "Deployment"
    assert obj["spec"]["replicas"] == 3
    assert deployment(replicas=0)["spec"]["replicas"] == 0


def test_rollout_never_drops_below_the_replica_count() -> None:
    spec = deployment()["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert 0 < spec["revisionHistoryLimit"] <= 5


def test_selector_uses_only_the_stable_name_and_instance_labels() -> None:
    obj = deployment()
    assert obj["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert SELECTOR.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def test_operator_labels_win_over_pod_labels() -> None:
    spec = ConnectorSpec(
        pod_labels={
            "team": "edge",
            "app.kubernetes.io/instance": "hijack",
            "cftunnel.dev/tunnel": "x",
        }
    )
    labels = deployment(spec)["spec"]["template"]["metadata"]["labels"]
    assert labels == {**OPERATOR_LABELS, "team": "edge"}


def test_pod_annotations_pass_through_and_carry_the_token_hash() -> None:
    spec = ConnectorSpec(
        pod_annotations={"prometheus.io/scrape": "true", ANNOTATION_TOKEN_HASH: "x"}
    )
    annotations = deployment(spec)["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", ANNOTATION_TOKEN_HASH: token_hash(TOKEN)}


def test_a_token_change_changes_the_pod_template_and_nothing_else() -> None:
    before, after = deployment(token=TOKEN), deployment(token="another-token")
    assert before["spec"]["template"] != after["spec"]["template"]
    before_annotations = before["spec"]["template"]["metadata"].pop("annotations")
    after_annotations = after["spec"]["template"]["metadata"].pop("annotations")
    assert before_annotations[ANNOTATION_TOKEN_HASH] != after_annotations[ANNOTATION_TOKEN_HASH]
    assert before == after


# --- Deployment: the cloudflared container -----------------------------------------------------


def test_cloudflared_runs_the_token_file_with_flags_in_their_places() -> None:
    spec = ConnectorSpec(protocol="auto", log_level="warn")
    main = container(deployment(spec))
    assert main["name"] == "cloudflared"
    assert main["image"] == IMAGE
    assert "command" not in main  # the image's entrypoint keeps --no-autoupdate
    args = main["args"]
    assert args == [
        "tunnel",
        "--no-autoupdate",
        "--metrics",
        "0.0.0.0:2000",
        "--loglevel",
        "warn",
        "--protocol",
        "auto",
        "--label",
        "$(POD_NAME)",
        "run",
        "--token-file",
        "/etc/cloudflared/token/token",
    ]
    run = args.index("run")
    assert args[0] == "tunnel"
    assert args.index("--metrics") < run
    assert args.index("--protocol") < run
    assert args.index("--token-file") > run


def test_defaults_are_quic_and_info() -> None:
    args = container(deployment())["args"]
    assert args[args.index("--protocol") + 1] == "quic"
    assert args[args.index("--loglevel") + 1] == "info"


def test_pod_name_comes_from_the_downward_api() -> None:
    assert container(deployment())["env"] == [
        {
            "name": "POD_NAME",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
        }
    ]


def test_token_reaches_cloudflared_only_as_a_read_only_file() -> None:
    obj = deployment()
    rendered = json.dumps(obj)
    assert TOKEN not in rendered
    main = container(obj)
    assert not any("TOKEN" in env["name"] for env in main["env"])
    assert "--token" not in main["args"]
    assert "envFrom" not in main
    (mount,) = main["volumeMounts"]
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/token" == TOKEN_FILE
    (volume,) = pod_spec(obj)["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["secret"]["secretName"] == "office-cloudflared-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    # Group-readable only, through fsGroup 65532: secret files are owned by root.
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod_spec(obj)["securityContext"]["fsGroup"] == 65532


def test_metrics_port_is_named_for_scraping_and_probed() -> None:
    main = container(deployment())
    assert main["ports"] == [{"name": "metrics", "containerPort": 2000, "protocol": "TCP"}]
    assert main["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": "metrics"},
        "periodSeconds": 5,
        "failureThreshold": 3,
    }
    liveness = main["livenessProbe"]
    assert liveness["httpGet"]["port"] == "metrics"
    assert liveness["httpGet"]["path"] in {"/healthcheck", "/ready"}
    assert liveness["initialDelaySeconds"] == 10
    assert liveness["periodSeconds"] == 10
    assert liveness["failureThreshold"] == 6


def test_default_resources_follow_the_sizing_guidance_without_cpu_limit() -> None:
    for spec in (ConnectorSpec(), ConnectorSpec(resources={})):
        resources = container(deployment(spec))["resources"]
        assert resources == {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        }
        assert "cpu" not in resources["limits"]


def test_resources_from_the_spec_replace_the_defaults() -> None:
    given = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert container(deployment(ConnectorSpec(resources=given)))["resources"] == given


def test_termination_grace_outlasts_cloudflared_grace_period() -> None:
    assert pod_spec(deployment())["terminationGracePeriodSeconds"] == 60


# --- Deployment: security ------------------------------------------------------------------


def test_pod_security_context_is_non_root_with_the_ping_sysctl() -> None:
    spec = pod_spec(deployment())
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
        "sysctls": [{"name": "net.ipv4.ping_group_range", "value": "65532 65532"}],
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_container_is_locked_down() -> None:
    context = container(deployment())["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}


# The sysctls Pod Security "baseline" (and so "restricted") allows, as of Kubernetes 1.30.
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_pod_meets_pod_security_restricted() -> None:
    """The checks of the "restricted" Pod Security Standard that a pod spec can fail."""
    spec = pod_spec(deployment())
    pod_context = spec["securityContext"]
    assert not spec.get("hostNetwork")
    assert not spec.get("hostPID")
    assert not spec.get("hostIPC")
    assert {sysctl["name"] for sysctl in pod_context["sysctls"]} <= SAFE_SYSCTLS
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES
    for box in spec["containers"] + spec.get("initContainers", []):
        context = box.get("securityContext", {})
        assert context.get("privileged") in (None, False)
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert not set(context["capabilities"].get("add", [])) - {"NET_BIND_SERVICE"}
        assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True
        assert context.get("runAsUser", pod_context.get("runAsUser")) != 0
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile"))
        assert seccomp["type"] in {"RuntimeDefault", "Localhost"}
        assert all("hostPort" not in port for port in box.get("ports", []))


# --- Deployment: scheduling ----------------------------------------------------------------


def test_default_spread_is_by_node_and_zone_and_never_blocks_scheduling() -> None:
    constraints = pod_spec(deployment())["topologySpreadConstraints"]
    assert constraints == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
        },
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": SELECTOR},
        },
    ]


def test_given_spread_replaces_the_default_and_gets_the_tunnel_selector() -> None:
    given = [
        {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"},
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"team": "edge"}},
        },
    ]
    spec = ConnectorSpec(topology_spread_constraints=given)
    constraints = pod_spec(deployment(spec))["topologySpreadConstraints"]
    assert constraints[0] == {**given[0], "labelSelector": {"matchLabels": SELECTOR}}
    assert constraints[1] == given[1]
    assert "labelSelector" not in given[0]  # the spec is not modified


def test_an_empty_spread_list_turns_spreading_off() -> None:
    spec = ConnectorSpec(topology_spread_constraints=[])
    assert "topologySpreadConstraints" not in pod_spec(deployment(spec))


def test_scheduling_fields_pass_through() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "edge", "operator": "Exists"}]}]
            }
        }
    }
    tolerations = [
        {"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}
    ]
    spec = ConnectorSpec(
        node_selector={"kubernetes.io/os": "linux"},
        tolerations=tolerations,
        affinity=affinity,
        priority_class_name="system-cluster-critical",
    )
    pod = pod_spec(deployment(spec))
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_unset_scheduling_fields_are_left_out() -> None:
    pod = pod_spec(deployment())
    for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert field not in pod


# --- PodDisruptionBudget -------------------------------------------------------------


def test_pdb_allows_one_voluntary_disruption_at_a_time() -> None:
    pdb = desired_pdb(TUNNEL)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["kind"] == "PodDisruptionBudget"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    assert pdb["spec"]["selector"] == deployment()["spec"]["selector"]
