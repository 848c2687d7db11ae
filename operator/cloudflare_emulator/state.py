"""The emulator's stored objects: accounts, API tokens, tunnels with their simulated
connectors and remote configuration, and Workers VPC services.

Objects render themselves the way the API returns them (``to_api``) and round-trip through
plain JSON records for persistence (``to_record`` / ``from_record``). API tokens are kept only
as a SHA-256 digest, so neither the state dump nor the state file ever holds a token.
Validation of request bodies lives in ``validation.py``; HTTP lives in the route modules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from cloudflare_emulator.timestamps import now_rfc3339, parse_rfc3339, utcnow

__all__ = [
    "ALL_PERMISSIONS",
    "Account",
    "ApiToken",
    "Connector",
    "EmulatorState",
    "TokenKind",
    "TokenStatus",
    "Tunnel",
    "VpcService",
    "hash_token",
]

TokenKind = Literal["account", "user"]
TokenStatus = Literal["active", "disabled", "expired"]

# Permission names follow the OAuth scopes Cloudflare uses for these products
# (wrangler asks for "connectivity:admin"); an API token's permission groups map onto them.
ALL_PERMISSIONS: tuple[str, ...] = (
    "tunnel:read",
    "tunnel:write",
    "connectivity:read",
    "connectivity:admin",
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class ApiToken:
    token_hash: str
    id: str
    kind: TokenKind
    status: TokenStatus
    account_ids: list[str]
    permissions: list[str]
    not_before: str | None = None
    expires_on: str | None = None

    def effective_status(self) -> TokenStatus:
        # A token past its expiry date reads as "expired" whatever was stored, as on Cloudflare.
        if self.expires_on is not None and parse_rfc3339(self.expires_on) <= utcnow():
            return "expired"
        return self.status

    def allows(self, permission: str) -> bool:
        # Cloudflare's "Edit" permission groups include the matching "Read".
        implied = {"tunnel:read": "tunnel:write", "connectivity:read": "connectivity:admin"}
        return permission in self.permissions or implied.get(permission) in self.permissions

    def verify_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"id": self.id, "status": self.effective_status()}
        if self.not_before is not None:
            result["not_before"] = self.not_before
        if self.expires_on is not None:
            result["expires_on"] = self.expires_on
        return result

    def public_view(self) -> dict[str, Any]:
        """What the admin API shows: everything except the digest of the secret."""
        view = {k: v for k, v in self.to_record().items() if k != "token_hash"}
        view["effective_status"] = self.effective_status()
        return view

    def to_record(self) -> dict[str, Any]:
        return {
            "token_hash": self.token_hash,
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "account_ids": list(self.account_ids),
            "permissions": list(self.permissions),
            "not_before": self.not_before,
            "expires_on": self.expires_on,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ApiToken:
        return cls(
            token_hash=record["token_hash"],
            id=record["id"],
            kind=cast(TokenKind, record["kind"]),
            status=cast(TokenStatus, record["status"]),
            account_ids=list(record["account_ids"]),
            permissions=list(record["permissions"]),
            not_before=record.get("not_before"),
            expires_on=record.get("expires_on"),
        )


@dataclass
class Connector:
    """One simulated cloudflared process and its connections to Cloudflare's edge."""

    id: str
    version: str
    arch: str
    config_version: int
    features: list[str]
    run_at: str
    conns: list[dict[str, Any]]

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "arch": self.arch,
            "config_version": self.config_version,
            "conns": [dict(conn) for conn in self.conns],
            "features": list(self.features),
            "run_at": self.run_at,
            "version": self.version,
        }

    def to_record(self) -> dict[str, Any]:
        return self.to_api()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Connector:
        return cls(
            id=record["id"],
            version=record["version"],
            arch=record["arch"],
            config_version=int(record["config_version"]),
            features=list(record["features"]),
            run_at=record["run_at"],
            conns=[dict(conn) for conn in record["conns"]],
        )


@dataclass
class Tunnel:
    id: str
    account_id: str
    name: str
    config_src: str
    secret: str
    created_at: str
    deleted_at: str | None = None
    conns_active_at: str | None = None
    conns_inactive_at: str | None = None
    ever_connected: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    connectors: list[Connector] = field(default_factory=list)
    config: dict[str, Any] | None = None
    config_version: int = 0
    config_created_at: str | None = None

    @classmethod
    def new(cls, account_id: str, name: str, config_src: str, secret: str | None) -> Tunnel:
        created = now_rfc3339()
        return cls(
            id=str(uuid.uuid4()),
            account_id=account_id,
            name=name,
            config_src=config_src,
            # Cloudflare generates the secret when the client sends none (wrangler relies on it).
            secret=secret or base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            created_at=created,
            # A fresh tunnel has never been up: Cloudflare reports it inactive since creation.
            conns_inactive_at=created,
        )

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def status(self) -> str:
        if self.connectors:
            return "healthy"
        return "down" if self.ever_connected else "inactive"

    def run_token(self) -> str:
        """cloudflared's run token: base64 of compact JSON {"a", "s", "t"}."""
        document = {"a": self.account_id, "s": self.secret, "t": self.id}
        compact = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return base64.b64encode(compact).decode("ascii")

    def credentials_file(self) -> dict[str, str]:
        return {
            "AccountTag": self.account_id,
            "TunnelID": self.id,
            "TunnelName": self.name,
            "TunnelSecret": self.secret,
        }

    def attach(self, connectors: list[Connector]) -> None:
        if not connectors:
            return
        if not self.connectors:
            self.conns_active_at = now_rfc3339()
            self.conns_inactive_at = None
        self.ever_connected = True
        self.connectors.extend(connectors)

    def detach(self, client_id: str | None = None) -> int:
        """Drop all connectors, or only the one with ``client_id``; return how many went."""
        before = len(self.connectors)
        if client_id is None:
            self.connectors = []
        else:
            wanted = client_id.lower()
            self.connectors = [c for c in self.connectors if c.id.lower() != wanted]
        removed = before - len(self.connectors)
        if removed and not self.connectors:
            self.conns_active_at = None
            self.conns_inactive_at = now_rfc3339()
        return removed

    def configuration(self) -> dict[str, Any]:
        return {
            "tunnel_id": self.id,
            "account_id": self.account_id,
            "version": self.config_version,
            "source": "cloudflare",
            "created_at": self.config_created_at or self.created_at,
            "config": self.config,
        }

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_tag": self.account_id,
            "name": self.name,
            "config_src": self.config_src,
            # Deprecated mirror of config_src that Cloudflare still returns.
            "remote_config": self.config_src == "cloudflare",
            "status": self.status,
            "tun_type": "cfd_tunnel",
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "conns_active_at": self.conns_active_at,
            "conns_inactive_at": self.conns_inactive_at,
            # Deprecated and being emptied by Cloudflare; connectors come from /connections.
            "connections": [],
            "metadata": dict(self.metadata),
        }

    def dump(self) -> dict[str, Any]:
        """The admin view: the API object plus what only the emulator knows, minus the secret."""
        return {
            **self.to_api(),
            "connectors": [c.to_api() for c in self.connectors],
            "configuration": self.configuration(),
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "name": self.name,
            "config_src": self.config_src,
            "secret": self.secret,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "conns_active_at": self.conns_active_at,
            "conns_inactive_at": self.conns_inactive_at,
            "ever_connected": self.ever_connected,
            "metadata": self.metadata,
            "connectors": [c.to_record() for c in self.connectors],
            "config": self.config,
            "config_version": self.config_version,
            "config_created_at": self.config_created_at,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Tunnel:
        return cls(
            id=record["id"],
            account_id=record["account_id"],
            name=record["name"],
            config_src=record["config_src"],
            secret=record["secret"],
            created_at=record["created_at"],
            deleted_at=record.get("deleted_at"),
            conns_active_at=record.get("conns_active_at"),
            conns_inactive_at=record.get("conns_inactive_at"),
            ever_connected=bool(record.get("ever_connected", False)),
            metadata=dict(record.get("metadata") or {}),
            connectors=[Connector.from_record(c) for c in record.get("connectors", [])],
            config=record.get("config"),
            config_version=int(record.get("config_version", 0)),
            config_created_at=record.get("config_created_at"),
        )


@dataclass
class VpcService:
    """A Workers VPC service: the validated body exactly as stored, plus read-only fields."""

    service_id: str
    fields: dict[str, Any]
    created_at: str
    updated_at: str

    def to_api(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            **json.loads(json.dumps(self.fields)),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_record(self) -> dict[str, Any]:
        return self.to_api()

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> VpcService:
        read_only = {"service_id", "created_at", "updated_at"}
        return cls(
            service_id=record["service_id"],
            fields={k: v for k, v in record.items() if k not in read_only},
            created_at=record["created_at"],
            updated_at=record["updated_at"],
        )


@dataclass
class Account:
    id: str
    # Insertion-ordered: listings return objects in creation order.
    tunnels: dict[str, Tunnel] = field(default_factory=dict)
    services: dict[str, VpcService] = field(default_factory=dict)

    def live_tunnel_named(self, name: str) -> Tunnel | None:
        return next((t for t in self.tunnels.values() if not t.deleted and t.name == name), None)


@dataclass
class EmulatorState:
    accounts: dict[str, Account] = field(default_factory=dict)
    tokens: dict[str, ApiToken] = field(default_factory=dict)  # keyed by token digest

    def ensure_account(self, account_id: str) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = Account(account_id)
        return account

    def find_token(self, token: str) -> ApiToken | None:
        return self.tokens.get(hash_token(token))

    def put_token(
        self,
        token: str,
        *,
        account_ids: list[str],
        kind: TokenKind = "account",
        status: TokenStatus = "active",
        permissions: list[str] | None = None,
        not_before: str | None = None,
        expires_on: str | None = None,
    ) -> ApiToken:
        """Create the token, or update it in place (keeping its id) when it already exists."""
        digest = hash_token(token)
        existing = self.tokens.get(digest)
        record = ApiToken(
            token_hash=digest,
            id=existing.id if existing else uuid.uuid4().hex,
            kind=kind,
            status=status,
            account_ids=list(account_ids),
            permissions=list(ALL_PERMISSIONS if permissions is None else permissions),
            not_before=not_before,
            expires_on=expires_on,
        )
        for account_id in account_ids:
            self.ensure_account(account_id)
        self.tokens[digest] = record
        return record

    def dump(self) -> dict[str, Any]:
        """The admin state view: stored objects as the API shows them; tokens without secrets."""
        return {
            "accounts": {
                account.id: {
                    "tunnels": [t.dump() for t in account.tunnels.values()],
                    "vpc_services": [s.to_api() for s in account.services.values()],
                }
                for account in self.accounts.values()
            },
            "tokens": [token.public_view() for token in self.tokens.values()],
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "format": 1,
            "accounts": [
                {
                    "id": account.id,
                    "tunnels": [t.to_record() for t in account.tunnels.values()],
                    "vpc_services": [s.to_record() for s in account.services.values()],
                }
                for account in self.accounts.values()
            ],
            "tokens": [token.to_record() for token in self.tokens.values()],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EmulatorState:
        if record.get("format") != 1:
            raise ValueError(f"unsupported emulator state format: {record.get('format')!r}")
        state = cls()
        for item in record.get("accounts", []):
            account = state.ensure_account(item["id"])
            for tunnel_record in item.get("tunnels", []):
                tunnel = Tunnel.from_record(tunnel_record)
                account.tunnels[tunnel.id] = tunnel
            for service_record in item.get("vpc_services", []):
                service = VpcService.from_record(service_record)
                account.services[service.service_id] = service
        for token_record in record.get("tokens", []):
            token = ApiToken.from_record(token_record)
            state.tokens[token.token_hash] = token
        return state
