"""Failures that become conditions: a reason, a message for the user and when to retry.

Everything that can go wrong at run time (a missing Secret, a revoked token, Cloudflare down)
is raised inside the reconcile layer as a :class:`Problem`; the one boundary that turns
Cloudflare client errors into problems is :func:`problem_from_cloudflare`.
"""

from __future__ import annotations

from cftunnel_operator.api.conditions import ConditionType, Reason
from cftunnel_operator.cloudflare import (
    AuthenticationError,
    CloudflareAPIError,
    CloudflareError,
    CloudflareTransportError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
)
from cftunnel_operator.kube.client import KubeError

__all__ = ["Problem", "problem_from_cloudflare", "problem_from_kube"]

# Retry delays (seconds): user mistakes are re-checked slowly, outages sooner.
RETRY_USER_ERROR = 30.0
RETRY_OUTAGE = 10.0
RETRY_WAITING = 5.0


class Problem(Exception):
    """A run-time failure with the condition it sets and a retry delay."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        retry_after: float = RETRY_USER_ERROR,
        condition: ConditionType = ConditionType.CLOUDFLARE_SYNCED,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.condition = condition


def problem_from_cloudflare(error: CloudflareError, doing: str) -> Problem:
    """Translate a Cloudflare client error raised while ``doing`` something into a Problem."""
    detail = f"{doing}: {error.message}"
    if isinstance(error, RateLimitedError):
        return Problem(
            Reason.RATE_LIMITED, detail, retry_after=max(error.retry_after or 0, RETRY_OUTAGE)
        )
    if isinstance(error, ServerError | CloudflareTransportError):
        return Problem(Reason.CLOUDFLARE_UNAVAILABLE, detail, retry_after=RETRY_OUTAGE)
    if isinstance(error, AuthenticationError):
        return Problem(
            Reason.CREDENTIALS_INVALID,
            f"{detail}. The API token is invalid, expired or revoked: update the token Secret",
        )
    if isinstance(error, PermissionDeniedError):
        return Problem(
            Reason.PERMISSION_DENIED,
            f"{detail}. The API token lacks a permission: it needs Account > Cloudflare Tunnel > "
            "Edit (and Connectivity Directory Admin for VPC services) on this account",
        )
    if isinstance(error, NotFoundError):
        return Problem(Reason.TUNNEL_NOT_FOUND, detail)
    if isinstance(error, ConflictError):
        return Problem(Reason.TUNNEL_NAME_CONFLICT, detail)
    if isinstance(error, InvalidRequestError):
        return Problem(Reason.INVALID_SPEC, detail)
    if isinstance(error, CloudflareAPIError):
        return Problem(Reason.CLOUDFLARE_ERROR, detail, retry_after=RETRY_OUTAGE)
    return Problem(Reason.CLOUDFLARE_ERROR, detail, retry_after=RETRY_OUTAGE)


def problem_from_kube(error: KubeError, doing: str) -> Problem:
    """A Kubernetes API failure (apiserver restarting, a write refused): retried soon."""
    return Problem(
        Reason.PROGRESSING, f"{doing}: Kubernetes API error: {error}", retry_after=RETRY_OUTAGE
    )
