"""Command line: run the emulator as a process until SIGTERM or SIGINT.

    python -m cloudflare_emulator --port 8787 --account ACCOUNT_ID --token TOKEN

Each ``--account``/``--token`` pair seeds an account and an account-owned token holding every
permission. Once listening, the API base URL is printed alone on one line of standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from cloudflare_emulator.core import Emulator
from cloudflare_emulator.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_SECONDS
from cloudflare_emulator.server import base_urls, serve

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudflare_emulator",
        description="Local emulator of the Cloudflare API (tunnels, Workers VPC services).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--account", action="append", default=[], metavar="ACCOUNT_ID")
    parser.add_argument("--token", action="append", default=[], metavar="TOKEN")
    parser.add_argument("--state-file", default=None, metavar="PATH")
    parser.add_argument("--rate-limit", type=int, default=DEFAULT_LIMIT, metavar="N")
    parser.add_argument(
        "--rate-window", type=float, default=DEFAULT_WINDOW_SECONDS, metavar="SECONDS"
    )
    parser.add_argument(
        "--auto-connect",
        type=int,
        default=0,
        metavar="N",
        help="attach N simulated connectors to every new remotely-managed tunnel",
    )
    return parser


async def _run(args: argparse.Namespace) -> None:
    emulator = Emulator(
        state_file=args.state_file,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
        auto_connect=args.auto_connect,
    )
    for account_id, token in zip(args.account, args.token, strict=True):
        emulator.state.put_token(token, account_ids=[account_id])
    emulator.changed()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(emulator, args.host, args.port) as port:
        print(base_urls(args.host, port)[0], flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if len(args.account) != len(args.token):
        parser.error("give --account and --token in pairs")
    if args.rate_limit < 1 or args.rate_window <= 0:
        parser.error("--rate-limit must be >= 1 and --rate-window > 0")
    if args.auto_connect < 0:
        parser.error("--auto-connect must be >= 0")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
