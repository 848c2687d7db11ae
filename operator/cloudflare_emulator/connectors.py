"""Simulated cloudflared connectors: what ``/connections`` shows for a running replica.

Each connector holds four connections spread over two data centres, as a real cloudflared
process does. Field values are realistic but made up (documentation IP ranges, real colo
codes, a current release number).
"""

from __future__ import annotations

import random
import uuid

from cloudflare_emulator.state import Connector
from cloudflare_emulator.timestamps import now_rfc3339

__all__ = ["CONNECTIONS_PER_CONNECTOR", "DEFAULT_VERSION", "new_connector"]

CONNECTIONS_PER_CONNECTOR = 4
DEFAULT_VERSION = "2025.8.1"
DEFAULT_ARCH = "linux_amd64"
_COLOS = ("FRA", "AMS", "CDG", "LHR", "DUB", "ZRH", "IAD", "ORD", "SJC", "NRT")
_FEATURES = ("serialized_headers", "support_datagram_v3_2", "support_quic_eof", "management_logs")


def new_connector(
    *,
    config_version: int,
    version: str = DEFAULT_VERSION,
    arch: str = DEFAULT_ARCH,
    rng: random.Random | None = None,
) -> Connector:
    rng = rng or random.Random()
    connector_id = str(uuid.uuid4())
    started = now_rfc3339()
    colos = rng.sample(_COLOS, 2)
    origin_ip = f"198.51.100.{rng.randint(1, 254)}"
    conns = []
    for index in range(CONNECTIONS_PER_CONNECTOR):
        conn_id = str(uuid.uuid4())
        conns.append(
            {
                "id": conn_id,
                "uuid": conn_id,
                "client_id": connector_id,
                "client_version": version,
                "colo_name": colos[index % 2],
                "is_pending_reconnect": False,
                "opened_at": started,
                "origin_ip": origin_ip,
            }
        )
    return Connector(
        id=connector_id,
        version=version,
        arch=arch,
        config_version=config_version,
        features=list(_FEATURES),
        run_at=started,
        conns=conns,
    )
