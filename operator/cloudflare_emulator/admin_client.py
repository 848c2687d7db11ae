"""A small synchronous client for the emulator's admin API (``/__emulator``), for tests,
the demo and the benchmark. Works the same against an in-process :class:`EmulatorServer` and
an emulator running as a separate process.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, TypedDict, cast
from urllib.parse import quote

import httpx

from cloudflare_emulator.requestlog import RequestRecord

__all__ = ["AdminClient", "AdminError", "RequestRecord"]


class AdminError(RuntimeError):
    """The admin API refused a call (its message is the emulator's explanation)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"emulator admin API answered {status}: {message}")
        self.status = status
        self.message = message


class TokenView(TypedDict):
    id: str
    kind: str
    status: str
    effective_status: str
    account_ids: list[str]
    permissions: list[str]
    not_before: str | None
    expires_on: str | None


class AdminClient:
    def __init__(self, admin_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=admin_url.rstrip("/"), timeout=timeout)

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise AdminError(response.status_code, message)
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def health(self) -> bool:
        return bool(self._call("GET", "/health").get("ok"))

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll until the emulator answers (for an emulator started as a subprocess)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.health():
                    return
            except httpx.TransportError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    # --- accounts and tokens -------------------------------------------------------------------

    def create_account(self, account_id: str) -> None:
        self._call("POST", "/accounts", json={"account_id": account_id})

    def accounts(self) -> list[str]:
        return cast(list[str], self._call("GET", "/accounts")["accounts"])

    def create_token(
        self,
        token: str,
        account_ids: list[str],
        *,
        kind: str = "account",
        status: str = "active",
        permissions: list[str] | None = None,
        not_before: str | None = None,
        expires_on: str | None = None,
    ) -> TokenView:
        """Create (or overwrite) a token. ``permissions=None`` grants all of them."""
        body = {
            "token": token,
            "account_ids": account_ids,
            "kind": kind,
            "status": status,
            "permissions": permissions,
            "not_before": not_before,
            "expires_on": expires_on,
        }
        return cast(TokenView, self._call("POST", "/tokens", json=body))

    def update_token(self, token: str, **changes: Any) -> TokenView:
        """Change a token's status, permissions, account_ids, kind or dates."""
        return cast(
            TokenView, self._call("PATCH", f"/tokens/{quote(token, safe='')}", json=changes)
        )

    def set_token_status(self, token: str, status: str) -> TokenView:
        return self.update_token(token, status=status)

    def revoke_token(self, token: str) -> TokenView:
        return self.set_token_status(token, "disabled")

    def delete_token(self, token: str) -> None:
        self._call("DELETE", f"/tokens/{quote(token, safe='')}")

    def seed(
        self,
        account_id: str,
        token: str,
        *,
        kind: str = "account",
        status: str = "active",
        permissions: list[str] | None = None,
    ) -> TokenView:
        """Create an account and a token for it (all permissions unless given)."""
        # One call: creating a token creates the accounts it names.
        return self.create_token(
            token, [account_id], kind=kind, status=status, permissions=permissions
        )

    # --- connectors ----------------------------------------------------------------------------

    def connect(
        self,
        account_id: str,
        tunnel_id: str,
        count: int = 1,
        *,
        version: str | None = None,
        arch: str | None = None,
    ) -> list[dict[str, Any]]:
        """Attach ``count`` simulated cloudflared connectors; return them."""
        body: dict[str, Any] = {"count": count}
        if version is not None:
            body["version"] = version
        if arch is not None:
            body["arch"] = arch
        path = f"/accounts/{account_id}/tunnels/{tunnel_id}/connectors"
        return cast(list[dict[str, Any]], self._call("POST", path, json=body)["connectors"])

    def disconnect(self, account_id: str, tunnel_id: str) -> int:
        """Drop every connector of the tunnel; return how many there were."""
        path = f"/accounts/{account_id}/tunnels/{tunnel_id}/connectors"
        return int(self._call("DELETE", path)["removed"])

    def set_auto_connect(self, connectors: int, *, delay_seconds: float | None = None) -> None:
        body: dict[str, Any] = {"connectors": connectors}
        if delay_seconds is not None:
            body["delay_seconds"] = delay_seconds
        self._call("PUT", "/auto-connect", json=body)

    # --- faults, rate limit, settings ----------------------------------------------------------

    def set_faults(
        self,
        *,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        error_status: int = 503,
        error_burst: int = 0,
        rate_limit_burst: int = 0,
        retry_after: int = 1,
        drop_rate: float = 0.0,
        account_id: str | None = None,
        operations: list[str] | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replace the fault settings (anything not given is off)."""
        body = {
            "latency_ms": latency_ms,
            "error_rate": error_rate,
            "error_status": error_status,
            "error_burst": error_burst,
            "rate_limit_burst": rate_limit_burst,
            "retry_after": retry_after,
            "drop_rate": drop_rate,
            "account_id": account_id,
            "operations": operations,
            "seed": seed,
        }
        return cast(dict[str, Any], self._call("PUT", "/faults", json=body))

    def faults(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/faults"))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_rate_limit(
        self, limit: int, window_seconds: float, *, block_on_exceed: bool = False
    ) -> None:
        body = {
            "limit": limit,
            "window_seconds": window_seconds,
            "block_on_exceed": block_on_exceed,
        }
        self._call("PUT", "/rate-limit", json=body)

    def rate_limit(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/rate-limit"))

    def restore_rate_limit(self) -> None:
        """Back to the limit the emulator was started with (fresh windows for every token)."""
        self._call("DELETE", "/rate-limit")

    def update_settings(self, **settings: Any) -> dict[str, Any]:
        """``services_per_account``, ``tunnels_default_per_page``, ``require_known_tunnel``."""
        return cast(dict[str, Any], self._call("PUT", "/settings", json=settings))

    def settings(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/settings"))

    # --- request log, counters, state ----------------------------------------------------------

    def requests(
        self, *, account_id: str | None = None, since_seq: int | None = None
    ) -> list[RequestRecord]:
        params: dict[str, Any] = {}
        if account_id is not None:
            params["account_id"] = account_id
        if since_seq is not None:
            params["since_seq"] = since_seq
        return cast(list[RequestRecord], self._call("GET", "/requests", params=params))

    def last_seq(self) -> int:
        """The sequence number of the newest logged request (0 when none)."""
        records = self.requests()
        return records[-1]["seq"] if records else 0

    def counters(self, *, account_id: str | None = None) -> dict[str, dict[str, int]]:
        params = {"account_id": account_id} if account_id is not None else None
        return cast(dict[str, dict[str, int]], self._call("GET", "/counters", params=params))

    def count(
        self, operation: str, status: int | None = None, *, account_id: str | None = None
    ) -> int:
        """How many requests ran ``operation`` (answered with ``status``, when given)."""
        by_status = self.counters(account_id=account_id).get(operation, {})
        if status is not None:
            return by_status.get(str(status), 0)
        return sum(by_status.values())

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def state(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/state"))

    def tunnels(self, account_id: str) -> list[dict[str, Any]]:
        """Stored tunnels of one account (deleted ones included), from the state dump."""
        accounts = self.state()["accounts"]
        return cast(list[dict[str, Any]], accounts.get(account_id, {}).get("tunnels", []))

    def vpc_services(self, account_id: str) -> list[dict[str, Any]]:
        accounts = self.state()["accounts"]
        return cast(list[dict[str, Any]], accounts.get(account_id, {}).get("vpc_services", []))

    def reset(self, *, keep_credentials: bool = False) -> None:
        self._call("POST", "/reset", json={"keep_credentials": keep_credentials})

    # --- edits behind the API's back -----------------------------------------------------------

    def edit_vpc_service(
        self, account_id: str, service_id: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch (RFC 7386: null removes a key) a stored service without validation,
        as a dashboard edit would; ``updated_at`` moves forward."""
        path = f"/accounts/{account_id}/vpc-services/{service_id}"
        return cast(dict[str, Any], self._call("PATCH", path, json=patch))

    def delete_vpc_service(self, account_id: str, service_id: str) -> None:
        self._call("DELETE", f"/accounts/{account_id}/vpc-services/{service_id}")

    def edit_tunnel(self, account_id: str, tunnel_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change a stored tunnel's name, config_src, deleted_at or metadata directly."""
        path = f"/accounts/{account_id}/tunnels/{tunnel_id}"
        return cast(dict[str, Any], self._call("PATCH", path, json=patch))
