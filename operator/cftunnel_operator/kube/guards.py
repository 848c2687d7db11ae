"""The anti-autoscaling guard, operator side: pure detection of autoscalers that target a
cloudflared Deployment, of replica drift, and the messages that explain both to users.

cloudflared must run a fixed number of replicas. Replicas are for high availability only:
Cloudflare does not balance load across them (a request goes to the nearest replica), and
removing a replica cuts the connections it carries. Cloudflare's availability guide says not to
autoscale for that reason:
https://developers.cloudflare.com/cloudflare-one/networks/connectors/cloudflare-tunnel/configure-tunnels/tunnel-availability/

The admission side of the guard is the chart's ValidatingAdmissionPolicies
(``templates/guard-policy.yaml``): they apply the same rules as this module, with every Tunnel
of the namespace as a parameter, and explain refusals with :data:`WHY_NO_AUTOSCALING`. Listing
the autoscalers and acting on the result is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "HPA_KIND",
    "NON_EVICTING_VPA_MODES",
    "SCALED_OBJECT_KIND",
    "VPA_KIND",
    "WHY_NO_AUTOSCALING",
    "AutoscalerConflict",
    "autoscaler_conflict_message",
    "autoscaler_conflicts",
    "conflicts_summary",
    "observed_replicas",
    "replicas_drift_message",
    "replicas_drifted",
    "replicas_lowered_message",
    "vpa_evicts",
]

HPA_KIND: Final = "HorizontalPodAutoscaler"
SCALED_OBJECT_KIND: Final = "ScaledObject"
VPA_KIND: Final = "VerticalPodAutoscaler"

# VPA update modes that never evict or restart pods: Off only recommends, Initial sets resources
# when a pod is created. Every other mode (Auto - also the default when unset -, Recreate,
# InPlaceOrRecreate, and any mode added later) may evict a running pod, which cuts the
# connections it carries.
NON_EVICTING_VPA_MODES: Final = frozenset({"Off", "Initial"})
DEFAULT_VPA_MODE: Final = "Auto"

# The chart's admission policies spell the same sentence (a unit test checks).
WHY_NO_AUTOSCALING: Final = (
    "cloudflared replicas are for high availability only: Cloudflare does not balance load "
    "across them and removing a replica cuts the connections it carries"
)

# Order of kinds in results, so that messages built from them are stable from one check to the
# next (a changed message would be a status write).
_KIND_ORDER: Final = {HPA_KIND: 0, SCALED_OBJECT_KIND: 1, VPA_KIND: 2}

JSON = Mapping[str, Any]


@dataclass(frozen=True)
class AutoscalerConflict:
    """An autoscaler that targets a cloudflared Deployment."""

    kind: str
    name: str
    message: str


def _get(obj: JSON, *path: str) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _is_apps_group(api_version: object) -> bool:
    # Left out, the reference is read as the Deployment it names; a Deployment of another
    # group is some other resource.
    return not api_version or (isinstance(api_version, str) and api_version.startswith("apps/"))


def _targets(ref: object, deployment_name: str, *, default_kind: str | None) -> bool:
    if not isinstance(ref, Mapping) or ref.get("name") != deployment_name:
        return False
    kind = ref.get("kind") or default_kind
    return kind == "Deployment" and _is_apps_group(ref.get("apiVersion"))


def _live(obj: JSON) -> bool:
    # An autoscaler already being deleted (KEDA keeps a finalizer on ScaledObjects) is on its
    # way out: the conflict is being resolved.
    return not _get(obj, "metadata", "deletionTimestamp")


def vpa_evicts(vpa: JSON) -> bool:
    """Whether a VerticalPodAutoscaler's update mode may evict pods (unset means Auto)."""
    mode = _get(vpa, "spec", "updatePolicy", "updateMode") or DEFAULT_VPA_MODE
    return mode not in NON_EVICTING_VPA_MODES


def autoscaler_conflict_message(kind: str, name: str, deployment_name: str) -> str:
    """Why an autoscaler that targets the cloudflared Deployment is a problem, and the fix."""
    if kind == VPA_KIND:
        return (
            f"{VPA_KIND} {name} targets Deployment {deployment_name} in an update mode that "
            f"evicts pods: {WHY_NO_AUTOSCALING}. Switch it to updateMode Off (recommendations "
            "only) or Initial, and size cloudflared with spec.connector.resources on the Tunnel"
        )
    return (
        f"{kind} {name} targets Deployment {deployment_name}: cloudflared must not be "
        f"autoscaled; {WHY_NO_AUTOSCALING}. Delete the {kind} and set spec.connector.replicas "
        "on the Tunnel instead"
    )


def autoscaler_conflicts(
    deployment_name: str,
    *,
    hpas: Sequence[JSON],
    scaled_objects: Sequence[JSON],
    vpas: Sequence[JSON],
) -> list[AutoscalerConflict]:
    """The autoscalers that target ``deployment_name``, sorted by kind and name.

    The lists are the objects of the Deployment's namespace (references in autoscalers do not
    cross namespaces). HorizontalPodAutoscalers may be of autoscaling/v1 or v2 (both carry
    ``spec.scaleTargetRef``); a KEDA ScaledObject's target kind defaults to Deployment; a
    VerticalPodAutoscaler counts only in an update mode that evicts pods.
    """
    found: list[AutoscalerConflict] = []

    def add(kind: str, obj: JSON) -> None:
        name = str(_get(obj, "metadata", "name") or "")
        found.append(
            AutoscalerConflict(kind, name, autoscaler_conflict_message(kind, name, deployment_name))
        )

    for hpa in hpas:
        ref = _get(hpa, "spec", "scaleTargetRef")
        if _live(hpa) and _targets(ref, deployment_name, default_kind=None):
            add(HPA_KIND, hpa)
    for scaled_object in scaled_objects:
        ref = _get(scaled_object, "spec", "scaleTargetRef")
        if _live(scaled_object) and _targets(ref, deployment_name, default_kind="Deployment"):
            add(SCALED_OBJECT_KIND, scaled_object)
    for vpa in vpas:
        ref = _get(vpa, "spec", "targetRef")
        if _live(vpa) and vpa_evicts(vpa) and _targets(ref, deployment_name, default_kind=None):
            add(VPA_KIND, vpa)
    return sorted(found, key=lambda conflict: (_KIND_ORDER[conflict.kind], conflict.name))


def conflicts_summary(conflicts: Sequence[AutoscalerConflict]) -> str:
    """One message for the AutoscalerConflict condition: every conflict, in a stable order."""
    return "; ".join(conflict.message for conflict in conflicts)


def observed_replicas(deployment: JSON) -> int:
    """``spec.replicas`` of a Deployment; unset means 1, as the apiserver defaults it."""
    replicas = _get(deployment, "spec", "replicas")
    return 1 if replicas is None else int(replicas)


def replicas_drifted(deployment: JSON, desired: int) -> bool:
    """Whether someone (``kubectl scale``, an autoscaler) changed the Deployment's replica count
    away from the Tunnel's fixed count."""
    return observed_replicas(deployment) != desired


def replicas_drift_message(deployment_name: str, observed: int, desired: int) -> str:
    """The Warning event text when the operator puts a changed replica count back."""
    return (
        f"Deployment {deployment_name} was scaled to {observed} replicas; put back to "
        f"{desired}: {WHY_NO_AUTOSCALING}. Change spec.connector.replicas on the Tunnel instead"
    )


def replicas_lowered_message(deployment_name: str, old: int, new: int) -> str:
    """The Warning event text when the Tunnel's replica count is lowered on purpose."""
    removed = old - new
    plural = "replica" if removed == 1 else "replicas"
    return (
        f"Scaling Deployment {deployment_name} down from {old} to {new} replicas: the connections "
        f"carried by the {removed} removed {plural} are cut, and clients reconnect through the "
        "remaining ones"
    )
