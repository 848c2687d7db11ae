"""The Tunnel kind: pydantic models of its spec and status, and the pure rules that come with
them (effective tunnel name and deletion policy, which namespaces may use the tunnel, the
cloudflared version floor).

The models mirror ``crds/cftunnel.dev_tunnels.yaml`` field for field, with the same defaults,
so that a spec parsed here equals what the apiserver stored after defaulting. Scheduling
fields (resources, affinity, tolerations, ...) are core/v1 shapes passed through as plain dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from cftunnel_operator.api._base import CRDModel
from cftunnel_operator.api.common import CloudflareRef, DeletionPolicy
from cftunnel_operator.api.conditions import StatusWithConditions
from cftunnel_operator.api.names import default_object_name

__all__ = [
    "CLOUDFLARE_STATUSES",
    "DEFAULT_REPLICAS",
    "MAX_REPLICAS",
    "MIN_CLOUDFLARED_RELEASE",
    "AllowedNamespaces",
    "AllowedServices",
    "CloudflareStatus",
    "ConnectorSpec",
    "LogLevel",
    "NamespacesFrom",
    "TransportProtocol",
    "TunnelSpec",
    "TunnelStatus",
    "cloudflared_release",
    "label_selector_matches",
    "meets_cloudflared_floor",
]

TransportProtocol = Literal["quic", "auto", "http2"]
LogLevel = Literal["debug", "info", "warn", "error", "fatal"]
NamespacesFrom = Literal["Same", "All", "Selector"]
CloudflareStatus = Literal["inactive", "healthy", "degraded", "down"]

CLOUDFLARE_STATUSES: Final[tuple[CloudflareStatus, ...]] = (
    "inactive",
    "healthy",
    "degraded",
    "down",
)
DEFAULT_REPLICAS: Final = 2
# Cloudflare's limit: 25 connectors (100 connections) per tunnel.
MAX_REPLICAS: Final = 25
# Workers VPC needs cloudflared 2025.7.0 or newer (the CRD refuses older release tags too).
MIN_CLOUDFLARED_RELEASE: Final = (2025, 7, 0)

_RELEASE_TAG = re.compile(r"^[^@]*:(?P<year>[0-9]{4})\.(?P<month>[0-9]+)\.(?P<patch>[0-9]+)$")


def cloudflared_release(image: str) -> tuple[int, int, int] | None:
    """The release number (year, month, patch) of an image whose tag is one, else None.

    ``cloudflare/cloudflared:2026.8.2`` gives ``(2026, 8, 2)``; digests, ``latest`` and other
    tags give None.
    """
    match = _RELEASE_TAG.match(image)
    if match is None:
        return None
    return int(match["year"]), int(match["month"]), int(match["patch"])


def meets_cloudflared_floor(image: str) -> bool:
    """The rule the CRD enforces: a release tag must be 2025.7.0 or newer; other images pass."""
    release = cloudflared_release(image)
    return release is None or release >= MIN_CLOUDFLARED_RELEASE


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a metav1 LabelSelector (an empty selector matches everything)."""
    match_labels: Mapping[str, str] = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class ConnectorSpec(CRDModel):
    """How the cloudflared Deployment runs (``spec.connector``)."""

    replicas: int = Field(default=DEFAULT_REPLICAS, ge=1, le=MAX_REPLICAS)
    image: str | None = None
    """None: the operator's default image."""
    protocol: TransportProtocol = "quic"
    log_level: LogLevel = "info"
    resources: dict[str, Any] | None = None
    """None: the operator's default requests and limits."""
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    topology_spread_constraints: list[dict[str, Any]] | None = None
    """None: the operator's default spread; an empty list turns spreading off."""
    priority_class_name: str | None = None
    pod_labels: dict[str, str] | None = None
    pod_annotations: dict[str, str] | None = None


class AllowedNamespaces(CRDModel):
    """``spec.allowedServices.namespaces``: which namespaces' VPCServices may use the tunnel."""

    from_: NamespacesFrom = Field(default="Same", alias="from")
    selector: dict[str, Any] | None = None
    """A metav1 LabelSelector over Namespace objects; only with ``from_ == "Selector"``."""

    def allows(
        self,
        *,
        tunnel_namespace: str,
        service_namespace: str,
        namespace_labels: Mapping[str, str],
    ) -> bool:
        """Whether a VPCService in ``service_namespace`` (labelled so) may use the tunnel."""
        if self.from_ == "All":
            return True
        if self.from_ == "Selector":
            return label_selector_matches(self.selector or {}, namespace_labels)
        return service_namespace == tunnel_namespace


class AllowedServices(CRDModel):
    """``spec.allowedServices``, the Gateway API ``allowedRoutes`` idiom."""

    namespaces: AllowedNamespaces = Field(default_factory=AllowedNamespaces)


class TunnelSpec(CRDModel):
    """``Tunnel.spec``. Parse with ``TunnelSpec.from_body(body["spec"])``."""

    cloudflare: CloudflareRef | None = None
    tunnel_name: str | None = None
    tunnel_id: str | None = None
    """The tunnel to adopt; None (or empty in the object) means create one."""
    deletion_policy: DeletionPolicy | None = None
    """None: Delete for created tunnels, Retain for adopted ones."""
    connector: ConnectorSpec = Field(default_factory=ConnectorSpec)
    allowed_services: AllowedServices = Field(default_factory=AllowedServices)

    @field_validator("tunnel_id", "tunnel_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def adopts_existing_tunnel(self) -> bool:
        """True when the spec names an existing tunnel (``tunnelId``) instead of creating one."""
        return self.tunnel_id is not None

    def effective_deletion_policy(self, *, adopted: bool) -> DeletionPolicy:
        """``deletionPolicy`` as given, else Delete for created tunnels and Retain for adopted
        ones: adopting must never destroy what the user brought in."""
        if self.deletion_policy is not None:
            return self.deletion_policy
        return "Retain" if adopted else "Delete"

    def effective_tunnel_name(self, *, namespace: str, name: str, prefix: str = "") -> str:
        """``tunnelName`` as given, else ``<prefix><namespace>-<name>``."""
        return self.tunnel_name or default_object_name(namespace, name, prefix)


class TunnelStatus(StatusWithConditions):
    """``Tunnel.status``, as the operator writes it."""

    observed_generation: int | None = None
    tunnel_id: str | None = None
    tunnel_name: str | None = None
    account_id: str | None = None
    deletion_policy: DeletionPolicy | None = None
    cloudflare_status: str | None = None
    """One of ``CLOUDFLARE_STATUSES`` as Cloudflare reports it; kept a plain string so that a
    value Cloudflare adds later is shown rather than refused."""
    connectors: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
