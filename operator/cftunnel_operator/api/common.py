"""Parts shared by the Tunnel and VPCService specs: the Cloudflare account and token reference,
and the deletion policy.
"""

from __future__ import annotations

from typing import Literal

from cftunnel_operator.api._base import CRDModel

__all__ = ["CloudflareRef", "DeletionPolicy", "SecretKeyRef"]

DeletionPolicy = Literal["Delete", "Retain"]


class SecretKeyRef(CRDModel):
    """A key of a Secret in the object's own namespace."""

    name: str
    key: str = "token"


class CloudflareRef(CRDModel):
    """``spec.cloudflare``: account and API token; each field left out falls back to a default
    (for a VPCService, the referenced Tunnel's; otherwise the operator's)."""

    account_id: str | None = None
    api_token_secret_ref: SecretKeyRef | None = None
