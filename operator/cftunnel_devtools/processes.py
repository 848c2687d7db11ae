"""Run the operator (and, when asked, the Cloudflare emulator) as real child processes.

Tests, the demo and the benchmark all start the operator the way users do: as
``python -m cftunnel_operator`` configured from ``CFTUNNEL_*`` environment variables, with its
logs going to a file that tests can read (for instance to prove no token was logged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cftunnel_devtools.controlplane import free_port

__all__ = ["EmulatorProcess", "OperatorProcess"]


def terminate(popen: subprocess.Popen[bytes] | None, timeout: float | None) -> None:
    """Stop a child: SIGTERM and up to ``timeout`` seconds of grace, then SIGKILL
    (``timeout=None``: SIGKILL at once, as a crash would)."""
    if popen is None or popen.poll() is not None:
        return
    if timeout is not None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    popen.kill()
    popen.wait(timeout=10)


@dataclass
class OperatorProcess:
    """One operator process; ``start``/``stop``/``kill`` can be called repeatedly."""

    env: Mapping[str, str]
    log_path: Path
    health_port: int
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, *, wait_healthy: float = 60) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        if self.running:
            return
        log = self.log_path.open("ab")
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "cftunnel_operator"],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        if wait_healthy:
            self.wait_healthy(wait_healthy)

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def wait_healthy(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"operator exited early; log:\n{self.log_tail()}")
            try:
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy after {timeout}s; log:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        terminate(self._popen, timeout)
        self._popen = None

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up (crash tests)."""
        terminate(self._popen, None)
        self._popen = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@dataclass
class EmulatorProcess:
    """``python -m cloudflare_emulator`` on a fixed port, optionally with a state file.

    The port stays the same across restarts, so an operator pointed at ``url`` reaches the
    restarted emulator without being reconfigured. ``accounts`` are ``(account id, token)``
    pairs seeded at every start (the state file keeps only digests of tokens); ``extra_args``
    go to the command line as they are (``--auto-connect 2``, ``--rate-limit 120``, ...).
    """

    log_path: Path
    accounts: Sequence[tuple[str, str]]
    state_file: Path | None = None
    extra_args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/__emulator"

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def admin(self) -> Any:
        """A ``cloudflare_emulator.AdminClient`` for this emulator (close it when done)."""
        from cloudflare_emulator import AdminClient

        return AdminClient(self.admin_url)

    def start(self, *, timeout: float = 30) -> None:
        """Start and wait until the admin API answers."""
        if self.running:
            return
        args = [sys.executable, "-m", "cloudflare_emulator", "--port", str(self.port)]
        if self.state_file is not None:
            args += ["--state-file", str(self.state_file)]
        args += list(self.extra_args)
        for account_id, token in self.accounts:
            args += ["--account", account_id, "--token", token]
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        admin = self.admin()
        try:
            admin.wait_ready(timeout)
        finally:
            admin.close()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM: the emulator saves its state and exits."""
        terminate(self._popen, timeout)
        self._popen = None

    def kill(self) -> None:
        """SIGKILL: the changes of its last moments (state is written within 0.2 s) may be lost."""
        terminate(self._popen, None)
        self._popen = None
