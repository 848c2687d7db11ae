"""The Cloudflare operations the operator uses, and the per-token registry of clients.

`CloudflareClient` is one API token's view of Cloudflare: token verification, tunnels (create,
read, find, list, rename, delete, run token, connectors, configuration) and Workers VPC services
(create, read, list, find, replace, delete). The account id is an argument of every call
because one token may serve several accounts.

`CloudflareClients` hands out one client per token, all on one shared `httpx.AsyncClient`, and
guarantees that every caller of a token shares that token's `RateBudget`.

HTTP, retries and errors are `_session`'s business; the wire models are in `_models`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr

from ._budget import DEFAULT_RATE_LIMIT, DEFAULT_WINDOW_SECONDS, RateBudget
from ._clock import Clock, SystemClock
from ._errors import (
    AuthenticationError,
    CloudflareAPIError,
    CloudflareTransportError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnexpectedResponseError,
)
from ._models import (
    Connector,
    CreatedTunnel,
    Envelope,
    TokenVerification,
    Tunnel,
    TunnelConfig,
    TunnelConfiguration,
    VPCService,
    VPCServiceSpec,
    VPCServiceType,
)
from ._observer import NullObserver, RequestObserver
from ._retry import RetryPolicy
from ._session import ApiSession

__all__ = [
    "DEFAULT_BASE_URL",
    "CloudflareClient",
    "CloudflareClients",
    "token_fingerprint",
]

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
# Both listings accept up to 1000 per page; big pages keep listing cheap in rate budget.
DEFAULT_PER_PAGE = 1000

ModelT = TypeVar("ModelT", bound=BaseModel)

# Errors from the account verify endpoint after which the user endpoint is worth asking: the
# token may be user-owned, or the account id may not be the token's.
_TRY_USER_ENDPOINT = (
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    InvalidRequestError,
)


def token_fingerprint(token: SecretStr) -> str:
    """A SHA-256 digest of the token: identifies it in maps and logs without revealing it."""
    return hashlib.sha256(token.get_secret_value().encode()).hexdigest()


def _segment(name: str, value: str) -> str:
    # Ids come from user-written specs; quoting keeps a stray "/" or "?" from changing the route.
    if not value:
        raise ValueError(f"{name} must not be empty")
    return quote(value, safe="")


def _account(account_id: str) -> str:
    return f"/accounts/{_segment('account_id', account_id)}"


def _tunnel(account_id: str, tunnel_id: str) -> str:
    return f"{_account(account_id)}/cfd_tunnel/{_segment('tunnel_id', tunnel_id)}"


def _services(account_id: str) -> str:
    return f"{_account(account_id)}/connectivity/directory/services"


def _service(account_id: str, service_id: str) -> str:
    return f"{_services(account_id)}/{_segment('service_id', service_id)}"


def _one(model: type[ModelT]) -> Callable[[Envelope], ModelT]:
    def parse(envelope: Envelope) -> ModelT:
        return model.model_validate(envelope.result)

    return parse


def _nothing(envelope: Envelope) -> None:
    return None


def _items(envelope: Envelope, model: type[ModelT]) -> list[ModelT]:
    result = envelope.result
    if result is None:
        return []
    if not isinstance(result, list):
        raise UnexpectedResponseError(f"expected a list result, got {type(result).__name__}")
    return [model.model_validate(item) for item in result]


class CloudflareClient:
    """The Cloudflare API for one token. Get one from `CloudflareClients.for_token()`.

    Every method raises a `CloudflareError` subclass on failure (see `_errors`); reads of a
    missing object raise `NotFoundError`.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        token: SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        budget: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        clock = clock or SystemClock()
        self.fingerprint = token_fingerprint(token)
        self.budget = budget or RateBudget(clock=clock)
        self._session = ApiSession(
            http,
            token,
            base_url=base_url,
            budget=self.budget,
            retry=retry or RetryPolicy(),
            observer=observer or NullObserver(),
            clock=clock,
        )

    @property
    def base_url(self) -> str:
        return self._session.base_url

    def __repr__(self) -> str:
        return (
            f"CloudflareClient(base_url={self.base_url!r}, token=<sha256 {self.fingerprint[:12]}>)"
        )

    # --- tokens ---------------------------------------------------------------------------

    async def verify_token(self, account_id: str | None = None) -> TokenVerification:
        """Check the token: the account endpoint first (account-owned tokens fail on the user
        endpoint), then the user endpoint. Only `result.is_active` means usable.
        """
        if account_id:
            try:
                return await self._session.call(
                    "tokens.verify_account",
                    "GET",
                    f"{_account(account_id)}/tokens/verify",
                    parse=_one(TokenVerification),
                )
            except _TRY_USER_ENDPOINT as account_error:
                try:
                    return await self._verify_user()
                except CloudflareAPIError:
                    # The account endpoint's answer is the relevant one for an account token.
                    raise account_error from None
        return await self._verify_user()

    async def _verify_user(self) -> TokenVerification:
        return await self._session.call(
            "tokens.verify_user", "GET", "/user/tokens/verify", parse=_one(TokenVerification)
        )

    # --- tunnels --------------------------------------------------------------------------

    async def create_tunnel(
        self, account_id: str, name: str, *, tunnel_secret: SecretStr | None = None
    ) -> CreatedTunnel:
        """Create a remotely managed tunnel (`config_src: cloudflare`) and return its run token.

        The token comes from the create result when Cloudflare includes it (it does, though the
        schema does not say so), otherwise from `GET …/token`. After an ambiguous failure the
        tunnel is looked up by name before the create is repeated, so no duplicate is made.
        """
        body: dict[str, str] = {"name": name, "config_src": "cloudflare"}
        if tunnel_secret is not None:
            body["tunnel_secret"] = tunnel_secret.get_secret_value()

        def parse(envelope: Envelope) -> tuple[Tunnel, SecretStr | None]:
            tunnel = Tunnel.model_validate(envelope.result)
            raw = envelope.result.get("token") if isinstance(envelope.result, dict) else None
            token = SecretStr(raw) if isinstance(raw, str) and raw else None
            return tunnel, token

        async def recover() -> tuple[Tunnel, SecretStr | None] | None:
            found = await self.find_tunnel(account_id, name)
            return None if found is None else (found, None)

        tunnel, token = await self._session.call(
            "tunnels.create",
            "POST",
            f"{_account(account_id)}/cfd_tunnel",
            json=body,
            parse=parse,
            recover=recover,
        )
        if token is None:
            token = await self.get_tunnel_token(account_id, tunnel.id)
        return CreatedTunnel(tunnel=tunnel, token=token)

    async def get_tunnel(self, account_id: str, tunnel_id: str) -> Tunnel:
        """Read a tunnel by id (deleted tunnels too: check `is_deleted`)."""
        return await self._session.call(
            "tunnels.get", "GET", _tunnel(account_id, tunnel_id), parse=_one(Tunnel)
        )

    async def find_tunnel(self, account_id: str, name: str) -> Tunnel | None:
        """The live (not deleted) tunnel with exactly this name, or None."""
        candidates = await self.list_tunnels(account_id, name=name, is_deleted=False)
        for tunnel in candidates:
            if tunnel.name == name and not tunnel.is_deleted:
                return tunnel
        return None

    async def list_tunnels(
        self,
        account_id: str,
        *,
        name: str | None = None,
        is_deleted: bool | None = None,
        include_prefix: str | None = None,
        exclude_prefix: str | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> list[Tunnel]:
        """All tunnels matching the filters, every page. `is_deleted=False`: live ones only."""
        params: dict[str, str | int] = {}
        if name is not None:
            params["name"] = name
        if is_deleted is not None:
            params["is_deleted"] = "true" if is_deleted else "false"
        if include_prefix is not None:
            params["include_prefix"] = include_prefix
        if exclude_prefix is not None:
            params["exclude_prefix"] = exclude_prefix
        return await self._list_all(
            "tunnels.list", f"{_account(account_id)}/cfd_tunnel", params, Tunnel, per_page
        )

    async def rename_tunnel(self, account_id: str, tunnel_id: str, name: str) -> Tunnel:
        """Give a tunnel its name back (PATCH with `name` only: the secret is left alone)."""
        return await self._session.call(
            "tunnels.edit",
            "PATCH",
            _tunnel(account_id, tunnel_id),
            json={"name": name},
            parse=_one(Tunnel),
            # Setting a name twice is the same as once, so a lost answer may be retried.
            idempotent=True,
        )

    async def delete_tunnel(
        self, account_id: str, tunnel_id: str, *, cascade: bool = False
    ) -> None:
        """Delete a tunnel (softly, as Cloudflare does). `cascade` also removes what depends on
        it, live connections included; without it a connected tunnel is refused.
        """
        params: dict[str, str | int] = {"cascade": "true"} if cascade else {}
        await self._session.call(
            "tunnels.delete",
            "DELETE",
            _tunnel(account_id, tunnel_id),
            params=params or None,
            parse=_nothing,
        )

    async def get_tunnel_token(self, account_id: str, tunnel_id: str) -> SecretStr:
        """The token cloudflared runs the tunnel with."""

        def parse(envelope: Envelope) -> SecretStr:
            if not isinstance(envelope.result, str) or not envelope.result:
                # Never echo the result: it may be a malformed secret.
                raise UnexpectedResponseError(
                    "tunnels.token: the result is not a token string", operation="tunnels.token"
                )
            return SecretStr(envelope.result)

        return await self._session.call(
            "tunnels.token", "GET", f"{_tunnel(account_id, tunnel_id)}/token", parse=parse
        )

    async def list_connectors(self, account_id: str, tunnel_id: str) -> list[Connector]:
        """The cloudflared processes connected to a tunnel, with their connections."""
        return await self._session.call(
            "tunnels.connections.list",
            "GET",
            f"{_tunnel(account_id, tunnel_id)}/connections",
            parse=lambda envelope: _items(envelope, Connector),
        )

    async def drop_connections(
        self, account_id: str, tunnel_id: str, *, client_id: str | None = None
    ) -> None:
        """Drop the tunnel's stale connections, or only those of connector `client_id`."""
        await self._session.call(
            "tunnels.connections.delete",
            "DELETE",
            f"{_tunnel(account_id, tunnel_id)}/connections",
            params={"client_id": client_id} if client_id else None,
            parse=_nothing,
        )

    async def get_tunnel_configuration(
        self, account_id: str, tunnel_id: str
    ) -> TunnelConfiguration:
        """The remotely managed configuration (public-hostname ingress rules)."""
        return await self._session.call(
            "tunnels.configurations.get",
            "GET",
            f"{_tunnel(account_id, tunnel_id)}/configurations",
            parse=_one(TunnelConfiguration),
        )

    async def update_tunnel_configuration(
        self, account_id: str, tunnel_id: str, config: TunnelConfig
    ) -> TunnelConfiguration:
        """Replace the remotely managed configuration (PUT)."""
        return await self._session.call(
            "tunnels.configurations.put",
            "PUT",
            f"{_tunnel(account_id, tunnel_id)}/configurations",
            json=config.to_request_body(),
            parse=_one(TunnelConfiguration),
        )

    # --- Workers VPC services -------------------------------------------------------------

    async def create_vpc_service(self, account_id: str, spec: VPCServiceSpec) -> VPCService:
        """Create a VPC service. After an ambiguous failure the service is looked up by name;
        when it is not there (yet), the create is not repeated but raised as a
        `CloudflareTransportError`, for the caller to look up again on its next run.

        Cloudflare does not refuse a second service of the same name (unlike a tunnel's 409), so
        repeating at once would make a duplicate whenever the first create, whose answer was
        lost, is still being carried out.
        """

        async def recover() -> VPCService | None:
            found = await self.find_vpc_service(account_id, spec.name, type=spec.type)
            if found is None:
                raise CloudflareTransportError(
                    f"vpc_services.create: the create of {spec.name!r} got no clear answer and "
                    "the service is not listed yet; not repeated now, as Cloudflare may still "
                    "be creating it",
                    operation="vpc_services.create",
                )
            return found

        return await self._session.call(
            "vpc_services.create",
            "POST",
            _services(account_id),
            json=spec.to_request_body(),
            parse=_one(VPCService),
            recover=recover,
        )

    async def get_vpc_service(self, account_id: str, service_id: str) -> VPCService:
        """Read a VPC service by id."""
        return await self._session.call(
            "vpc_services.get", "GET", _service(account_id, service_id), parse=_one(VPCService)
        )

    async def list_vpc_services(
        self,
        account_id: str,
        *,
        type: VPCServiceType | None = None,
        per_page: int = DEFAULT_PER_PAGE,
    ) -> list[VPCService]:
        """All VPC services of the account (optionally of one type), every page."""
        params: dict[str, str | int] = {"type": type} if type else {}
        return await self._list_all(
            "vpc_services.list", _services(account_id), params, VPCService, per_page
        )

    async def find_vpc_service(
        self,
        account_id: str,
        name: str,
        *,
        type: VPCServiceType | None = None,
    ) -> VPCService | None:
        """The VPC service with exactly this name, or None (the API has no name filter)."""
        for service in await self.list_vpc_services(account_id, type=type):
            if service.name == name:
                return service
        return None

    async def replace_vpc_service(
        self, account_id: str, service_id: str, spec: VPCServiceSpec
    ) -> VPCService:
        """Replace a VPC service with `spec` (PUT: a full body, there is no PATCH)."""
        return await self._session.call(
            "vpc_services.replace",
            "PUT",
            _service(account_id, service_id),
            json=spec.to_request_body(),
            parse=_one(VPCService),
        )

    async def delete_vpc_service(self, account_id: str, service_id: str) -> None:
        """Delete a VPC service."""
        await self._session.call(
            "vpc_services.delete", "DELETE", _service(account_id, service_id), parse=_nothing
        )

    # --- pagination -----------------------------------------------------------------------

    async def _list_all(
        self,
        operation: str,
        path: str,
        params: Mapping[str, str | int],
        model: type[ModelT],
        per_page: int,
    ) -> list[ModelT]:
        if per_page < 1:
            raise ValueError(f"per_page must be at least 1, got {per_page}")
        collected: list[ModelT] = []
        page = 1
        while True:
            items, info = await self._session.call(
                operation,
                "GET",
                path,
                params={**params, "page": page, "per_page": per_page},
                parse=lambda envelope: (_items(envelope, model), envelope.result_info),
            )
            collected.extend(items)
            # Stop rules of cloudflared itself: tunnel listings may lack total_pages, so a short
            # page or reaching total_count ends the listing. The server's own per_page wins if
            # it capped ours.
            page_size = info.per_page if info is not None and info.per_page else per_page
            count = info.count if info is not None and info.count is not None else len(items)
            if not items or count < page_size:
                break
            if (
                info is not None
                and info.total_count is not None
                and len(collected) >= (info.total_count)
            ):
                break
            if info is not None and info.total_pages is not None and page >= info.total_pages:
                break
            page += 1
        return collected


class CloudflareClients:
    """One `CloudflareClient` (and so one `RateBudget`) per API token, on one HTTP client.

    ```
    clients = CloudflareClients(http, base_url, rate_limit=1000, window_seconds=300)
    client = clients.for_token(SecretStr(token))
    ```

    Tokens are keyed by their SHA-256 digest; the registry never stores a token as a key.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str = DEFAULT_BASE_URL,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        retry: RetryPolicy | None = None,
        observer: RequestObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._http = http
        self.base_url = base_url
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self._retry = retry or RetryPolicy()
        self._observer = observer or NullObserver()
        self._clock = clock or SystemClock()
        self._clients: dict[str, CloudflareClient] = {}

    def __repr__(self) -> str:
        return (
            f"CloudflareClients(base_url={self.base_url!r}, rate_limit={self.rate_limit}, "
            f"window_seconds={self.window_seconds:g}, tokens={len(self._clients)})"
        )

    def for_token(self, token: SecretStr) -> CloudflareClient:
        """The client of `token`; every call for the same token returns the same client."""
        key = token_fingerprint(token)
        client = self._clients.get(key)
        if client is None:
            client = CloudflareClient(
                self._http,
                token,
                base_url=self.base_url,
                budget=RateBudget(self.rate_limit, self.window_seconds, clock=self._clock),
                retry=self._retry,
                observer=self._observer,
                clock=self._clock,
            )
            self._clients[key] = client
        return client

    def budgets(self) -> Mapping[str, RateBudget]:
        """Every token's budget, keyed by the token's SHA-256 fingerprint (for metrics)."""
        return MappingProxyType({key: client.budget for key, client in self._clients.items()})
