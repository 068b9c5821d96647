"""``python -m cunzhi_platform relay --service NAME``: run a service's outbox relay alone.

Useful to scale or restart the relay independently of the HTTP app (and used by the
crash test, which SIGKILLs it mid-batch).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from .infra import InfrastructureError
from .logging import configure_logging
from .relay import OutboxRelay
from .settings import Settings


async def _relay(service: str, settings: Settings) -> None:
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise InfrastructureError("set CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS")
    relay = OutboxRelay(settings, service)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, relay.stop)
    await relay.run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cunzhi_platform")
    sub = parser.add_subparsers(dest="command", required=True)
    relay = sub.add_parser("relay", help="run the outbox relay of one service")
    relay.add_argument("--service", required=True)
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    if args.command == "relay":
        asyncio.run(_relay(args.service, settings))


if __name__ == "__main__":
    main()
