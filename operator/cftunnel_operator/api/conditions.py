"""Status conditions: every condition type and reason the operator uses, the ``Condition`` model,
and pure helpers to update a condition list the Kubernetes way.

This is the one place where condition types and reasons are spelled (cert-manager keeps its
reasons in one file for the same reason): alerts, docs and tests match on these strings, so a
typo elsewhere must be impossible. Deciding *which* condition to set is the reconcile layer's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, field_validator

from cftunnel_operator.api._base import CRDModel

__all__ = [
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Reason",
    "StatusWithConditions",
    "condition_status",
    "find_condition",
    "format_time",
    "is_condition_true",
    "set_condition",
]


class ConditionType(StrEnum):
    """Condition types of Tunnel and VPCService status."""

    READY = "Ready"
    """Both kinds: the summary; True when the object does what its spec asks."""
    CLOUDFLARE_SYNCED = "CloudflareSynced"
    """Both kinds: the Cloudflare object exists and matches the spec."""
    CONNECTOR_AVAILABLE = "ConnectorAvailable"
    """Tunnel: the cloudflared Deployment has all its replicas ready."""
    AUTOSCALER_CONFLICT = "AutoscalerConflict"
    """Tunnel, abnormal when True: an autoscaler or a manual scale targets the connector."""
    TUNNEL_RESOLVED = "TunnelResolved"
    """VPCService: the tunnel is known (has an id), usable and allows this namespace."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """CamelCase reasons, grouped by what they explain."""

    # Progress and success.
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    SYNCED = "Synced"
    TUNNEL_CREATED = "TunnelCreated"
    TUNNEL_ADOPTED = "TunnelAdopted"
    SERVICE_CREATED = "ServiceCreated"
    RESOLVED = "Resolved"
    DELETING = "Deleting"

    # Credentials and account.
    CREDENTIALS_SECRET_NOT_FOUND = "CredentialsSecretNotFound"  # noqa: S105 - a reason
    CREDENTIALS_KEY_NOT_FOUND = "CredentialsKeyNotFound"
    CREDENTIALS_INVALID = "CredentialsInvalid"
    CREDENTIALS_MISSING = "CredentialsMissing"
    TOKEN_INACTIVE = "TokenInactive"  # noqa: S105 - a reason, not a token
    PERMISSION_DENIED = "PermissionDenied"
    ACCOUNT_MISMATCH = "AccountMismatch"

    # Cloudflare availability.
    CLOUDFLARE_UNAVAILABLE = "CloudflareUnavailable"
    CLOUDFLARE_ERROR = "CloudflareError"
    RATE_LIMITED = "RateLimited"
    LIMIT_EXCEEDED = "LimitExceeded"

    # Cloudflare objects.
    TUNNEL_NOT_FOUND = "TunnelNotFound"
    TUNNEL_DELETED = "TunnelDeleted"
    TUNNEL_NAME_CONFLICT = "TunnelNameConflict"
    SERVICE_NOT_FOUND = "ServiceNotFound"

    # The connector Deployment.
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    SCALED_TO_ZERO = "ScaledToZero"

    # Autoscaler guard.
    NO_CONFLICT = "NoConflict"
    HORIZONTAL_POD_AUTOSCALER = "HorizontalPodAutoscaler"
    SCALED_OBJECT = "ScaledObject"
    VERTICAL_POD_AUTOSCALER = "VerticalPodAutoscaler"
    MANUAL_SCALE = "ManualScale"

    # VPCService's tunnel.
    WAITING_FOR_TUNNEL = "WaitingForTunnel"
    TUNNEL_NOT_READY = "TunnelNotReady"
    TUNNEL_NOT_ALLOWED = "TunnelNotAllowed"
    TUNNEL_PROTOCOL_UNSUPPORTED = "TunnelProtocolUnsupported"

    # Deletion.
    IN_USE_BY_VPC_SERVICES = "InUseByVPCServices"

    # The spec itself (what admission could not check).
    INVALID_SPEC = "InvalidSpec"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes ``metav1.Time``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Condition(CRDModel):
    """One status condition (the shape of ``metav1.Condition``).

    Build with field names or with the camelCase keys Kubernetes uses; ``to_body()`` gives the
    Kubernetes shape.
    """

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")

    @field_validator("type", "status", "reason", mode="before")
    @classmethod
    def _plain_string(cls, value: object) -> object:
        # StrEnum members are accepted and stored as plain strings, so that equality, hashing
        # and JSON dumps never depend on which enum a caller used.
        return str(value) if isinstance(value, StrEnum) else value

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of this type, or None."""
    return next((condition for condition in conditions if condition.type == type_), None)


def condition_status(conditions: Iterable[Condition], type_: str) -> str | None:
    """``"True"``, ``"False"`` or ``"Unknown"`` for the condition of this type; None if absent."""
    found = find_condition(conditions, type_)
    return None if found is None else found.status


def is_condition_true(conditions: Iterable[Condition], type_: str) -> bool:
    return condition_status(conditions, type_) == ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition], new: Condition, now: datetime
) -> list[Condition]:
    """A new list with ``new`` in place of the condition of the same type (appended if absent).

    ``lastTransitionTime`` follows the Kubernetes conventions: it is ``now`` when the status
    changes (or the condition is new) and stays as it was otherwise, even when the reason or
    message change. Setting a condition that is already there unchanged returns an equal list,
    so an unchanged state never causes a status write.
    """
    previous = find_condition(conditions, new.type)
    if previous is not None and previous.status == new.status and previous.last_transition_time:
        transition = previous.last_transition_time
    else:
        transition = format_time(now)
    updated = new.model_copy(update={"last_transition_time": transition})
    if previous is None:
        return [*conditions, updated]
    return [updated if condition.type == new.type else condition for condition in conditions]


class StatusWithConditions(CRDModel):
    """The part every status shares: a list of conditions, updated the Kubernetes way."""

    conditions: list[Condition] = Field(default_factory=list)

    def with_condition(self, condition: Condition, now: datetime) -> Self:
        """A copy with ``condition`` set (see ``set_condition`` for the transition time)."""
        return self.model_copy(
            update={"conditions": set_condition(self.conditions, condition, now)}
        )
