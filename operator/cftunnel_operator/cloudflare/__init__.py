"""Async client for the Cloudflare API (tunnels, Workers VPC services, token checks).

Owns the wire models, the error tree, the per-token rate budget and retries. Never imports Kopf.

```
clients = CloudflareClients(http, base_url, rate_limit=1000, window_seconds=300)
client = clients.for_token(SecretStr(token))
created = await client.create_tunnel(account_id, "edge-office")
```

Where things live: `_client` (operations and the per-token registry), `_session` (the request
loop: budget, retries, error mapping), `_models` (wire models), `_errors` (the error tree),
`_budget` (the rate budget), `_retry` (backoff policy), `_observer` (metrics hook),
`_clock` (the time source).
"""

from ._budget import DEFAULT_RATE_LIMIT, DEFAULT_WINDOW_SECONDS, RateBudget
from ._client import DEFAULT_BASE_URL, CloudflareClient, CloudflareClients, token_fingerprint
from ._clock import Clock, SystemClock
from ._errors import (
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
    UnexpectedResponseError,
)
from ._models import (
    AppProtocol,
    CertVerificationMode,
    CloudflareMessage,
    Connector,
    CreatedTunnel,
    IngressRule,
    ResolverNetwork,
    TLSSettings,
    TokenVerification,
    Tunnel,
    TunnelConfig,
    TunnelConfiguration,
    TunnelConnection,
    TunnelNetwork,
    VPCService,
    VPCServiceHost,
    VPCServiceSpec,
    VPCServiceType,
    vpc_service_drifted,
)
from ._observer import OPERATIONS, RETRY_REASONS, NullObserver, RequestObserver
from ._retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_WINDOW_SECONDS",
    "OPERATIONS",
    "RETRY_REASONS",
    "AppProtocol",
    "AuthenticationError",
    "CertVerificationMode",
    "Clock",
    "CloudflareAPIError",
    "CloudflareClient",
    "CloudflareClients",
    "CloudflareError",
    "CloudflareMessage",
    "CloudflareTransportError",
    "ConflictError",
    "Connector",
    "CreatedTunnel",
    "IngressRule",
    "InvalidRequestError",
    "NotFoundError",
    "NullObserver",
    "PermissionDeniedError",
    "RateBudget",
    "RateLimitedError",
    "RequestObserver",
    "ResolverNetwork",
    "RetryPolicy",
    "ServerError",
    "SystemClock",
    "TLSSettings",
    "TokenVerification",
    "Tunnel",
    "TunnelConfig",
    "TunnelConfiguration",
    "TunnelConnection",
    "TunnelNetwork",
    "UnexpectedResponseError",
    "VPCService",
    "VPCServiceHost",
    "VPCServiceSpec",
    "VPCServiceType",
    "token_fingerprint",
    "vpc_service_drifted",
]
