"""The emulator itself, independent of HTTP: stored state plus the machinery around it
(fault injection, rate limiting, request log, settings, auto-connect and persistence).

One :class:`Emulator` lives in the event loop that serves it; route and admin handlers reach
it through the aiohttp application. Nothing here is thread-safe, and nothing needs to be:
everything runs in that one loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass, fields
from typing import Any

from cloudflare_emulator.connectors import new_connector
from cloudflare_emulator.faults import FaultInjector
from cloudflare_emulator.persistence import StateFile
from cloudflare_emulator.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_SECONDS, RateLimiter
from cloudflare_emulator.requestlog import RequestLog
from cloudflare_emulator.state import Connector, EmulatorState, Tunnel

__all__ = ["AutoConnect", "Emulator", "Settings"]

logger = logging.getLogger(__name__)

# Saves are coalesced: at most one write per interval, however many mutations happen.
SAVE_INTERVAL_SECONDS = 0.2


@dataclass
class Settings:
    """Behaviour the tests may tune where Cloudflare's own is unknown or slow to reach."""

    services_per_account: int = 1000  # Workers VPC's documented limit
    tunnels_default_per_page: int = 20  # Cloudflare's default is undocumented; 20 is its usual
    require_known_tunnel: bool = False  # whether a service's tunnel_id must exist (unknown)

    def update(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError("settings must be a JSON object")
        known = {f.name: f.type for f in fields(self)}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown setting {key!r}")
            if key == "require_known_tunnel":
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be a boolean")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer")
        for key, value in data.items():
            setattr(self, key, value)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class AutoConnect:
    """Attach connectors to every new remotely-managed tunnel, for runs without cloudflared."""

    connectors: int = 0
    delay_seconds: float = 0.2

    def to_json(self) -> dict[str, Any]:
        return {"connectors": self.connectors, "delay_seconds": self.delay_seconds}


class Emulator:
    def __init__(
        self,
        *,
        state_file: str | os.PathLike[str] | None = None,
        rate_limit: int = DEFAULT_LIMIT,
        rate_window: float = DEFAULT_WINDOW_SECONDS,
        auto_connect: int = 0,
    ) -> None:
        self.state = EmulatorState()
        self.faults = FaultInjector()
        self.limiter = RateLimiter(rate_limit, rate_window)
        self.log = RequestLog()
        self.settings = Settings()
        self.auto_connect = AutoConnect(connectors=auto_connect)
        # What reset() returns to: the configuration the emulator was started with.
        self._startup = (rate_limit, rate_window, auto_connect)
        self.random = random.Random()
        self._state_file = StateFile(state_file) if state_file is not None else None
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_save = 0.0
        self._dirty = False
        if self._state_file is not None:
            record = self._state_file.load()
            if record is not None:
                self.state = EmulatorState.from_record(record)

    # --- persistence -----------------------------------------------------------------

    def changed(self) -> None:
        """Record that state changed; it is saved at once or within SAVE_INTERVAL_SECONDS."""
        if self._state_file is None:
            return
        self._dirty = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._save_handle is None:
            delay = max(0.0, self._last_save + SAVE_INTERVAL_SECONDS - time.monotonic())
            self._save_handle = loop.call_later(delay, self._scheduled_save)

    def _scheduled_save(self) -> None:
        self._save_handle = None
        try:
            self.flush()
        except OSError:
            # A full disk must not take the API down; the next change tries again.
            logger.exception("could not save the emulator state")

    def flush(self) -> None:
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_handle = None
        if self._state_file is None or not self._dirty:
            return
        self._state_file.save(self.state.to_record())
        self._dirty = False
        self._last_save = time.monotonic()

    # --- connectors --------------------------------------------------------------------

    def connect(
        self, tunnel: Tunnel, count: int, *, version: str | None = None, arch: str | None = None
    ) -> list[Connector]:
        extra: dict[str, str] = {}
        if version is not None:
            extra["version"] = version
        if arch is not None:
            extra["arch"] = arch
        connectors = [
            new_connector(config_version=tunnel.config_version, rng=self.random, **extra)
            for _ in range(count)
        ]
        tunnel.attach(connectors)
        self.changed()
        return connectors

    def tunnel_created(self, tunnel: Tunnel) -> None:
        if self.auto_connect.connectors <= 0 or tunnel.config_src != "cloudflare":
            return
        count = self.auto_connect.connectors
        asyncio.get_running_loop().call_later(
            self.auto_connect.delay_seconds, self._auto_connect, tunnel, count
        )

    def _auto_connect(self, tunnel: Tunnel, count: int) -> None:
        account = self.state.accounts.get(tunnel.account_id)
        # The tunnel may have been deleted, or the state reset, in the meantime.
        if account is None or account.tunnels.get(tunnel.id) is not tunnel or tunnel.deleted:
            return
        self.connect(tunnel, count)

    # --- reset -------------------------------------------------------------------------

    def reset(self, *, keep_credentials: bool = False) -> None:
        """Forget objects, faults, rate-limit usage, the log and settings (back to the start-up
        configuration); with ``keep_credentials`` accounts and tokens stay."""
        tokens = self.state.tokens if keep_credentials else {}
        accounts = list(self.state.accounts) if keep_credentials else []
        self.state = EmulatorState(tokens=tokens)
        for account_id in accounts:
            self.state.ensure_account(account_id)
        rate_limit, rate_window, auto_connect = self._startup
        self.faults.clear()
        self.limiter.configure(rate_limit, rate_window, block_on_exceed=False)
        self.log.clear()
        self.settings = Settings()
        self.auto_connect = AutoConnect(connectors=auto_connect)
        self.changed()

    def restore_rate_limit(self) -> None:
        rate_limit, rate_window, _ = self._startup
        self.limiter.configure(rate_limit, rate_window, block_on_exceed=False)
