"""Names shared by every layer: API group and kinds, finalizer, field manager, the label and
annotation keys the operator puts on its children, and the default Cloudflare-side name.

Only constants and small name builders live here; what the children look like is decided
in ``cftunnel_operator.kube``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ANNOTATION_TOKEN_HASH",
    "API_VERSION",
    "CATEGORY",
    "FIELD_MANAGER",
    "FINALIZER",
    "GROUP",
    "KOPF_STORAGE_PREFIX",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_NAME",
    "LABEL_TUNNEL",
    "MANAGED_BY",
    "NAME_CLOUDFLARED",
    "OPERATOR_NAME",
    "RESERVED_ANNOTATION_PREFIX",
    "RESERVED_LABEL_KEYS",
    "RESERVED_LABEL_PREFIX",
    "TUNNEL_KIND",
    "TUNNEL_PLURAL",
    "TUNNEL_SHORT_NAME",
    "VERSION",
    "VPCSERVICE_KIND",
    "VPCSERVICE_PLURAL",
    "VPCSERVICE_SHORT_NAME",
    "child_labels",
    "default_object_name",
    "selector_labels",
]

OPERATOR_NAME: Final = "cftunnel-operator"

GROUP: Final = "cftunnel.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "cloudflare"

TUNNEL_KIND: Final = "Tunnel"
TUNNEL_PLURAL: Final = "tunnels"
TUNNEL_SHORT_NAME: Final = "cftun"

VPCSERVICE_KIND: Final = "VPCService"
VPCSERVICE_PLURAL: Final = "vpcservices"
VPCSERVICE_SHORT_NAME: Final = "vpcsvc"

# Pinned in the first release and never changed: renaming either makes Kopf lose track of
# objects it already handles (see the Kopf notes on storage names).
FINALIZER: Final = "cftunnel.dev/finalizer"
KOPF_STORAGE_PREFIX: Final = "cftunnel.dev"

# The one field manager of every server-side apply the operator makes; the replica guard relies
# on it owning spec.replicas of the connector Deployment.
FIELD_MANAGER: Final = OPERATOR_NAME

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_TUNNEL: Final = "cftunnel.dev/tunnel"

NAME_CLOUDFLARED: Final = "cloudflared"
MANAGED_BY: Final = OPERATOR_NAME

# Hash of the tunnel run token on the pod template: a token change changes the template and so
# rolls the pods, without the token itself ever appearing in the object.
ANNOTATION_TOKEN_HASH: Final = "cftunnel.dev/token-hash"  # noqa: S105 - a key name

# Users may not set these on the connector pods (the Tunnel CRD refuses them in podLabels and
# podAnnotations): the operator sets them and selects its pods by them.
RESERVED_LABEL_KEYS: Final = frozenset({LABEL_NAME, LABEL_INSTANCE, LABEL_MANAGED_BY})
RESERVED_LABEL_PREFIX: Final = "cftunnel.dev/"
RESERVED_ANNOTATION_PREFIX: Final = "cftunnel.dev/"


def selector_labels(tunnel: str) -> dict[str, str]:
    """The labels that select a Tunnel's cloudflared pods (Deployment selector, PDB, spread)."""
    return {LABEL_NAME: NAME_CLOUDFLARED, LABEL_INSTANCE: tunnel}


def child_labels(tunnel: str) -> dict[str, str]:
    """Every label the operator puts on a Tunnel's children: the selector labels and more."""
    return {**selector_labels(tunnel), LABEL_MANAGED_BY: MANAGED_BY, LABEL_TUNNEL: tunnel}


def default_object_name(namespace: str, name: str, prefix: str = "") -> str:
    """The default Cloudflare-side name of a Tunnel or VPCService: ``<prefix><namespace>-<name>``.

    The prefix (an operator setting) tells apart clusters that share one Cloudflare account.
    """
    return f"{prefix}{namespace}-{name}"
