"""The thin bootstrap of a service: one FastAPI app whose lifespan runs everything else.

Start-up order: PostgreSQL pool and migrations, Kafka topics, projections whose tables this
deploy reshaped rebuilt from the event store, consumers attached, broker connected, outbox
relay and background tasks started; the consumer groups join meanwhile.
A database or broker that cannot be reached at start-up fails it with a message naming the
setting; later outages are waited out by the relay and the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import edge
from .audit import router as audit_router
from .auth import TokenIssuer, check_token_settings
from .clock import Clock, SystemClock
from .consumer import Consumer, ConsumerRunner
from .envelope import topic_for
from .events import EventRegistry
from .eventstore import PLATFORM_MIGRATIONS, EventStore, init_connection
from .housekeeping import housekeeping
from .idempotency import UnitPool
from .infra import InfrastructureError
from .kafka import KafkaAccess, TopicError, TopicPlan, ensure_topics, make_broker
from .leadership import connect_for_leadership, still_leading, wait_for_leadership
from .migrations import Migration, migrate
from .rebuild import rebuild_if_reshaped
from .relay import COPIES_WAITING, LAG_COUNT_CAP, OutboxRelay
from .republish import republish
from .settings import Settings

_log = structlog.get_logger(__name__)
Background = Callable[["Runtime"], Coroutine[Any, Any, None]]


@dataclass
class Service:
    """What a service brings: its events, read models, policies, routes and timers."""

    name: str
    registry: EventRegistry
    consumes: Sequence[EventRegistry] = ()
    consumers: Sequence[Consumer] = ()
    migrations: Sequence[Migration] = ()
    routers: Sequence[APIRouter] = ()
    background: Sequence[Background] = ()
    description: str = ""

    @property
    def topic(self) -> str:
        return topic_for(self.name)

    def all_events(self) -> EventRegistry:
        merged = EventRegistry()
        merged.include(self.registry)
        for other in self.consumes:
            merged.include(other)
        return merged


@dataclass
class Runtime:
    service: Service
    settings: Settings
    clock: Clock
    pool: asyncpg.Pool
    store: EventStore
    broker: KafkaBroker
    relay: OutboxRelay
    runners: list[ConsumerRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def connect_database(url: str) -> asyncpg.Pool:
    try:
        # The pool a keyed command's queries share its transaction through (idempotency).
        pool = await UnitPool.create(
            url,
            init=init_connection,
            min_size=2,
            max_size=20,
            timeout=10,
            command_timeout=60,
            reset=keep_session,
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise InfrastructureError(
            f"cannot connect to PostgreSQL at CUNZHI_DATABASE_URL ({_redact(url)}): {exc}"
        ) from exc
    assert pool is not None
    return pool


async def keep_session(conn: asyncpg.Connection) -> None:
    """Return connections to the pool as they are.

    asyncpg's default reset (UNLISTEN, RESET ALL, unlock advisory locks) costs a round trip
    per checkout — a third of the append rate here. cunzhi never leaves session state on a
    pooled connection: transactions are context managers, LISTEN and leaders' advisory locks
    live on dedicated connections, and other session advisory locks are taken through
    ``leadership.session_lock``, which closes a connection it cannot be sure let go.
    """


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}://{creds.split(':')[0]}:***@{host}" if at and ":" in creds else url


async def start(service: Service, settings: Settings, clock: Clock) -> Runtime:
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise InfrastructureError(
            "CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS must be set "
            "(`cunzhi infra up` starts an embedded pair and prints them)"
        )
    check_token_settings(settings)
    pool = await connect_database(settings.database_url)
    async with pool.acquire() as conn:
        await migrate(conn, service.name, [*PLATFORM_MIGRATIONS, *service.migrations])
    topics = service_topics(service)
    kafka = KafkaAccess.from_settings(settings)
    try:
        await ensure_topics(kafka, topics, TopicPlan.from_settings(settings))
    except (KafkaError, OSError, TopicError) as exc:
        await pool.close()
        raise InfrastructureError(
            "cannot reach Kafka at CUNZHI_KAFKA_BOOTSTRAP_SERVERS "
            f"({settings.kafka_bootstrap_servers}) or create its topics: {exc}"
        ) from exc
    broker = make_broker(kafka, client_id=f"cunzhi-{service.name}")
    events = service.all_events()
    store = EventStore(pool, service.name, service.registry, clock)
    runners = [
        ConsumerRunner(
            c,
            broker=broker,
            pool=pool,
            schema=service.name,
            registry=events,
            clock=clock,
            max_retries=settings.consumer_max_retries,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            store=store,
        )
        for c in service.consumers
    ]
    for runner in runners:
        await _reshape(runner.consumer, store)
        await runner.setup()
    await broker.connect()
    # A broker that lost what it had acknowledged gets the history again, ahead of the rest.
    relay = OutboxRelay(settings, service.name, on_broker_lost=lambda: republish(store, again=True))
    rt = Runtime(service, settings, clock, pool, store, broker, relay, runners)
    if settings.relay_in_process:
        rt.tasks.append(asyncio.create_task(relay.run(), name=f"{service.name}-relay"))
    rt.tasks.append(asyncio.create_task(_keep_topics(rt), name=f"{service.name}-topics"))
    rt.tasks.append(asyncio.create_task(store.notify_appends(), name=f"{service.name}-notify"))
    rt.tasks.append(asyncio.create_task(_subscribe(rt), name=f"{service.name}-subscribe"))
    for job in (*service.background, housekeeping):
        rt.tasks.append(asyncio.create_task(_guard(job, rt), name=f"{service.name}-{job.__name__}"))
    _log.info("service_started", service=service.name, topic=service.topic)
    return rt


async def _reshape(consumer: Consumer, store: EventStore) -> None:
    """Rebuild a projection whose tables this deploy changed, before it consumes.

    If that fails the live tables are as they were and their old shape stays on record: the
    consumer pauses (``/readyz`` says so) rather than write into them — unless the new code's
    indexes cannot even be created on them, which fails the start-up — and the next start-up
    tries again.
    """
    try:
        await rebuild_if_reshaped(consumer, store)
    except Exception as exc:
        _log.exception(
            "projection_rebuild_on_shape_change_failed",
            service=store.schema,
            projection=consumer.name,
            error=repr(exc),
            remedy=f"cunzhi rebuild {store.schema} {consumer.name}",
        )


async def _subscribe(rt: Runtime) -> None:
    """Start every subscriber at once, in the background.

    Each consumer group's join waits for the coordinator's rebalance (Tansu holds a joining
    member about half its session timeout): one after the other they made start-up take
    20–30 s. Nothing at start-up needs them joined — they resume from their committed offsets
    — so the service serves while they join.
    """
    started = time.monotonic()
    await asyncio.gather(*(_start_subscriber(sub) for sub in rt.broker.subscribers))
    rt.broker.running = True
    _log.info(
        "consumers_joined",
        service=rt.service.name,
        consumers=len(rt.runners),
        seconds=round(time.monotonic() - started, 2),
    )


async def _start_subscriber(subscriber: Any) -> None:
    delay = 0.5
    while True:
        try:
            await subscriber.start()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever it is, a consumer must not stay silently stopped
            _log.warning("consumer_join_failed", error=repr(exc), retry_in=delay)
            with contextlib.suppress(Exception):
                await subscriber.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def service_topics(service: Service) -> set[str]:
    return {service.topic} | {t for c in service.consumers for t in c.topics}


async def _keep_topics(rt: Runtime) -> None:
    """Recreate any of the service's topics the broker lost (a restart of the embedded one).

    Every instance does it: creating is idempotent, and consumers waiting for a topic pick it
    up at their next metadata refresh.
    """
    kafka = KafkaAccess.from_settings(rt.settings)
    plan = TopicPlan.from_settings(rt.settings)
    topics = service_topics(rt.service)
    while True:
        await asyncio.sleep(rt.settings.topic_check_interval_s)
        try:
            created = await ensure_topics(kafka, topics, plan)
        except (KafkaError, OSError, TopicError) as exc:
            _log.warning("kafka_topics_unchecked", service=rt.service.name, error=str(exc))
            continue
        if created:
            _log.error(
                "kafka_topics_were_missing",
                service=rt.service.name,
                topics=created,
                # The leading relay (of whichever instance) finds its topic short within
                # topic_check_interval_s and queues the history again by itself.
                remedy="none: the relay republishes the history "
                "(relay_republished_after_broker_loss); a relay run as its own process only "
                "logs kafka_broker_lost_acknowledged_events: then cunzhi republish --all",
            )


async def _guard(job: Background, rt: Runtime) -> None:
    """Run a timer in one instance of the service only, restarting it after an error.

    Timers decide from the clock and the read models; two instances running one at once
    would only collide on the version check, but it is work done twice and noise in the logs.
    """
    interval = rt.settings.scheduler_interval_s
    name = f"timers:{rt.service.name}:{job.__name__}"
    while True:
        try:
            conn = await connect_for_leadership(
                rt.settings.database_url or "", rt.settings.leadership_timeout_s
            )
            try:
                await wait_for_leadership(conn, name, interval)
                running = asyncio.create_task(job(rt))
                try:
                    while not running.done():
                        await asyncio.wait({running}, timeout=max(interval, 1.0))
                        if not running.done():
                            await still_leading(conn)
                    await running
                    return
                finally:
                    running.cancel()
            finally:
                await conn.close(timeout=2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _log.exception("background_job_failed", job=job.__name__, error=repr(exc))
            await asyncio.sleep(1)


RELAY_STOP_S = 10.0
"""How long a stopping relay may take to finish its pass (and the pool to get its connections
back). Past it the pass is cancelled: its rows are not marked sent and go again
(at-least-once), and the process stays within the 30 s a container is given to stop."""


async def stop(rt: Runtime) -> None:
    # The relay finishes its pass (a standby returns at once); the rest is cancelled.
    rt.relay.stop()
    relays = [task for task in rt.tasks if task.get_name().endswith("-relay")]
    for task in rt.tasks:
        if task not in relays:
            task.cancel()
    if relays:
        _, unfinished = await asyncio.wait(relays, timeout=RELAY_STOP_S)
        for task in unfinished:
            _log.warning("relay_pass_cancelled_at_stop", seconds=RELAY_STOP_S)
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*rt.tasks, return_exceptions=True)
    await rt.broker.stop()
    try:
        await asyncio.wait_for(rt.pool.close(), RELAY_STOP_S)
    except TimeoutError:
        # a connection never given back (a query stuck on a lock) must not hold the exit
        _log.warning("database_pool_terminated_at_stop", seconds=RELAY_STOP_S)
        rt.pool.terminate()


DOCS_ASSETS = "/docs-assets"
"""Where the API docs' scripts and styles are served."""


def create_app(
    service: Service, settings: Settings | None = None, clock: Clock | None = None
) -> FastAPI:
    settings = settings or Settings()
    clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await start(service, settings, clock)
        app.state.runtime = rt
        try:
            yield
        finally:
            await stop(rt)

    # /docs (Swagger UI) and /redoc load their scripts, styles and icon from the service itself,
    # never from a CDN: a county intranet has no internet (fastapi-offline vendors them).
    app = FastAPIOffline(
        title=f"cunzhi {service.name}",
        description=service.description,
        lifespan=lifespan,
        generate_unique_id_function=edge.operation_ids,
        static_url=DOCS_ASSETS,
    )
    base_openapi = app.openapi
    written_on: list[dt.date] = []

    def openapi() -> dict[str, Any]:
        # Some bounds follow the date (a year to plan): the document is written again each day.
        if app.openapi_schema is None or written_on != [edge.today_here()]:
            app.openapi_schema = None
            edge.document_errors(base_openapi())
            written_on[:] = [edge.today_here()]
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.token_issuer = TokenIssuer.for_settings(settings)
    app.state.settings = settings
    app.state.clock = clock

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    edge.install_error_handlers(app)
    app.add_middleware(edge.ClockScope, clock=clock)
    app.add_middleware(edge.BodyLimit, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(CorrelationMiddleware, service=service.name)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            await rt.pool.fetchval("SELECT 1", timeout=2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {exc!r}"
        checks["broker"] = "ok" if await rt.broker.ping(timeout=2) else "unavailable"
        if not rt.settings.relay_in_process:
            checks["relay"] = "separate process"
        else:
            checks["relay"] = "leading" if rt.relay.is_leader else "standby"
        checks["outbox"] = await _outbox_check(rt)
        checks["kafka_history"] = await _history_check(rt)
        paused = [r.paused for r in rt.runners if r.paused is not None]
        checks["consumers"] = "paused: " + "; ".join(paused) if paused else "ok"
        ready = all(checks[c] == "ok" for c in ("database", "broker", "outbox", "consumers"))
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    app.include_router(audit_router)
    for router in service.routers:
        app.include_router(router)
    return app


async def _outbox_check(rt: Runtime) -> str:
    """Whether the outbox drains: not "ok" when an event waits and the outbox has not moved
    for relay_max_lag_s (broker down or refusing, no relay leading), so this instance is not
    sent work it cannot publish. A long but moving backlog (a republish) stays ready."""
    schema = f'"{rt.service.name}"'
    try:
        row = await rt.pool.fetchrow(
            f"WITH oldest AS (SELECT id, created_at FROM {schema}.outbox WHERE sent_at IS NULL "
            "ORDER BY id LIMIT 1) SELECT extract(epoch FROM now() - created_at) AS waiting, "
            "extract(epoch FROM now() - greatest(created_at, (SELECT sent_at FROM "
            f"{schema}.outbox p WHERE p.id < oldest.id ORDER BY p.id DESC LIMIT 1))) AS stalled "
            "FROM oldest",
            timeout=2,
        )
    except Exception as exc:
        return f"unknown: {exc!r}"
    limit = rt.settings.relay_max_lag_s
    if row is not None and row["stalled"] > limit:
        return (
            f"not draining for {row['stalled']:.0f} s (limit {limit:g} s); "
            f"the oldest unpublished event waits {row['waiting']:.0f} s"
        )
    return "ok"


async def _history_check(rt: Runtime) -> str:
    """Whether the service's topic carries its whole history: not while the broker is found
    missing events it had acknowledged, and the copies queued again are still being published.

    Told, not counted against readiness (the alert ``CunzhiTopicHistoryIncomplete`` pages):
    every instance would turn unready at once, and the service's own API serves meanwhile.
    """
    if rt.relay.is_leader and rt.relay.history_lost is not None:
        return f"the broker lost events it had acknowledged ({rt.relay.history_lost})"
    try:
        waiting = await rt.pool.fetchval(
            f'SELECT count(*) FROM (SELECT FROM "{rt.service.name}".outbox '
            f"WHERE {COPIES_WAITING} LIMIT {LAG_COUNT_CAP}) copies",
            timeout=2,
        )
    except Exception as exc:
        return f"unknown: {exc!r}"
    if waiting:
        more = "at least " if waiting == LAG_COUNT_CAP else ""
        return f"being published again: {more}{waiting} events of the history to go"
    return "ok"


def current_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def runtime(request: Request) -> Runtime:
    """FastAPI dependency (a coroutine, so it is not sent to the thread pool)."""
    return current_runtime(request)


class CorrelationMiddleware:
    """Every request carries an ``X-Correlation-ID`` (the caller's, or a new one).

    It is put back into the request headers, so command handlers give it to the events they
    append; bound to the logs of the request with the service's name; and echoed in the
    response. Plain ASGI rather than ``BaseHTTPMiddleware``, which costs a task per request.
    """

    def __init__(self, app: Any, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-correlation-id")
        correlation = (given or b"").decode("latin-1")
        if given is not None and not edge.CORRELATION_PATTERN.fullmatch(correlation):
            # Logged and carried into events: only a bounded run of safe characters.
            refusal = edge.problem(
                422,
                "X-Correlation-ID must be 1–128 of A–Z a–z 0–9 . _ : / + = - "
                "(or left out: one is made up)",
                "X-Correlation-ID",
            )
            await refusal(scope, receive, send)
            return
        if not correlation:
            correlation = str(uuid.uuid4())
            scope = {
                **scope,
                "headers": [*scope["headers"], (b"x-correlation-id", correlation.encode())],
            }

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-correlation-id", correlation.encode()),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(
            service=self.service, correlation_id=correlation
        ):
            await self.app(scope, receive, send_with_id)


def serve(service: Service, default_port: int) -> None:
    """Run one service as a process: its HTTP app, consumers, relay and timers.

    Infrastructure comes from ``CUNZHI_DATABASE_URL`` and ``CUNZHI_KAFKA_BOOTSTRAP_SERVERS``
    (``cunzhi infra up`` starts an embedded pair and prints them); the port from
    ``CUNZHI_HTTP_PORT``, else ``default_port``.
    """
    import uvicorn

    from .logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    _log.info(
                        "service_listening", service=service.name, url=f"http://{host}:{port}"
                    )

    app = create_app(service, settings)
    port = settings.http_port or default_port
    Server(uvicorn.Config(app, host=settings.http_host, port=port, log_config=None)).run()
