"""A local emulator of the Cloudflare API endpoints the operator uses (tunnels, Workers VPC
services, token checks), with an admin API for tests. Never imported by the operator.

    from cloudflare_emulator import AdminClient, EmulatorServer

    with EmulatorServer() as server:
        admin = AdminClient(server.admin_url)
        admin.seed("0123456789abcdef0123456789abcdef", "test-token")
        ...  # point a Cloudflare client at server.url

Run it as a process with ``python -m cloudflare_emulator --port PORT``.
"""

from cloudflare_emulator.admin_client import AdminClient, AdminError, RequestRecord
from cloudflare_emulator.server import EmulatorServer

__all__ = ["AdminClient", "AdminError", "EmulatorServer", "RequestRecord"]
