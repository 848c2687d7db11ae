"""Serving the emulator: :class:`EmulatorServer` runs it in a background thread with its own
event loop (for tests and tools in the same process), and :func:`serve` is the async building
block it shares with the command line (``__main__.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from aiohttp import web

from cloudflare_emulator.admin import ADMIN_PREFIX
from cloudflare_emulator.app import create_app
from cloudflare_emulator.core import Emulator
from cloudflare_emulator.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_SECONDS
from cloudflare_emulator.routes import API_PREFIX

__all__ = ["EmulatorServer", "serve"]

STOP_TIMEOUT_SECONDS = 10.0

logger = logging.getLogger(__name__)


@asynccontextmanager
async def serve(emulator: Emulator, host: str, port: int) -> AsyncIterator[int]:
    """Listen on host:port (0 picks a free port) and yield the bound port; on exit stop
    listening and write any unsaved state."""
    # No access log: admin URLs may carry a token, and a log line per request is noise.
    runner = web.AppRunner(create_app(emulator), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield int(bound)
    finally:
        await runner.cleanup()
        emulator.flush()


def base_urls(host: str, port: int) -> tuple[str, str]:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"http://{authority}{API_PREFIX}", f"http://{authority}{ADMIN_PREFIX}"


class EmulatorServer:
    """The emulator on a background thread.

    ``start()`` returns once the port is open; ``url`` is the Cloudflare API base URL to give
    clients, ``admin_url`` the admin API's. Usable as a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
        *,
        rate_limit: int = DEFAULT_LIMIT,
        rate_window: float = DEFAULT_WINDOW_SECONDS,
        auto_connect: int = 0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._state_file = state_file
        self._rate_limit = rate_limit
        self._rate_window = rate_window
        self._auto_connect = auto_connect
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return base_urls(self.host, self.port)[0]

    @property
    def admin_url(self) -> str:
        return base_urls(self.host, self.port)[1]

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._ready.clear()
        self._error = None
        self._port = None
        self._thread = threading.Thread(target=self._run, name="cloudflare-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._port is None:
            # _run() stopped before listening; its exception says why.
            self._thread.join()
            self._thread = None
            raise RuntimeError("the Cloudflare API emulator failed to start") from self._error

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(STOP_TIMEOUT_SECONDS)
        self._thread = None
        self._port = None

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as error:
            # Before listening, start() re-raises it; afterwards nobody waits for it.
            self._error = error
            if self._port is not None:
                logger.exception("the Cloudflare API emulator stopped with an error")
        finally:
            self._ready.set()
            loop.close()
            self._loop = None

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        emulator = Emulator(
            state_file=self._state_file,
            rate_limit=self._rate_limit,
            rate_window=self._rate_window,
            auto_connect=self._auto_connect,
        )
        async with serve(emulator, self.host, self._requested_port) as port:
            self._port = port
            self._ready.set()
            await self._stop.wait()
