"""Tunnel end to end: the operator process against the real apiserver and the emulator."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from typing import Any

import pytest

from cftunnel_devtools.controlplane import ControlPlane, repo_root
from cftunnel_devtools.processes import OperatorProcess
from cftunnel_devtools.testing import (
    apply,
    condition,
    get_object,
    token_secret,
    tunnel_manifest,
    wait_for,
    wait_for_condition,
)

pytestmark = pytest.mark.controlplane

TUNNELS = "tunnels.cftunnel.dev"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CHART = repo_root() / "charts" / "cftunnel-operator"


def live_tunnels(cf_account: Any) -> list[dict[str, Any]]:
    return [t for t in cf_account.admin.tunnels(cf_account.account_id) if not t.get("deleted_at")]


def create_ready_tunnel(
    controlplane: ControlPlane, namespace: str, cf_account: Any, name: str = "office", **spec: Any
) -> dict[str, Any]:
    apply(
        controlplane,
        token_secret(namespace, cf_account.token),
        tunnel_manifest(namespace, name, account_id=cf_account.account_id, **spec),
    )
    return wait_for_condition(controlplane, TUNNELS, namespace, name, "Ready", timeout=90)


def deployment(
    controlplane: ControlPlane, namespace: str, tunnel: str = "office"
) -> dict[str, Any]:
    return get_object(controlplane, "deployment", namespace, f"{tunnel}-cloudflared")


def events(controlplane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    out = controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_for_event(
    controlplane: ControlPlane, namespace: str, reason: str, timeout: float = 30
) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((e for e in events(controlplane, namespace) if e.get("reason") == reason), None)

    found: dict[str, Any] = wait_for(find, timeout=timeout, what=f"an event {reason}")
    return found


def resource_versions(controlplane: ControlPlane, namespace: str) -> dict[str, str]:
    kinds = f"{TUNNELS},deployments,secrets,configmaps,poddisruptionbudgets"
    out = controlplane.kubectl("get", kinds, "-n", namespace, "-o", "json").stdout
    return {
        f"{item['kind']}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for item in json.loads(out)["items"]
    }


def test_tunnel_becomes_ready_with_connector_on_kwok_nodes(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    controlplane.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account)
    status = tunnel["status"]
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["tunnelName"] == f"{namespace}-office"
    assert status["accountId"] == cf_account.account_id
    assert [t["id"] for t in live_tunnels(cf_account)] == [status["tunnelId"]]
    stored = live_tunnels(cf_account)[0]
    assert stored["config_src"] == "cloudflare"
    for type_ in ("Ready", "CloudflareSynced", "ConnectorAvailable"):
        found = condition(tunnel, type_)
        assert found["status"] == "True", found
        assert found["observedGeneration"] == tunnel["metadata"]["generation"]
        assert found["reason"]
        assert found["message"]
        assert found["lastTransitionTime"]
    assert condition(tunnel, "AutoscalerConflict")["status"] == "False"
    # Pods of the restricted namespace were admitted and run on kwok nodes.
    pods = json.loads(controlplane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    assert len(pods) == 2
    assert all(p["spec"]["nodeName"].startswith("kwok-node-") for p in pods)

    cf_account.admin.connect(cf_account.account_id, status["tunnelId"], count=2)

    def healthy() -> bool:
        obj = get_object(controlplane, TUNNELS, namespace, "office")
        return bool(
            obj["status"].get("cloudflareStatus") == "healthy"
            and obj["status"].get("connectors") == 2
        )

    wait_for(healthy, timeout=60, what="cloudflareStatus healthy with 2 connectors")


def test_spec_changes_reach_deployment_and_idle_operator_writes_nothing(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    create_ready_tunnel(controlplane, namespace, cf_account)
    controlplane.kubectl(
        "patch",
        TUNNELS,
        "office",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "connector": {
                        "replicas": 3,
                        "image": "docker.io/cloudflare/cloudflared:2026.9.0",
                    }
                }
            }
        ),
    )

    def updated() -> bool:
        dep = deployment(controlplane, namespace)
        container = dep["spec"]["template"]["spec"]["containers"][0]
        return bool(
            dep["spec"]["replicas"] == 3
            and container["image"] == "docker.io/cloudflare/cloudflared:2026.9.0"
            and dep.get("status", {}).get("readyReplicas") == 3
        )

    wait_for(updated, timeout=60, what="3 replicas of the new image")
    wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=60)

    def status_settled() -> bool:
        obj = get_object(controlplane, TUNNELS, namespace, "office")
        generation = obj["metadata"]["generation"]
        dep_status = deployment(controlplane, namespace).get("status", {})
        return bool(
            obj["status"].get("readyReplicas") == 3
            and dep_status.get("replicas") == 3
            and all(c["observedGeneration"] == generation for c in obj["status"]["conditions"])
        )

    # The rollout surges to 4 pods and back; wait until it and the status have settled.
    wait_for(status_settled, timeout=30, what="status readyReplicas 3, rollout finished")
    # Idle: over a window longer than a periodic check, nothing is written anywhere.
    before = resource_versions(controlplane, namespace)
    last_seq = cf_account.admin.last_seq()
    time.sleep(20)  # the window under observation itself (resync is 8 s), not a wait for a state
    after = resource_versions(controlplane, namespace)
    assert before == after
    requests = cf_account.admin.requests(account_id=cf_account.account_id, since_seq=last_seq)
    assert [r for r in requests if r["method"] in WRITE_METHODS] == []
    assert any(r["operation"] == "tunnels.get" for r in requests), "the periodic check ran"


def test_adoption_by_id_and_unknown_id(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    import cloudflare

    sdk = cloudflare.Cloudflare(
        api_token=cf_account.token, base_url=cf_account.api_url, max_retries=0
    )
    existing = sdk.zero_trust.tunnels.cloudflared.create(
        account_id=cf_account.account_id, name="brought-along", config_src="cloudflare"
    )
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account, tunnelId=existing.id)
    assert tunnel["status"]["tunnelId"] == existing.id
    assert tunnel["status"]["tunnelName"] == "brought-along"
    assert condition(tunnel, "CloudflareSynced")["reason"] == "TunnelAdopted"
    assert len(live_tunnels(cf_account)) == 1

    unknown = "6f1c3a2e-0b7d-4c1e-9a55-2d8e7f0c4b11"
    apply(
        controlplane,
        tunnel_manifest(namespace, "ghost", account_id=cf_account.account_id, tunnelId=unknown),
    )
    ghost = wait_for_condition(
        controlplane,
        TUNNELS,
        namespace,
        "ghost",
        "CloudflareSynced",
        "False",
        reason="TunnelNotFound",
    )
    assert unknown in condition(ghost, "CloudflareSynced")["message"]
    assert condition(ghost, "Ready")["status"] == "False"
    wait_for_event(controlplane, namespace, "TunnelNotFound")
    # Deleting an adopted tunnel keeps it on Cloudflare (default policy Retain).
    controlplane.kubectl("delete", TUNNELS, "office", "-n", namespace, "--timeout=60s")
    assert [t["id"] for t in live_tunnels(cf_account)] == [existing.id]


def test_operator_killed_between_create_and_status_write_makes_no_duplicate(
    controlplane: ControlPlane,
    namespace: str,
    cf_account: Any,
    start_operator: Any,
) -> None:
    # A private operator for a namespace the session operator does not watch.
    private_ns = "k-" + namespace.removeprefix("t-")
    controlplane.kubectl("create", "namespace", private_ns)
    try:
        process = start_operator(private_ns)
        cf_account.admin.set_faults(
            latency_ms=4000, operations=["tunnels.create"], account_id=cf_account.account_id
        )
        apply(
            controlplane,
            token_secret(private_ns, cf_account.token),
            tunnel_manifest(private_ns, "office", account_id=cf_account.account_id),
        )

        def create_in_flight() -> bool:
            obj = get_object(controlplane, TUNNELS, private_ns, "office")
            return bool(obj.get("status", {}).get("tunnelName"))

        # The intent is recorded just before the (slowed down) create request is sent.
        wait_for(create_in_flight, timeout=30, what="the create intent in status")
        process.kill()
        wait_for(lambda: live_tunnels(cf_account), timeout=30, what="the tunnel on Cloudflare")
        cf_account.admin.clear_faults()
        assert "tunnelId" not in get_object(controlplane, TUNNELS, private_ns, "office")["status"]
        process.start()
        tunnel = wait_for_condition(
            controlplane, TUNNELS, private_ns, "office", "Ready", timeout=90
        )
        tunnels = live_tunnels(cf_account)
        assert [t["id"] for t in tunnels] == [tunnel["status"]["tunnelId"]]
        assert cf_account.admin.count("tunnels.create", account_id=cf_account.account_id) == 1
    finally:
        cf_account.admin.clear_faults()
        controlplane.kubectl("delete", "namespace", private_ns, "--wait=false", check=False)


def test_manual_scale_is_put_back_with_warning_event(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    create_ready_tunnel(controlplane, namespace, cf_account)
    controlplane.kubectl(
        "scale", "deployment", "office-cloudflared", "-n", namespace, "--replicas=5"
    )

    def put_back() -> bool:
        return bool(deployment(controlplane, namespace)["spec"]["replicas"] == 2)

    wait_for(put_back, timeout=15, what="replicas put back to 2")
    event = wait_for_event(controlplane, namespace, "ManualScale")
    assert event["type"] == "Warning"
    assert "spec.connector.replicas" in event["message"]


def test_hpa_raises_autoscaler_conflict_in_warn_mode(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    create_ready_tunnel(controlplane, namespace, cf_account)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "cloudflared", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "office-cloudflared",
            },
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
    apply(controlplane, hpa)
    tunnel = wait_for_condition(
        controlplane,
        TUNNELS,
        namespace,
        "office",
        "AutoscalerConflict",
        "True",
        reason="HorizontalPodAutoscaler",
        timeout=30,
    )
    assert "cloudflared" in condition(tunnel, "AutoscalerConflict")["message"]
    event = wait_for_event(controlplane, namespace, "HorizontalPodAutoscaler")
    assert event["type"] == "Warning"
    controlplane.kubectl("delete", "hpa", "cloudflared", "-n", namespace)
    wait_for_condition(
        controlplane, TUNNELS, namespace, "office", "AutoscalerConflict", "False", timeout=30
    )


def test_delete_policy_drops_connections_scales_to_zero_then_deletes(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account)
    tunnel_id = tunnel["status"]["tunnelId"]
    cf_account.admin.connect(cf_account.account_id, tunnel_id, count=2)
    last_seq = cf_account.admin.last_seq()
    # Watch the Deployment while the Tunnel is deleted, noting when its pods were all gone.
    watch = subprocess.Popen(
        [
            str(controlplane.bin_dir / "kubectl"),
            f"--kubeconfig={controlplane.kubeconfig}",
            "get",
            "deployment",
            "office-cloudflared",
            "-n",
            namespace,
            "--watch",
            "-o",
            'jsonpath={.spec.replicas}/{.status.replicas}{"\\n"}',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    stopped_at: list[float] = []

    def note_stop() -> None:
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip() in ("0/", "0/0") and not stopped_at:
                stopped_at.append(time.time())

    reader = threading.Thread(target=note_stop, daemon=True)
    reader.start()
    try:
        controlplane.kubectl("delete", TUNNELS, "office", "-n", namespace, "--timeout=60s")
    finally:
        watch.terminate()
    assert live_tunnels(cf_account) == []
    writes = [
        r
        for r in cf_account.admin.requests(account_id=cf_account.account_id, since_seq=last_seq)
        if r["method"] in WRITE_METHODS
    ]
    operations = [r["operation"] for r in writes]
    assert operations.index("tunnels.connections.delete") < operations.index("tunnels.delete")
    dropped_at = next(r["time"] for r in writes if r["operation"] == "tunnels.connections.delete")
    assert stopped_at, "the connector was scaled to zero"
    assert stopped_at[0] <= dropped_at, "connections were dropped only after the pods stopped"


def test_retain_policy_keeps_the_cloudflare_tunnel(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account, deletionPolicy="Retain")
    controlplane.kubectl("delete", TUNNELS, "office", "-n", namespace, "--timeout=60s")
    assert [t["id"] for t in live_tunnels(cf_account)] == [tunnel["status"]["tunnelId"]]


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("missing-secret", "CredentialsSecretNotFound"),
        ("missing-key", "CredentialsKeyNotFound"),
        ("wrong-token", "CredentialsInvalid"),
    ],
)
def test_credential_problems_have_specific_reasons_and_recover(
    controlplane: ControlPlane,
    namespace: str,
    cf_account: Any,
    operator: OperatorProcess,
    breakage: str,
    reason: str,
) -> None:
    if breakage == "missing-key":
        apply(controlplane, token_secret(namespace, cf_account.token, key="other"))
    elif breakage == "wrong-token":
        apply(controlplane, token_secret(namespace, "not-a-valid-token-at-all"))
    apply(controlplane, tunnel_manifest(namespace, "office", account_id=cf_account.account_id))
    tunnel = wait_for_condition(
        controlplane, TUNNELS, namespace, "office", "CloudflareSynced", "False", reason=reason
    )
    assert condition(tunnel, "Ready")["status"] == "False"
    event = wait_for_event(controlplane, namespace, reason)
    assert event["type"] == "Warning"
    assert "cloudflare-api-token" in event["message"] or breakage == "wrong-token"
    operator.wait_healthy(5)
    # Fixing the Secret converges the Tunnel without any other action.
    controlplane.kubectl("delete", "secret", "cloudflare-api-token", "-n", namespace, check=False)
    apply(controlplane, token_secret(namespace, cf_account.token))
    wait_for_condition(controlplane, TUNNELS, namespace, "office", "Ready", timeout=90)


def test_token_never_leaks_into_logs_events_status_or_deployment(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account)
    secret = get_object(controlplane, "secret", namespace, "office-cloudflared-token")
    run_token = base64.b64decode(secret["data"]["token"]).decode()
    assert run_token
    dep = deployment(controlplane, namespace)
    text = {
        "operator log": operator.log_text(),
        "events": json.dumps(events(controlplane, namespace)),
        "status": json.dumps(tunnel["status"]),
        "deployment": json.dumps(dep),
    }
    for where, content in text.items():
        assert cf_account.token not in content, f"API token found in {where}"
        assert run_token not in content, f"run token found in {where}"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--token-file" in container["args"]


def test_drift_on_cloudflare_is_put_back(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    tunnel = create_ready_tunnel(controlplane, namespace, cf_account)
    first_id = tunnel["status"]["tunnelId"]
    wanted = tunnel["status"]["tunnelName"]
    # Renamed in the dashboard: the periodic check renames it back.
    cf_account.admin.edit_tunnel(cf_account.account_id, first_id, {"name": "renamed-by-hand"})

    def renamed_back() -> bool:
        return bool([t["name"] for t in live_tunnels(cf_account)] == [wanted])

    wait_for(renamed_back, timeout=60, what="the tunnel's name put back")
    # Deleted in the dashboard: a new tunnel is created and its token reaches the connector.
    secret_before = get_object(controlplane, "secret", namespace, "office-cloudflared-token")
    import cloudflare

    sdk = cloudflare.Cloudflare(
        api_token=cf_account.token, base_url=cf_account.api_url, max_retries=0
    )
    sdk.zero_trust.tunnels.cloudflared.delete(first_id, account_id=cf_account.account_id)

    def recreated() -> dict[str, Any] | None:
        obj = get_object(controlplane, TUNNELS, namespace, "office")
        new_id = obj["status"].get("tunnelId")
        return obj if new_id and new_id != first_id else None

    obj = wait_for(recreated, timeout=60, what="a new tunnel after the deletion")
    assert [t["id"] for t in live_tunnels(cf_account)] == [obj["status"]["tunnelId"]]
    secret_after = get_object(controlplane, "secret", namespace, "office-cloudflared-token")
    assert secret_after["data"]["token"] != secret_before["data"]["token"]

    def rolled() -> bool:
        dep = deployment(controlplane, namespace)
        annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
        return (
            bool(annotations.get("cftunnel.dev/token-hash")) and dep["metadata"]["generation"] > 1
        )

    wait_for(rolled, timeout=30, what="the pods rolled onto the new token")
    wait_for_event(controlplane, namespace, "TunnelDeleted")


def test_enforce_mode_refuses_scale_and_hpa_on_an_operator_managed_connector(
    controlplane: ControlPlane, namespace: str, cf_account: Any, operator: OperatorProcess
) -> None:
    """The chart's guard in Enforce mode, with the Tunnel the operator manages as parameter."""
    from test_guard_policy import hpa, refused_by_guard, scale

    create_ready_tunnel(controlplane, namespace, cf_account)
    controlplane.kubectl("create", "serviceaccount", "scaler", "-n", namespace)
    controlplane.kubectl(
        "create", "role", "scaler", "-n", namespace, "--verb=get,list,patch,update,create",
        "--resource=deployments,deployments.apps/scale,horizontalpodautoscalers.autoscaling",
    )  # fmt: skip
    controlplane.kubectl(
        "create", "rolebinding", "scaler", "-n", namespace, "--role=scaler",
        f"--serviceaccount={namespace}:scaler",
    )  # fmt: skip
    scaler = controlplane.service_account_kubeconfig(namespace, "scaler")
    release = f"guard-{namespace}"[:53]
    server = json.loads(controlplane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    rendered = controlplane.helm(
        "template", release, str(CHART), "--namespace", "cftunnel-system",
        "--kube-version", server["gitVersion"], "--show-only", "templates/guard-policy.yaml",
        "--set", "guard.mode=Enforce", "--set-json", 'guard.exemptUsernames=["cftunnel-admin"]',
    ).stdout  # fmt: skip
    import yaml

    items = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for item in items:
        if item["kind"] == "ValidatingAdmissionPolicyBinding":
            # Narrowed to this test's namespace: policies are cluster-wide.
            item["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
    policies = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    try:
        controlplane.kubectl("apply", "--server-side", "-f", "-", input=policies)

        def refused() -> bool:
            attempt = scale(
                controlplane, namespace, "office-cloudflared", 5, kubeconfig=scaler, dry_run=True
            )
            return refused_by_guard(attempt)

        wait_for(refused, timeout=60, what="the guard to refuse kubectl scale")
        attempt = scale(controlplane, namespace, "office-cloudflared", 5, kubeconfig=scaler)
        assert attempt.returncode != 0
        assert "spec.connector.replicas" in attempt.stderr
        created = controlplane.kubectl(
            "create", "-f", "-", kubeconfig=scaler, check=False,
            input=json.dumps(hpa(namespace, "cloudflared", "office-cloudflared")),
        )  # fmt: skip
        assert refused_by_guard(created), created.stderr
        assert "office" in created.stderr
        # The operator itself still changes the replica count through the Tunnel.
        controlplane.kubectl(
            "patch", TUNNELS, "office", "-n", namespace, "--type=merge",
            "-p", '{"spec": {"connector": {"replicas": 3}}}',
        )  # fmt: skip
        wait_for(
            lambda: deployment(controlplane, namespace)["spec"]["replicas"] == 3,
            timeout=30,
            what="the operator's own scale to 3",
        )
    finally:
        controlplane.kubectl("delete", "--ignore-not-found", "-f", "-", input=policies, check=False)
