"""The suite-wide invariant, checked last (after every fault test): each service's rebuildable
read model holds exactly what a rebuild from its event store gives.

A projection that a redelivery, a retried batch, an out-of-order fold or a paused consumer
had left different from its events shows here as rows that differ. Tests also publish events
*as* a service (as its relay would, copies under new ids included) without storing them, for
the other services to consume; the service's own projections read those too; and some write
to a store while no consumer of it runs. So the comparison covers the townships whose stored
events the live consumer has all processed and whose topic records all come from the store;
columns that only keep the order rows arrived in are left out.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import Consumer, table_names
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume

from cunzhi_cli.services import RUNNABLE

pytestmark = pytest.mark.slow

ARRIVAL_ORDER = {"seq", "noted_at"}
"""Columns that keep the order rows arrived in: a rebuild folds in another (store) order."""

PROJECTIONS = [
    (service, consumer)
    for service, build in sorted(RUNNABLE.items())
    for consumer in build().consumers
    if consumer.rebuildable
]

Rows = dict[str, set[tuple[tuple[str, str], ...]]]


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


async def scope(
    pool: asyncpg.Pool, schema: str, consumer: Consumer, left_out: set[str]
) -> tuple[list[str], bool]:
    """The townships to compare (every stored event of theirs processed by the live consumer,
    none injected), and whether the consumer has processed every stored event at all."""
    marks = table_names(schema, consumer)["__processed__"]
    unseen = (
        f'SELECT 1 FROM "{schema}".events u WHERE NOT EXISTS (SELECT 1 FROM {marks} p '
        "WHERE p.event_id = u.event_id)"
    )
    townships = [
        r["t"]
        for r in await pool.fetch(
            f"SELECT DISTINCT payload->>'township_id' AS t FROM \"{schema}\".events e "
            f"WHERE payload ? 'township_id' AND NOT EXISTS ({unseen} "
            "AND u.payload->>'township_id' = e.payload->>'township_id')"
        )
        if r["t"] not in left_out
    ]
    return townships, not await pool.fetchval(f"SELECT EXISTS ({unseen})")


async def rows(
    pool: asyncpg.Pool, schema: str, consumer: Consumer, compared: tuple[list[str], bool]
) -> Rows:
    """The projection's rows of the compared townships (all rows of tables without a township
    once every stored event was processed), each as sorted (column, text) pairs."""
    townships, everything_seen = compared
    names = table_names(schema, consumer)
    found: Rows = {}
    for logical in consumer.tables:
        table = names[logical]
        has_township = await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 "
            "AND table_name = $2 AND column_name = 'township_id')",
            schema,
            table.split(".")[1].strip('"'),
        )
        if has_township:
            where = "township_id = ANY($1::text[])"
        else:
            where = "$1::text[] IS NOT NULL" if everything_seen else "false"
        found[logical] = {
            tuple(sorted((k, str(v)) for k, v in r.items() if k not in ARRIVAL_ORDER))
            for r in await pool.fetch(f"SELECT * FROM {table} WHERE {where}", townships)
        }
    return found


def first_difference(gone: set[Any], new: set[Any]) -> list[tuple[str, Any, Any]]:
    if not gone or not new:
        return []
    live, rebuilt = dict(min(gone)), dict(min(new))
    return [(k, live.get(k), rebuilt.get(k)) for k in live if live.get(k) != rebuilt.get(k)]


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
    store = EventStore(pool, service, RUNNABLE[service]().all_events(), SystemClock())
    compared = await scope(pool, service, consumer, left_out)
    live = await rows(pool, service, consumer, compared)
    await rebuild(consumer, store)
    rebuilt = await rows(pool, service, consumer, compared)
    for logical, before in live.items():
        gone, new = before - rebuilt[logical], rebuilt[logical] - before
        assert not gone and not new, (
            f"{logical}: {len(gone)} live rows differ from the rebuild's; "
            f"first: {first_difference(gone, new)}"
        )
