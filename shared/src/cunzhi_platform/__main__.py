"""``python -m cunzhi_platform relay --service NAME``: run a service's outbox relay alone.

Useful to scale or restart the relay independently of the HTTP app (and used by the
crash test, which SIGKILLs it mid-batch).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from .infra import InfrastructureError
from .kafka import make_broker
from .logging import configure_logging
from .relay import OutboxRelay
from .settings import Settings


async def _relay(service: str, settings: Settings) -> None:
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise InfrastructureError("set CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS")
    broker = make_broker(settings.kafka_bootstrap_servers, client_id=f"cunzhi-{service}-relay")
    await broker.connect()
    relay = OutboxRelay(
        database_url=settings.database_url,
        broker=broker,
        service=service,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        await broker.stop()


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
