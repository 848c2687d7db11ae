"""A stand-in for cloudflared in the kind end-to-end test (``hack/e2e-kind.sh``).

The end-to-end test points the operator at the Cloudflare API emulator, whose tunnels exist
nowhere on Cloudflare's network: a real cloudflared could never connect, so its ``/ready``
would never answer 200 and no Tunnel would become Ready. This stub takes cloudflared's place in
the connector pods: it accepts the arguments the operator gives cloudflared, serves
``/ready`` (200 once the run-token file the operator mounts is there and not empty),
``/healthcheck`` and ``/metrics`` on the ``--metrics`` address, and exits on SIGTERM. The
emulator's ``--auto-connect`` reports the tunnel's connections on the Cloudflare side.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def option(argv: list[str], name: str, default: str) -> str:
    """The value after ``name`` in ``argv`` (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return default


def main(argv: list[str]) -> int:
    host, _, port = option(argv, "--metrics", "0.0.0.0:2000").rpartition(":")
    token_file = Path(option(argv, "--token-file", "/etc/cloudflared/token/token"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ready":
                ready = token_file.is_file() and token_file.read_text().strip() != ""
                self.answer(200 if ready else 503, '{"status": 200, "readyConnections": 4}')
            elif self.path == "/healthcheck":
                self.answer(200, "OK\n")
            elif self.path == "/metrics":
                self.answer(200, "cloudflared_stub_up 1\n")
            else:
                self.answer(404, "not found\n")

        def answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # Probes every few seconds would drown the pod's log.

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)  # noqa: S104
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"cloudflared stand-in serving on {host}:{port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
