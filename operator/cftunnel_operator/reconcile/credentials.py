"""Finding and checking the Cloudflare credentials of an object.

An object names its account and token Secret in ``spec.cloudflare``; what it leaves out comes
from a fallback (a VPCService falls back to its Tunnel's) and then from the operator's
defaults. Each missing piece gets its own condition reason. A token is verified once and the
result cached, so verification costs nothing per object on the create path.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass

from pydantic import SecretStr

from cftunnel_operator.api.common import CloudflareRef
from cftunnel_operator.api.conditions import Reason
from cftunnel_operator.cloudflare import (
    AuthenticationError,
    CloudflareClient,
    CloudflareError,
    PermissionDeniedError,
    token_fingerprint,
)
from cftunnel_operator.config import ConfigError
from cftunnel_operator.kube.client import resource_type
from cftunnel_operator.reconcile.context import ReconcileContext
from cftunnel_operator.reconcile.problems import Problem, problem_from_cloudflare
from cftunnel_operator.redaction import register_secret

__all__ = ["Credentials", "resolve_credentials"]

SECRET = resource_type("v1", "Secret")
# How long a successful token check is trusted before it is repeated.
VERIFIED_FOR_SECONDS = 3600.0


@dataclass(frozen=True)
class Credentials:
    """A usable account and the client of its token."""

    account_id: str
    client: CloudflareClient
    source: str
    """Where the token came from, for messages (never the token itself)."""
    token_key: str
    """Stable identity of the token (its fingerprint), for per-token pacing."""


async def _token_from_secret(
    ctx: ReconcileContext, namespace: str, name: str, key: str, *, allow_remembered: bool
) -> SecretStr:
    secret = await ctx.kube.get_or_none(SECRET, namespace, name)
    remembered = ctx.remembered_tokens.get((namespace, name, key))
    if secret is None:
        if allow_remembered and remembered:
            return SecretStr(remembered)
        raise Problem(
            Reason.CREDENTIALS_SECRET_NOT_FOUND,
            f"Secret {namespace}/{name} (named in spec.cloudflare.apiTokenSecretRef) does not "
            "exist: create it with the API token under the key "
            f"{key!r}",
        )
    data = secret.get("data") or {}
    if key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise Problem(
            Reason.CREDENTIALS_KEY_NOT_FOUND,
            f"Secret {namespace}/{name} has no key {key!r} (keys present: {keys}): set "
            "spec.cloudflare.apiTokenSecretRef.key or add the key",
        )
    try:
        token = base64.b64decode(data[key], validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        token = ""
    if not token:
        raise Problem(
            Reason.CREDENTIALS_INVALID,
            f"key {key!r} of Secret {namespace}/{name} is empty or not text",
        )
    register_secret(token)
    ctx.remembered_tokens[(namespace, name, key)] = token
    return SecretStr(token)


async def resolve_credentials(
    ctx: ReconcileContext,
    namespace: str,
    ref: CloudflareRef | None,
    *,
    fallback: tuple[str, CloudflareRef | None] | None = None,
    verify: bool = True,
    allow_remembered: bool = False,
) -> Credentials:
    """The account and token client for an object in ``namespace``.

    ``fallback`` is ``(namespace, ref)`` of another object whose credentials apply to what
    ``ref`` leaves out (a VPCService's Tunnel). Raises :class:`Problem` with a specific reason.
    """
    account_id = ref.account_id if ref else None
    secret_ref = ref.api_token_secret_ref if ref else None
    secret_namespace = namespace
    if fallback is not None:
        fallback_namespace, fallback_ref = fallback
        if fallback_ref is not None:
            account_id = account_id or fallback_ref.account_id
            if secret_ref is None and fallback_ref.api_token_secret_ref is not None:
                secret_ref, secret_namespace = fallback_ref.api_token_secret_ref, fallback_namespace
    account_id = account_id or ctx.config.account_id
    if not account_id:
        raise Problem(
            Reason.CREDENTIALS_MISSING,
            "no Cloudflare account: set spec.cloudflare.accountId or the operator's default "
            "account (CFTUNNEL_ACCOUNT_ID)",
        )
    if secret_ref is not None:
        token = await _token_from_secret(
            ctx,
            secret_namespace,
            secret_ref.name,
            secret_ref.key,
            allow_remembered=allow_remembered,
        )
        source = f"Secret {secret_namespace}/{secret_ref.name} key {secret_ref.key!r}"
    else:
        try:
            default = ctx.config.default_api_token()
        except ConfigError as error:
            raise Problem(Reason.CREDENTIALS_MISSING, str(error)) from None
        if default is None:
            raise Problem(
                Reason.CREDENTIALS_MISSING,
                "no API token: set spec.cloudflare.apiTokenSecretRef or the operator's default "
                "token (CFTUNNEL_API_TOKEN_FILE)",
            )
        register_secret(default.get_secret_value())
        token, source = default, "the operator's default token"
    client = ctx.clouds.for_token(token)
    credentials = Credentials(account_id, client, source, token_fingerprint(token))
    if verify:
        await _verify(ctx, credentials)
    return credentials


async def _verify(ctx: ReconcileContext, credentials: Credentials) -> None:
    key = (credentials.token_key, credentials.account_id)
    if ctx.verified_tokens.get(key, 0.0) > time.monotonic():
        return
    # One check at a time per token and account: objects created together wait for the first
    # answer instead of each spending a request of the token's budget on the same question.
    async with ctx.lock(f"token-check:{key[0]}:{key[1]}"):
        if ctx.verified_tokens.get(key, 0.0) > time.monotonic():
            return
        await _check_token(ctx, credentials, key)


async def _check_token(
    ctx: ReconcileContext, credentials: Credentials, key: tuple[str, str]
) -> None:
    try:
        result = await credentials.client.verify_token(credentials.account_id)
    except (AuthenticationError, PermissionDeniedError) as error:
        if isinstance(error, PermissionDeniedError):
            raise Problem(
                Reason.ACCOUNT_MISMATCH,
                f"the API token from {credentials.source} is not valid for account "
                f"{credentials.account_id}: use a token of that account or fix "
                "spec.cloudflare.accountId",
            ) from None
        raise Problem(
            Reason.CREDENTIALS_INVALID,
            f"Cloudflare refused the API token from {credentials.source} (invalid or revoked): "
            "put a valid token in the Secret",
        ) from None
    except CloudflareError as error:
        raise problem_from_cloudflare(error, "verifying the API token") from None
    if not result.is_active:
        raise Problem(
            Reason.TOKEN_INACTIVE,
            f"the API token from {credentials.source} is {result.status}, not active: "
            "renew it in the Cloudflare dashboard and update the Secret",
        )
    ctx.verified_tokens[key] = time.monotonic() + VERIFIED_FOR_SECONDS


def forget_verification(ctx: ReconcileContext, credentials: Credentials) -> None:
    """Drop a cached check after Cloudflare refused the token, so the next run re-checks it."""
    ctx.verified_tokens.pop((credentials.token_key, credentials.account_id), None)


async def recheck_after_refusal(
    ctx: ReconcileContext, credentials: Credentials, problem: Problem
) -> Problem:
    """Cloudflare refused a call with credentials checked earlier: check the token again now,
    so that a token revoked or expired while in use is reported as such (TokenInactive,
    CredentialsInvalid) rather than as a missing permission."""
    if problem.reason not in (Reason.CREDENTIALS_INVALID, Reason.PERMISSION_DENIED):
        return problem
    forget_verification(ctx, credentials)
    try:
        await _verify(ctx, credentials)
    except Problem as cause:
        return cause
    return problem
