"""The suite-wide invariant, checked last (after every fault test): each service's rebuildable
read model holds exactly what a rebuild from its event store gives — after the whole history
of every service was published again with every processed mark pruned, as a month after a
broker lost its data, and every consumer (policies too) has read it.

A projection that a redelivery, a retried batch, an out-of-order fold or a paused consumer
had left different from its events shows here as rows that differ. Tests also publish events
*as* a service (as its relay would, copies under new ids included) without storing them, for
the other services to consume; the service's own projections read those too; and some write
to a store while no consumer of it runs. So the comparison covers the townships whose stored
events the live consumer has all processed and whose topic records all come from the store;
columns that only keep the order rows arrived in are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import Consumer, ConsumerRunner
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.housekeeping import prune_processed
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.relay import OutboxRelay
from cunzhi_platform.republish import republish
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import caught_up, consume

from cunzhi_cli.rebuild_check import differences, projections, scope
from cunzhi_cli.services import RUNNABLE

pytestmark = pytest.mark.slow

PROJECTIONS = projections()


@pytest_asyncio.fixture(scope="module", autouse=True)
async def republished(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """Every mark pruned, every service's history queued again, and its relay and consumers
    run until every consumer group has read to the end of its topics."""
    stored = [
        name
        for name in sorted(RUNNABLE)
        if await pool.fetchval("SELECT to_regclass($1)", f'"{name}".events') is not None
    ]
    async with contextlib.AsyncExitStack() as stack:
        relays, groups = [], {}
        for name in stored:
            service = RUNNABLE[name]()
            # A month and more later: housekeeping has pruned every mark.
            consumed = [
                c.name
                for c in service.consumers
                if await pool.fetchval("SELECT to_regclass($1)", f'"{name}"."{c.name}__processed"')
            ]
            for consumer in consumed:
                await pool.execute(
                    f'UPDATE "{name}"."{consumer}__processed" '
                    "SET processed_at = now() - interval '40 days'"
                )
            await prune_processed(pool, name, consumed, dt.timedelta(days=30))
            store = EventStore(pool, name, service.all_events(), SystemClock())
            await republish(store)
            relay = OutboxRelay(settings, name)
            relays.append((relay, asyncio.create_task(relay.run())))
            assert settings.kafka_bootstrap_servers
            broker = make_broker(settings.kafka_bootstrap_servers, client_id=f"zz-{name}")
            for consumer in service.consumers:
                runner = ConsumerRunner(
                    consumer,
                    broker=broker,
                    pool=pool,
                    schema=name,
                    registry=service.all_events(),
                    clock=SystemClock(),
                    session_timeout_ms=settings.consumer_session_timeout_ms,
                    heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
                    store=EventStore(pool, name, service.registry, SystemClock()),
                )
                await runner.setup()
                groups[runner.group_id] = list(consumer.topics)
            await broker.start()
            stack.push_async_callback(broker.stop)
        try:
            await caught_up(pool, settings.kafka_bootstrap_servers, stored, groups)
        finally:
            for relay, task in relays:
                relay.stop()
                await task
    yield


async def injected_townships(pool: asyncpg.Pool, bootstrap: str, schema: str) -> set[str]:
    """Townships of the records on the service's topic that its event store does not hold."""
    stored = {
        str(r["event_id"]) for r in await pool.fetch(f'SELECT event_id FROM "{schema}".events')
    }
    records = await consume(bootstrap, topic_for(schema), 10**7, timeout=5)
    named = {
        json.loads(r.value).get("township_id")
        for r in records
        if dict(r.headers).get("ce_id", b"").decode() not in stored
    }
    return {t for t in named if isinstance(t, str)}


@pytest.mark.parametrize(
    ("service", "consumer"), PROJECTIONS, ids=[f"{s}.{c.name}" for s, c in PROJECTIONS]
)
async def test_every_read_model_equals_its_rebuild(
    pool: asyncpg.Pool, settings: Settings, service: str, consumer: Consumer
) -> None:
    exists = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
        service,
        next(iter(consumer.tables)),
    )
    if not exists:
        pytest.fail(f"{service}.{consumer.name} was never created: no test ran the service")
    assert settings.kafka_bootstrap_servers
    left_out = await injected_townships(pool, settings.kafka_bootstrap_servers, service)
    compared = await scope(pool, service, consumer, left_out)
    found = await differences(pool, service, consumer, compared)
    assert not found, "\n".join(found)
