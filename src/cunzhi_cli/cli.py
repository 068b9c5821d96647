"""``cunzhi``: the operator's command.

- ``cunzhi infra up``  start the embedded PostgreSQL and Tansu, print how to connect, wait.
- ``cunzhi demo``      run a township's forum cycle end to end on the embedded stack.
- ``cunzhi simulate [--seed N] [--townships 10] [--villages 602] [--months 12]``  a county
  through a year on the injected clock, with progress bars; ends with a summary from the read
  models and a check that each equals its rebuild (exit 1 if not).
- ``cunzhi docs``      regenerate docs/events (AsyncAPI and JSON Schemas) from the code.
- ``cunzhi republish SERVICE… | --all``  publish services' whole history again (a broker that
  lost its data, a new downstream consumer) while they serve; consumers skip what they have.
- ``cunzhi rebuild SERVICE PROJECTION [--force]``  rebuild a read model from the service's
  event store, while the service keeps serving (``CUNZHI_DATABASE_URL`` names the database);
  ``--force`` also over tables a newer version of the projection built (a rollback).
- ``cunzhi dlq list SERVICE [--replayed]``  the dead letters of the service's consumers
  waiting for a replay (or replayed, with when): reason, error, original
  topic/partition/offset, event type and id.
- ``cunzhi dlq replay SERVICE --id ID… | --all``  publish them again to their original topic
  (after the cause is fixed), each for the consumer that failed only; they leave the list.
- ``cunzhi export DIR [--from-kafka] [--service S…]``  every event as Parquet, one table per
  event type, by month; a second run adds only what is new (docs/analytics.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from cunzhi_platform.clock import SystemClock
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.infra import InfrastructureError, embedded
from cunzhi_platform.kafka import KafkaAccess, TopicPlan, ensure_topics
from cunzhi_platform.logging import configure_logging
from cunzhi_platform.rebuild import NewerProjection, RebuildError, rebuild
from cunzhi_platform.republish import HistoryAlreadyQueued, republish
from cunzhi_platform.runtime import Service, connect_database
from cunzhi_platform.settings import Settings
from pydantic import ValidationError

from .cycle import CycleError
from .export.files import ExportError
from .services import RUNNABLE, SERVICES


def _infra_up(settings: Settings) -> None:
    ports = (settings.embedded_postgres_port or None, settings.embedded_kafka_port or None)
    with embedded(settings.data_dir, *ports) as (endpoints, pg, kafka):
        print("cunzhi embedded infrastructure is up (Ctrl-C stops it):")
        print(f"  export CUNZHI_DATABASE_URL={endpoints.database_url}")
        print(f"  export CUNZHI_KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap_servers}")
        print(f"  data: {settings.data_dir.resolve()} (PostgreSQL; Tansu keeps messages in memory)")
        print(f"  logs: {pg.log_path} {kafka.log_path}")
        print("  a server that dies is restarted on the same port (ports kept in ports.json)")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()


def _docs(root: Path) -> None:
    from cunzhi_platform import asyncapi

    for name, (registry, description) in SERVICES.items():
        asyncapi.write(root / "docs" / "events" / name, name, registry, description)
        print(f"wrote docs/events/{name}")


@contextlib.asynccontextmanager
async def _event_store(settings: Settings, service: Service) -> AsyncIterator[EventStore]:
    """The service's event store, for an operator's command run beside the service."""
    if not settings.database_url:
        raise InfrastructureError("CUNZHI_DATABASE_URL must name the service's database")
    pool = await connect_database(settings.database_url)
    try:
        yield EventStore(pool, service.name, service.registry, SystemClock())
    finally:
        await pool.close()


async def _republish(settings: Settings, names: list[str]) -> None:
    """Queue each service's history; a service not deployed here (no schema) is skipped."""
    if not settings.database_url:
        raise InfrastructureError("CUNZHI_DATABASE_URL must name the services' database")
    pool = await connect_database(settings.database_url)
    try:
        for name in names:
            if not await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{name}".events'):
                print(f"{name}: no event store in this database, skipped")
                continue
            store = EventStore(pool, name, SERVICES[name][0], SystemClock())
            if settings.kafka_bootstrap_servers:
                # A fresh broker: the topic with its configured partitions before anything else.
                plan = TopicPlan.from_settings(settings)
                await ensure_topics(KafkaAccess.from_settings(settings), [store.topic], plan)
            try:
                queued = await republish(store)
            except HistoryAlreadyQueued as waiting:
                print(waiting)
                continue
            print(f"queued {queued} events of {name} for its relay to publish again")
    finally:
        await pool.close()


async def _dlq(
    settings: Settings,
    action: str,
    service_name: str,
    ids: list[str],
    every: bool,
    replayed: bool,
) -> None:
    from . import dlq

    service = RUNNABLE[service_name]()
    if action == "list":
        print(dlq.render(await dlq.dead_letters(settings, service, replayed=replayed)))
        return
    count = await dlq.replay(settings, service, None if every else ids)
    print(f"replayed {count} dead letters of {service_name} to the consumers that failed")


async def _rebuild(settings: Settings, service_name: str, projection: str, force: bool) -> None:
    service = RUNNABLE[service_name]()
    consumers = {c.name: c for c in service.consumers if c.rebuildable}
    async with _event_store(settings, service) as store:
        folded = await rebuild(consumers[projection], store, force=force)
    print(f"rebuilt {service_name}.{projection} from {folded} events and swapped it in")


async def _export(settings: Settings, root: Path, from_kafka: bool, names: list[str]) -> None:
    from .export import ServiceEvents, export_from_kafka, export_from_store
    from .services import SERVICES

    services = [ServiceEvents.of(n, SERVICES[n][0]) for n in names or sorted(SERVICES)]
    with _export_progress([s.name for s in services]) as progress:
        if from_kafka:
            if not settings.kafka_bootstrap_servers:
                raise InfrastructureError("CUNZHI_KAFKA_BOOTSTRAP_SERVERS must name the brokers")
            exported = await export_from_kafka(
                KafkaAccess.from_settings(settings), root, services, progress=progress
            )
        else:
            if not settings.database_url:
                raise InfrastructureError("CUNZHI_DATABASE_URL must name the services' database")
            pool = await connect_database(settings.database_url)
            try:
                exported = await export_from_store(pool, root, services, progress=progress)
            finally:
                await pool.close()
    for name, count in exported.items():
        print(f"{name}: {count} new events exported to {root / name}")


@contextlib.contextmanager
def _export_progress(names: list[str]) -> Iterator[Callable[[str, int], None] | None]:
    """A line per service counting its events as they are exported, on a terminal only
    (standard error); elsewhere nothing, so a cron job's output is the summary alone."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed} events"))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        tasks = {name: bar.add_task(name, total=None) for name in names}
        yield lambda name, count: bar.update(tasks[name], completed=count)


LOGGED = re.compile(
    r'\[(warning|error|critical)\s*\] (\S+)|"level": "(warning|error|critical)"', re.I
)
"""A warning or error in the log file: a text line (with what it is about) or a JSON one."""


@contextlib.contextmanager
def _logs_to_file(settings: Settings, command: str) -> Iterator[None]:
    """The demo's and the simulation's output is a narrative to read: the logs (the services'
    and the libraries', such as aiokafka's lines on idempotence) go to a file in the data
    directory instead, and the end says once, in words, what was logged and where."""
    path = settings.data_dir / f"{command}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        start = log.tell()
        configure_logging(settings.log_level, settings.log_json, stream=log)
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        logging.basicConfig(handlers=[handler], level=settings.log_level.upper(), force=True)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            log.flush()
            print(_logged(path, start), file=sys.stderr)


def _logged(path: Path, start: int) -> str:
    """What this run logged, in a sentence: warnings and errors by what they were about."""
    with path.open(encoding="utf-8") as log:
        log.seek(start)
        found = [m for m in map(LOGGED.search, log) if m]
    if not found:
        return f"(nothing to worry about was logged; logs in {path})"
    about: dict[str, int] = {}
    for m in found:
        what = (m.group(2) or "").rstrip(":").replace("_", " ") or "see the log"
        about[what] = about.get(what, 0) + 1
    listed = ", ".join(f"{what} ({n}×)" for what, n in sorted(about.items(), key=lambda a: -a[1]))
    return f"{len(found)} warnings or errors were logged, about: {listed}; details in {path}"


def _simulate(settings: Settings, args: argparse.Namespace) -> None:
    import secrets

    from rich.console import Console

    from .simulate import Options, report, simulate

    options = Options(
        seed=args.seed,
        townships=args.townships,
        villages=args.villages,
        months=args.months,
        run=f"sim{secrets.token_hex(2)}",  # a re-run on the same data keeps apart
    )
    result = asyncio.run(simulate(settings, options, Console(stderr=True)))
    print("\n".join(report(result)))
    if result.differences:
        raise SystemExit(1)


def _between(low: int, high: int) -> Callable[[str], int]:
    """An argument's type: a whole number from ``low`` to ``high`` (else a usage error)."""

    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return number


def _rebuildable(service_name: str) -> list[str]:
    return sorted(c.name for c in RUNNABLE[service_name]().consumers if c.rebuildable)


def _malformed(exc: ValidationError) -> str:
    """The malformed settings, by their variable's name, on one line."""
    prefix = Settings.model_config.get("env_prefix", "")
    return "; ".join(
        f"{prefix}{'_'.join(map(str, e['loc'])).upper()} is malformed: {e['msg']}"
        for e in exc.errors()
    )


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
    sim = sub.add_parser("simulate", help="run a county through a year on the embedded stack")
    sim.add_argument("--seed", type=int, default=2026, help="the same seed, the same year")
    sim.add_argument("--townships", type=_between(1, 10), default=10, help="1–10 (Bincheng's)")
    sim.add_argument("--villages", type=int, default=602, help="spread over the townships")
    sim.add_argument("--months", type=_between(1, 12), default=12, help="1–12, from January")
    sim.add_argument("--data-dir", type=Path, help="where PostgreSQL keeps its data")
    sub.add_parser("docs", help="regenerate docs/events from the code")
    again = sub.add_parser(
        "republish",
        help="publish services' whole history again (after a broker lost its data: --all)",
    )
    again.add_argument("service", nargs="*", metavar="SERVICE", help=", ".join(SERVICES))
    again.add_argument("--all", action="store_true", help="every service with an event store")
    rebuild = sub.add_parser("rebuild", help="rebuild a read model while the service serves")
    rebuild.add_argument("service", choices=sorted(RUNNABLE))
    rebuild.add_argument(
        "projection", help="e.g. read_models (topics), forums (meetings), tasks (rectification)"
    )
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="also over tables a newer version of the projection built (a rollback)",
    )
    dead = sub.add_parser("dlq", help="list or replay the dead letters of a service's consumers")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("service", choices=sorted(RUNNABLE))
    dead.add_argument(
        "--id", action="append", default=[], help="a dead letter's id or event id (repeatable)"
    )
    dead.add_argument("--all", action="store_true", help="replay every dead letter listed")
    dead.add_argument(
        "--replayed", action="store_true", help="list the letters replayed already, with when"
    )
    export = sub.add_parser("export", help="every event as Parquet tables, incrementally")
    export.add_argument("directory", type=Path, help="where the tables and their manifest are")
    export.add_argument(
        "--from-kafka", action="store_true", help="read the topics instead of the event stores"
    )
    export.add_argument(
        "--service", action="append", default=[], choices=sorted(SERVICES), help="(repeatable)"
    )
    args = parser.parse_args(argv)
    if args.command == "republish" and (
        bool(args.service) == args.all or set(args.service) - set(SERVICES)
    ):
        parser.error(f"republish: name services ({', '.join(SERVICES)}) or give --all")
    if args.command == "dlq" and args.action == "replay" and bool(args.id) == args.all:
        parser.error("dlq replay: give --id ID (repeatable) or --all")
    if args.command == "rebuild":
        projections = _rebuildable(args.service)
        if args.projection not in projections:
            parser.error(
                f"rebuild: {args.service} has no rebuildable projection {args.projection!r}; "
                f"choose one of {', '.join(projections)}"
            )
    try:
        settings = Settings()
    except ValidationError as exc:
        parser.exit(2, f"cunzhi: {_malformed(exc)}\n")
    if getattr(args, "data_dir", None):
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    if args.command in ("demo", "simulate") and "log_level" not in settings.model_fields_set:
        # The demo's output is for reading: only warnings and errors, as text.
        settings = settings.model_copy(update={"log_level": "WARNING", "log_json": False})
    narrative = args.command in ("demo", "simulate")
    if not narrative:
        configure_logging(settings.log_level, settings.log_json)
    try:
        with _logs_to_file(settings, args.command) if narrative else contextlib.nullcontext():
            if args.command == "infra":
                _infra_up(settings)
            elif args.command == "republish":
                asyncio.run(_republish(settings, list(SERVICES) if args.all else args.service))
            elif args.command == "rebuild":
                asyncio.run(_rebuild(settings, args.service, args.projection, args.force))
            elif args.command == "dlq":
                asyncio.run(
                    _dlq(settings, args.action, args.service, args.id, args.all, args.replayed)
                )
            elif args.command == "export":
                asyncio.run(_export(settings, args.directory, args.from_kafka, args.service))
            elif args.command == "docs":
                _docs(Path.cwd())
            elif args.command == "simulate":
                _simulate(settings, args)
            elif args.command == "demo":
                from .demo import run_demo

                asyncio.run(run_demo(settings, keep_running=args.keep_running))
    except InfrastructureError as exc:
        print(f"cunzhi: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except NewerProjection as exc:
        print(f"cunzhi rebuild: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    except RebuildError as exc:
        print(f"cunzhi rebuild: {exc}; try again when the long queries are done", file=sys.stderr)
        raise SystemExit(1) from exc
    except ExportError as exc:
        print(f"cunzhi export: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    except CycleError as exc:
        print(f"cunzhi {args.command} failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
