"""The autoscaler guard's detection: which HPAs, ScaledObjects and VPAs target a cloudflared
Deployment, replica drift, and the messages users read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cftunnel_operator.kube.children import deployment_name
from cftunnel_operator.kube.guards import (
    HPA_KIND,
    NON_EVICTING_VPA_MODES,
    SCALED_OBJECT_KIND,
    VPA_KIND,
    WHY_NO_AUTOSCALING,
    AutoscalerConflict,
    autoscaler_conflicts,
    conflicts_summary,
    observed_replicas,
    replicas_drift_message,
    replicas_drifted,
    replicas_lowered_message,
    vpa_evicts,
)

DEPLOYMENT = "office-cloudflared"
GUARD_TEMPLATE = (
    Path(__file__).resolve().parents[3] / "charts/cftunnel-operator/templates/guard-policy.yaml"
)


def hpa(
    name: str,
    target: str = DEPLOYMENT,
    *,
    kind: str = "Deployment",
    api_version: str | None = "apps/v1",
    **metadata: Any,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": kind, "name": target}
    if api_version is not None:
        ref["apiVersion"] = api_version
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, **metadata},
        "spec": {"scaleTargetRef": ref, "minReplicas": 2, "maxReplicas": 5},
    }


def scaled_object(name: str, ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {"scaleTargetRef": ref, "triggers": []},
    }


def vpa(name: str, mode: str | None, target: str = DEPLOYMENT) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}
    }
    if mode is not None:
        spec["updatePolicy"] = {"updateMode": mode}
    return {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": name},
        "spec": spec,
    }


def conflicts(**lists: list[dict[str, Any]]) -> list[AutoscalerConflict]:
    return autoscaler_conflicts(
        DEPLOYMENT,
        hpas=lists.get("hpas", []),
        scaled_objects=lists.get("scaled_objects", []),
        vpas=lists.get("vpas", []),
    )


# --- HorizontalPodAutoscalers --------------------------------------------------------------


def test_hpa_targeting_the_deployment_is_a_conflict() -> None:
    (found,) = conflicts(hpas=[hpa("web")])
    assert (found.kind, found.name) == (HPA_KIND, "web")
    assert DEPLOYMENT in found.message
    assert WHY_NO_AUTOSCALING in found.message
    assert "spec.connector.replicas" in found.message


def test_autoscaling_v1_hpa_is_recognised_too() -> None:
    v1 = hpa("old")
    v1["apiVersion"] = "autoscaling/v1"
    v1["spec"] = {"scaleTargetRef": v1["spec"]["scaleTargetRef"], "maxReplicas": 4}
    assert [c.name for c in conflicts(hpas=[v1])] == ["old"]


def test_hpa_without_api_version_in_its_reference_still_counts() -> None:
    assert [c.name for c in conflicts(hpas=[hpa("bare", api_version=None)])] == ["bare"]


@pytest.mark.parametrize(
    "other",
    [
        hpa("elsewhere", target="web"),
        hpa("statefulset", kind="StatefulSet", api_version="apps/v1"),
        hpa("custom", api_version="example.com/v1"),
        hpa("leaving", deletionTimestamp="2026-01-01T00:00:00Z"),
        {"metadata": {"name": "broken"}},
        {"metadata": {"name": "broken"}, "spec": {"scaleTargetRef": "not a mapping"}},
    ],
    ids=["other-deployment", "other-kind", "other-group", "being-deleted", "no-spec", "bad-ref"],
)
def test_hpa_that_does_not_target_the_deployment_is_ignored(other: dict[str, Any]) -> None:
    assert conflicts(hpas=[other]) == []


# --- KEDA ScaledObjects ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        {"name": DEPLOYMENT},
        {"name": DEPLOYMENT, "kind": ""},
        {"name": DEPLOYMENT, "kind": "Deployment"},
        {"name": DEPLOYMENT, "kind": "Deployment", "apiVersion": "apps/v1"},
    ],
    ids=["kind-defaults-to-deployment", "empty-kind", "explicit-kind", "explicit-group"],
)
def test_scaled_object_targeting_the_deployment_is_a_conflict(ref: dict[str, Any]) -> None:
    (found,) = conflicts(scaled_objects=[scaled_object("queue", ref)])
    assert (found.kind, found.name) == (SCALED_OBJECT_KIND, "queue")
    assert WHY_NO_AUTOSCALING in found.message


@pytest.mark.parametrize(
    "ref",
    [
        {"name": "web"},
        {"name": DEPLOYMENT, "kind": "StatefulSet"},
        {"name": DEPLOYMENT, "kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1"},
    ],
    ids=["other-name", "other-kind", "other-group"],
)
def test_scaled_object_for_something_else_is_ignored(ref: dict[str, Any]) -> None:
    assert conflicts(scaled_objects=[scaled_object("queue", ref)]) == []


# --- VerticalPodAutoscalers ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "Auto", "Recreate", "InPlaceOrRecreate", "SomethingNew"])
def test_vpa_that_evicts_pods_is_a_conflict(mode: str | None) -> None:
    (found,) = conflicts(vpas=[vpa("size", mode)])
    assert (found.kind, found.name) == (VPA_KIND, "size")
    assert "Off" in found.message
    assert "spec.connector.resources" in found.message
    assert WHY_NO_AUTOSCALING in found.message


@pytest.mark.parametrize("mode", ["Off", "Initial"])
def test_vpa_that_never_evicts_is_allowed(mode: str) -> None:
    assert not vpa_evicts(vpa("size", mode))
    assert conflicts(vpas=[vpa("size", mode)]) == []


def test_vpa_for_another_deployment_is_ignored() -> None:
    assert conflicts(vpas=[vpa("size", "Auto", target="web")]) == []


# --- all together ------------------------------------------------------------------------------


def test_conflicts_are_sorted_by_kind_then_name_for_a_stable_message() -> None:
    found = conflicts(
        hpas=[hpa("b"), hpa("a"), hpa("unrelated", target="web")],
        scaled_objects=[scaled_object("q", {"name": DEPLOYMENT})],
        vpas=[vpa("v", "Auto"), vpa("quiet", "Off")],
    )
    assert [(c.kind, c.name) for c in found] == [
        (HPA_KIND, "a"),
        (HPA_KIND, "b"),
        (SCALED_OBJECT_KIND, "q"),
        (VPA_KIND, "v"),
    ]
    summary = conflicts_summary(found)
    assert summary == "; ".join(c.message for c in found)
    assert conflicts_summary(conflicts(hpas=[hpa("a"), hpa("b")])) == conflicts_summary(
        conflicts(hpas=[hpa("b"), hpa("a")])
    )


def test_no_autoscalers_no_conflicts() -> None:
    assert conflicts() == []
    assert conflicts_summary([]) == ""


# --- replica drift -----------------------------------------------------------------------------


def test_replicas_drifted_compares_spec_replicas() -> None:
    assert not replicas_drifted({"spec": {"replicas": 2}}, 2)
    assert replicas_drifted({"spec": {"replicas": 5}}, 2)
    assert replicas_drifted({"spec": {"replicas": 0}}, 2)


def test_unset_replicas_reads_as_the_apiserver_default_of_one() -> None:
    assert observed_replicas({"spec": {}}) == 1
    assert observed_replicas({}) == 1
    assert not replicas_drifted({"spec": {}}, 1)
    assert replicas_drifted({"spec": {}}, 2)


def test_drift_and_lowering_messages_explain_the_cost() -> None:
    drift = replicas_drift_message(DEPLOYMENT, observed=5, desired=2)
    assert "5" in drift
    assert "2" in drift
    assert DEPLOYMENT in drift
    assert WHY_NO_AUTOSCALING in drift
    assert "spec.connector.replicas" in drift
    lowered = replicas_lowered_message(DEPLOYMENT, old=4, new=3)
    assert "from 4 to 3" in lowered
    assert "1 removed replica " in lowered
    assert "cut" in lowered
    assert "2 removed replicas" in replicas_lowered_message(DEPLOYMENT, old=4, new=2)


# --- the admission policy says the same --------------------------------------------------------


def test_admission_policy_gives_the_same_reason_and_rules() -> None:
    template = GUARD_TEMPLATE.read_text()
    assert WHY_NO_AUTOSCALING in template
    # The policies find each Tunnel's Deployment by the operator's naming rule.
    suffix = deployment_name("x").removeprefix("x")
    assert f"params.metadata.name + '{suffix}'" in template
    modes = ", ".join(f"'{mode}'" for mode in sorted(NON_EVICTING_VPA_MODES, reverse=True))
    assert f"[{modes}]" in template
