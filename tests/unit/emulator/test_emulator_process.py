"""The emulator as a server: start/stop and ports, JSON persistence across a restart, and the
``python -m cloudflare_emulator`` command line (seeding, one URL line, clean exit on SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from emulator_support import ACCOUNT, TOKEN, validating_client, wait_for

from cloudflare_emulator import AdminClient, EmulatorServer
from cloudflare_emulator.__main__ import main

TUNNELS = f"/accounts/{ACCOUNT}/cfd_tunnel"
SERVICES = f"/accounts/{ACCOUNT}/connectivity/directory/services"
OPERATOR_SOURCE = Path(__file__).resolve().parents[3] / "operator"


def test_urls_and_restartable_lifecycle() -> None:
    server = EmulatorServer(port=0)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    port = server.port
    try:
        assert port > 0
        assert server.url == f"http://127.0.0.1:{port}/client/v4"
        assert server.admin_url == f"http://127.0.0.1:{port}/__emulator"
        assert AdminClient(server.admin_url).health()
    finally:
        server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/__emulator/health")
    server.stop()  # stopping twice is harmless
    server.start()  # and the same object can serve again
    try:
        assert AdminClient(server.admin_url).health()
    finally:
        server.stop()


def test_a_busy_port_fails_start(server: EmulatorServer) -> None:
    with pytest.raises(RuntimeError, match="failed to start"):
        EmulatorServer(port=server.port).start()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "emulator.json"
    with EmulatorServer(state_file=state_file) as first:
        AdminClient(first.admin_url).seed(ACCOUNT, TOKEN)
        with validating_client(first.url) as api:
            tunnel = api.post(TUNNELS, json={"name": "kept", "config_src": "cloudflare"}).json()
            service = api.post(
                SERVICES,
                json={
                    "type": "tcp",
                    "name": "db",
                    "tcp_port": 5432,
                    "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": tunnel["result"]["id"]}},
                },
            ).json()["result"]
            AdminClient(first.admin_url).connect(ACCOUNT, tunnel["result"]["id"], 1)
            run_token = api.get(f"{TUNNELS}/{tunnel['result']['id']}/token").json()["result"]
        # Saved shortly after each change, without waiting for the server to stop.
        wait_for(lambda: state_file.exists() and service["service_id"] in state_file.read_text())
    saved = state_file.read_text()
    assert TOKEN not in saved  # tokens are stored as digests only
    assert json.loads(saved)["format"] == 1

    with EmulatorServer(state_file=state_file) as second, validating_client(second.url) as api:
        restored = api.get(f"{TUNNELS}/{tunnel['result']['id']}").json()["result"]
        assert restored["name"] == "kept"
        assert restored["status"] == "healthy"
        assert api.get(f"{TUNNELS}/{restored['id']}/token").json()["result"] == run_token
        assert api.get(f"{SERVICES}/{service['service_id']}").json()["result"] == service
        dup = api.post(TUNNELS, json={"name": "kept"})
        assert dup.status_code == 409


def test_a_state_file_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text('{"format": 99}')
    with pytest.raises(RuntimeError, match="failed to start"):
        EmulatorServer(state_file=state_file).start()


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OPERATOR_SOURCE), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "cloudflare_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _first_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not lines:
        process.kill()
        raise AssertionError("the emulator printed no URL")
    return lines[0].strip()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_line_seeds_prints_the_url_and_exits_cleanly(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    process = _spawn(
        "--account", ACCOUNT, "--token", TOKEN,
        "--account", "abcdefabcdefabcdefabcdefabcdefab", "--token", "second-token",
        "--rate-limit", "50", "--rate-window", "60", "--auto-connect", "1",
        "--state-file", str(tmp_path / "state.json"),
    )  # fmt: skip
    try:
        url = _first_line(process)
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/client/v4")
        with validating_client(url) as api:
            verified = api.get(f"/accounts/{ACCOUNT}/tokens/verify")
            assert verified.json()["result"]["status"] == "active"
            created = api.post(TUNNELS, json={"name": "cli", "config_src": "cloudflare"})
            assert created.headers["x-ratelimit-limit"] == "50"
            tunnel_id = created.json()["result"]["id"]
            wait_for(
                lambda: api.get(f"{TUNNELS}/{tunnel_id}").json()["result"]["status"] == "healthy"
            )
        with validating_client(url, "second-token") as second:
            assert (
                second.get("/accounts/abcdefabcdefabcdefabcdefabcdefab/cfd_tunnel").status_code
                == 200
            )
        admin = AdminClient(url.replace("/client/v4", "/__emulator"))
        assert admin.rate_limit()["limit"] == 50
    finally:
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert (tmp_path / "state.json").exists()


def test_command_line_refuses_unpaired_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--account", ACCOUNT])
    assert exited.value.code == 2
    assert "pairs" in capsys.readouterr().err
