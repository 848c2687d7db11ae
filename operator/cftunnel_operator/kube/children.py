"""The desired children of a Tunnel, built by pure functions: the token Secret, the cloudflared
Deployment and its PodDisruptionBudget.

Each builder returns a plain dict ready for server-side apply (``apiVersion``, ``kind``,
``metadata`` with name, namespace, labels and a controller owner reference to the Tunnel, and the
body). Nothing here talks to the Kubernetes API; applying the objects and comparing them with
what is observed is the caller's job.

How cloudflared runs follows Cloudflare's Kubernetes deployment guide and the cloudflared
parameters reference, with the hardening the guide leaves out (token as a file, non-root,
read-only root filesystem, tolerant liveness):
https://developers.cloudflare.com/cloudflare-one/networks/connectors/cloudflare-tunnel/deployment-guides/kubernetes/
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from cftunnel_operator.api.names import (
    ANNOTATION_TOKEN_HASH,
    API_VERSION,
    NAME_CLOUDFLARED,
    TUNNEL_KIND,
    child_labels,
    selector_labels,
)
from cftunnel_operator.api.tunnel import ConnectorSpec

__all__ = [
    "CLOUDFLARED_GID",
    "CLOUDFLARED_UID",
    "CONTAINER_NAME",
    "DEFAULT_RESOURCES",
    "METRICS_PORT",
    "METRICS_PORT_NAME",
    "TOKEN_FILE",
    "TOKEN_KEY",
    "OwnerRef",
    "cloudflared_args",
    "default_topology_spread",
    "deployment_name",
    "desired_deployment",
    "desired_pdb",
    "desired_token_secret",
    "pdb_name",
    "token_hash",
    "token_secret_name",
]

JSON = dict[str, Any]

CONTAINER_NAME: Final = NAME_CLOUDFLARED

# The official image is distroless and runs as nonroot (65532:65532).
CLOUDFLARED_UID: Final = 65532
CLOUDFLARED_GID: Final = 65532

METRICS_PORT: Final = 2000
METRICS_PORT_NAME: Final = "metrics"

# Where the run token lives: names and paths, not secrets.
TOKEN_KEY: Final = "token"  # noqa: S105
TOKEN_VOLUME: Final = "tunnel-token"  # noqa: S105
TOKEN_DIR: Final = "/etc/cloudflared/token"  # noqa: S105
TOKEN_FILE: Final = f"{TOKEN_DIR}/{TOKEN_KEY}"

# Sized for the pod, not the host: Cloudflare's sizing guidance (4 cores and 4 GB per host,
# average CPU under ~70 %) describes the machine a production connector runs on, not what one
# cloudflared process uses at rest. The requests reserve a modest baseline so the pods are not
# BestEffort (first to be evicted under node pressure) and so the scheduler accounts for them;
# the memory limit keeps a leak from taking the node down. No CPU limit: CFS throttling adds
# latency to every proxied request while cloudflared's CPU use is bursty with traffic. Users size
# up from the cloudflared_tcp_total_sessions / cloudflared_udp_total_sessions metrics.
DEFAULT_RESOURCES: Final[JSON] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}

# Longer than cloudflared's --grace-period (30 s by default), so that after SIGTERM cloudflared
# drains its connections and exits on its own instead of being killed mid-drain.
TERMINATION_GRACE_PERIOD_SECONDS: Final = 60
REVISION_HISTORY_LIMIT: Final = 3
TOKEN_HASH_LENGTH: Final = 16

ZONE_TOPOLOGY_KEY: Final = "topology.kubernetes.io/zone"
HOSTNAME_TOPOLOGY_KEY: Final = "kubernetes.io/hostname"


@dataclass(frozen=True)
class OwnerRef:
    """The Tunnel that owns the children: enough to name them and point back at it."""

    name: str
    namespace: str
    uid: str

    def owner_reference(self) -> JSON:
        """A controller owner reference: the children are garbage-collected with the Tunnel, and
        foreground deletion of the Tunnel waits for them (``blockOwnerDeletion``)."""
        return {
            "apiVersion": API_VERSION,
            "kind": TUNNEL_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def deployment_name(tunnel: str) -> str:
    """Name of a Tunnel's cloudflared Deployment. The chart's admission policy derives the same
    name from each Tunnel (templates/guard-policy.yaml): change both together."""
    return f"{tunnel}-{NAME_CLOUDFLARED}"


def pdb_name(tunnel: str) -> str:
    """Name of a Tunnel's PodDisruptionBudget (the same as its Deployment's)."""
    return deployment_name(tunnel)


def token_secret_name(tunnel: str) -> str:
    """Name of the Secret holding a Tunnel's run token."""
    return f"{tunnel}-{NAME_CLOUDFLARED}-token"


def token_hash(token: str) -> str:
    """A short SHA-256 prefix of the run token, put on the pod template so that a token change
    rolls the pods. Safe to show: the token carries a 32-byte random secret, so its hash reveals
    nothing usable."""
    return hashlib.sha256(token.encode()).hexdigest()[:TOKEN_HASH_LENGTH]


def _metadata(tunnel: OwnerRef, name: str, *, labels: dict[str, str] | None = None) -> JSON:
    return {
        "name": name,
        "namespace": tunnel.namespace,
        "labels": {**child_labels(tunnel.name), **(labels or {})},
        "ownerReferences": [tunnel.owner_reference()],
    }


def desired_token_secret(tunnel: OwnerRef, token: str) -> JSON:
    """The Secret cloudflared reads its run token from (as a mounted file, never an env var)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(tunnel, token_secret_name(tunnel.name)),
        "type": "Opaque",
        # ``data`` rather than ``stringData``: stringData is write-only, so a server-side apply
        # of it would never match what the apiserver stores and every apply would look like a
        # change.
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode("ascii")},
    }


def cloudflared_args(spec: ConnectorSpec) -> list[str]:
    """The container arguments; the image's entrypoint (``cloudflared --no-autoupdate``) stays.

    Tunnel-wide options go between ``tunnel`` and ``run``, and ``--token-file`` after ``run``:
    Cloudflare's run-parameters page puts them so, and its Kubernetes guide names a wrong order as
    the usual reason pods restart. ``--token-file`` (cloudflared 2025.4.0+) keeps the token out of
    the process list, the pod spec and ``kubectl describe``.
    """
    return [
        "tunnel",
        # Repeated although the entrypoint sets it: a custom image with another entrypoint must
        # still never replace its own binary inside a running pod.
        "--no-autoupdate",
        # Explicit address: the default is the first free port of 20241-20245, which a probe
        # cannot name.
        "--metrics",
        f"0.0.0.0:{METRICS_PORT}",
        "--loglevel",
        spec.log_level,
        "--protocol",
        spec.protocol,
        # The pod name, expanded by the kubelet from the POD_NAME env var: connectors then show
        # up in the Cloudflare dashboard under the pod that runs them.
        "--label",
        "$(POD_NAME)",
        "run",
        "--token-file",
        TOKEN_FILE,
    ]


def default_topology_spread(tunnel: str) -> list[JSON]:
    """Spread replicas across nodes and, where nodes carry the zone label, across zones.

    ``ScheduleAnyway`` for both: replicas exist for availability, and a pod that cannot be placed
    perfectly (two nodes and three replicas, or nodes without zone labels) is better running on
    a crowded node than Pending.
    """
    selector = {"matchLabels": selector_labels(tunnel)}
    return [
        {
            "maxSkew": 1,
            "topologyKey": HOSTNAME_TOPOLOGY_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": copy.deepcopy(selector),
        },
        {
            "maxSkew": 1,
            "topologyKey": ZONE_TOPOLOGY_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": copy.deepcopy(selector),
        },
    ]


def _topology_spread(tunnel: str, spec: ConnectorSpec) -> list[JSON]:
    if spec.topology_spread_constraints is None:
        return default_topology_spread(tunnel)
    # The CRD promises that a constraint without a labelSelector counts this tunnel's pods;
    # without one the scheduler would count nothing and the constraint would have no effect.
    constraints = copy.deepcopy(spec.topology_spread_constraints)
    for constraint in constraints:
        constraint.setdefault("labelSelector", {"matchLabels": selector_labels(tunnel)})
    return constraints


def _pod_security_context() -> JSON:
    return {
        "runAsNonRoot": True,
        "runAsUser": CLOUDFLARED_UID,
        "runAsGroup": CLOUDFLARED_GID,
        # Makes the token file group-readable by cloudflared (see the volume's defaultMode).
        "fsGroup": CLOUDFLARED_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
        # Lets the non-root process open ICMP sockets (ping and traceroute through the tunnel),
        # as in Cloudflare's reference Deployment; a "safe" sysctl, so no kubelet change and
        # allowed by Pod Security "restricted".
        "sysctls": [
            {"name": "net.ipv4.ping_group_range", "value": f"{CLOUDFLARED_GID} {CLOUDFLARED_GID}"}
        ],
    }


def _container(spec: ConnectorSpec, image: str) -> JSON:
    return {
        "name": CONTAINER_NAME,
        "image": image,
        # ``args`` not ``command``: keeps the image's entrypoint and its --no-autoupdate.
        "args": cloudflared_args(spec),
        "env": [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            }
        ],
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # /ready answers 200 only while cloudflared holds at least one live connection to
        # Cloudflare: a rollout (maxUnavailable 0) then waits until the new pod really carries
        # traffic before it stops an old one.
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": METRICS_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        # /healthcheck, not /ready: /ready fails whenever Cloudflare's edge is unreachable, and a
        # restart cannot fix the network; it would only put every replica into the kubelet's
        # restart back-off (up to 5 minutes) and so delay reconnection once the outage ends.
        # cloudflared reconnects by itself (--retries with back-off); liveness is there for a
        # process that stopped answering, with a minute of tolerance (6 x 10 s).
        "livenessProbe": {
            "httpGet": {"path": "/healthcheck", "port": METRICS_PORT_NAME},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": copy.deepcopy(spec.resources or DEFAULT_RESOURCES),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}],
    }


def desired_deployment(
    tunnel: OwnerRef,
    spec: ConnectorSpec,
    *,
    image: str,
    token_hash: str,
    replicas: int,
) -> JSON:
    """The cloudflared Deployment of a Tunnel.

    ``image`` is the image to run (``spec.image`` or the operator's default), ``token_hash`` the
    :func:`token_hash` of the current run token, ``replicas`` the fixed count to run (the spec's,
    or 0 while the tunnel is being deleted).
    """
    selector = selector_labels(tunnel.name)
    pod_labels = {**(spec.pod_labels or {}), **child_labels(tunnel.name)}
    pod_annotations = {**(spec.pod_annotations or {}), ANNOTATION_TOKEN_HASH: token_hash}

    pod_spec: JSON = {
        # cloudflared never calls the Kubernetes API: no credentials in the pod.
        "automountServiceAccountToken": False,
        # cloudflared reads its settings from TUNNEL_* environment variables, and service links
        # would inject TUNNEL_SERVICE_HOST, TUNNEL_PORT, ... for a Service named "tunnel".
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_PERIOD_SECONDS,
        "containers": [_container(spec, image)],
        "volumes": [
            {
                "name": TOKEN_VOLUME,
                "secret": {
                    "secretName": token_secret_name(tunnel.name),
                    "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
                    # 0440 with fsGroup: secret files are owned by root, so cloudflared (65532)
                    # reads the token through its group; nobody else can.
                    "defaultMode": 0o440,
                },
            }
        ],
    }
    topology = _topology_spread(tunnel.name, spec)
    if topology:
        pod_spec["topologySpreadConstraints"] = topology
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = copy.deepcopy(spec.tolerations)
    if spec.affinity:
        pod_spec["affinity"] = copy.deepcopy(spec.affinity)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(tunnel, deployment_name(tunnel.name)),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "selector": {"matchLabels": selector},
            # Never below the replica count during a rollout: a new pod must be ready (connected)
            # before an old one, and the connections it carries, goes away.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def desired_pdb(tunnel: OwnerRef) -> JSON:
    """At most one cloudflared pod down at a time for voluntary disruptions (drains, evictions):
    each replica carries its own connections, and removing several at once could leave none."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(tunnel, pdb_name(tunnel.name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(tunnel.name)},
        },
    }
