"""``cunzhi``: the operator's command.

- ``cunzhi infra up``  start the embedded PostgreSQL and Tansu, print how to connect, wait.
- ``cunzhi demo``      run a township's forum cycle end to end on the embedded stack.
- ``cunzhi docs``      regenerate docs/events (AsyncAPI and JSON Schemas) from the code.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path

from cunzhi_platform.infra import InfrastructureError, embedded
from cunzhi_platform.logging import configure_logging
from cunzhi_platform.settings import Settings

from .cycle import CycleError


def _infra_up(settings: Settings) -> None:
    with embedded(settings.data_dir) as (endpoints, pg, kafka):
        print("cunzhi embedded infrastructure is up (Ctrl-C stops it):")
        print(f"  export CUNZHI_DATABASE_URL={endpoints.database_url}")
        print(f"  export CUNZHI_KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap_servers}")
        print(f"  data: {settings.data_dir.resolve()} (PostgreSQL; Tansu keeps messages in memory)")
        print(f"  logs: {pg.log_path} {kafka.log_path}")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()


def _docs(root: Path) -> None:
    from cunzhi_platform import asyncapi

    from .services import SERVICES

    for name, (registry, description) in SERVICES.items():
        asyncapi.write(root / "docs" / "events" / name, name, registry, description)
        print(f"wrote docs/events/{name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cunzhi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    infra = sub.add_parser("infra", help="embedded infrastructure")
    infra.add_argument("action", choices=["up"])
    infra.add_argument("--data-dir", type=Path, help="where PostgreSQL keeps its data")
    demo = sub.add_parser("demo", help="run a forum cycle end to end on the embedded stack")
    demo.add_argument("--data-dir", type=Path, help="where the demo's PostgreSQL keeps its data")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the services up after the cycle, to explore the APIs",
    )
    sub.add_parser("docs", help="regenerate docs/events from the code")
    args = parser.parse_args(argv)
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    if args.command == "demo" and "log_level" not in settings.model_fields_set:
        # The demo's output is for reading: only warnings and errors, as text.
        settings = settings.model_copy(update={"log_level": "WARNING", "log_json": False})
    configure_logging(settings.log_level, settings.log_json)
    try:
        if args.command == "infra":
            _infra_up(settings)
        elif args.command == "docs":
            _docs(Path.cwd())
        elif args.command == "demo":
            from .demo import run_demo

            asyncio.run(run_demo(settings, keep_running=args.keep_running))
    except InfrastructureError as exc:
        print(f"cunzhi: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except CycleError as exc:
        print(f"cunzhi demo failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
