"""Rebuilding a projection from the event store, on the real database."""

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest
from counting import Incremented, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import Consumer, Tx, create_tables, table_names
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import RebuildError, rebuild
from cunzhi_platform.testing import eventually


class Amounts(Consumer):
    """counter → its amounts in the order they were folded: a projection that minds order."""

    name = "amounts"
    tables: ClassVar = {
        "amounts": "CREATE TABLE IF NOT EXISTS {table} (counter text PRIMARY KEY, amounts int[])"
    }
    rebuildable = True

    def __init__(self, service: str) -> None:
        self.topics = [topic_for(service)]  # type: ignore[misc]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        await self.apply_batch(tx, [(event, envelope)])

    async def apply_batch(self, tx: Tx, items: Sequence[tuple[Event, Envelope]]) -> None:
        per_counter: dict[str, list[int]] = {}
        for event, _ in items:
            assert isinstance(event, Incremented)
            per_counter.setdefault(event.counter, []).append(event.amount)
        await tx.conn.executemany(
            f"INSERT INTO {tx.t('amounts')} AS t VALUES ($1, $2) ON CONFLICT (counter) "
            "DO UPDATE SET amounts = t.amounts || excluded.amounts",
            list(per_counter.items()),
        )


@pytest.fixture
async def store(pool, schema):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    return EventStore(pool, schema, registry, SystemClock())


@pytest.fixture
async def amounts(pool, schema):
    consumer = Amounts(schema)
    async with pool.acquire() as conn:
        await create_tables(conn, schema, consumer)
    return consumer


async def projected(pool, schema):
    rows = await pool.fetch(f'SELECT counter, amounts FROM "{schema}".amounts ORDER BY 1')
    return {r["counter"]: r["amounts"] for r in rows}


async def stored(pool, schema):
    """What the projection must hold: each stream's amounts in version order."""
    rows = await pool.fetch(
        f"SELECT payload->>'counter' AS counter, array_agg((payload->>'amount')::int "
        f'ORDER BY stream_version) AS amounts FROM "{schema}".events GROUP BY 1 ORDER BY 1'
    )
    return {r["counter"]: r["amounts"] for r in rows}


def inc(counter: str, amount: int) -> Incremented:
    return Incremented(counter=counter, amount=amount)


async def test_rebuild_folds_a_stream_in_version_order_when_a_policy_took_its_xid_first(
    pool, schema, store, amounts
):
    await store.append("counter:a", 0, [inc("a", 1)])
    policy = await pool.acquire()
    try:
        async with policy.transaction():
            # A policy's transaction writes its processed mark first, which gives it an xid…
            await policy.fetchval("SELECT pg_current_xact_id()::text")
            # …then an HTTP command appends version 2 and commits, with a later xid…
            await store.append("counter:a", 1, [inc("a", 2)])
            # …and the policy decides on what it now sees and appends version 3.
            version = await policy.fetchval(
                f'SELECT max(stream_version) FROM "{schema}".events WHERE stream_id = $1',
                "counter:a",
            )
            await store.append("counter:a", version, [inc("a", 3)], conn=policy)
    finally:
        await pool.release(policy)
    assert await stored(pool, schema) == {"a": [1, 2, 3]}

    assert await rebuild(amounts, store) == 3
    assert await projected(pool, schema) == {"a": [1, 2, 3]}


async def _bulk_history(pool, schema, events: int, streams: int) -> None:
    """A large history written in one statement (the append path is not what is tested)."""
    await pool.execute(
        f'INSERT INTO "{schema}".events (stream_id, stream_version, event_id, type, '
        "schema_version, payload, metadata, recorded_at) "
        "SELECT 'counter:c' || i % $2, i / $2 + 1, gen_random_uuid(), 'cunzhi.test.Incremented',"
        " 1, jsonb_build_object('counter', 'c' || i % $2, 'amount', i), '{}', now() "
        "FROM generate_series(0, $1 - 1) AS i",
        events,
        streams,
    )


async def _waiting_for_lock(pool, schema) -> bool:
    return await pool.fetchval(
        "SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT l.granted AND n.nspname = $1",
        schema,
    )


async def test_a_rebuild_of_a_large_projection_never_stalls_appends_queries_or_the_consumer(
    pool, schema, store, amounts
):
    await _bulk_history(pool, schema, 30_000, 100)
    # The live projection, caught up by its consumer.
    async with pool.acquire() as conn, conn.transaction():
        await amounts.apply_batch(
            Tx(conn, table_names(schema, amounts)),
            [(e.event, e.envelope) for e in await store.read_all(limit=30_000)],
        )
    names = table_names(schema, amounts)

    async def serve_one(n: int) -> None:
        """An HTTP command, the live consumer applying its event, and a query."""
        [event] = await store.append(f"counter:late{n}", 0, [inc(f"late{n}", n)])
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {names['__processed__']} (event_id) VALUES ($1)", event.envelope.id
            )
            await amounts.apply(Tx(conn, names), event.event, event.envelope)
        await pool.fetch(f"SELECT * FROM {names['amounts']} WHERE counter = 'c7'")

    # An analyst's long read holds the live table: the rebuild cannot swap until it ends.
    reader = await pool.acquire()
    reading = reader.transaction()
    await reading.start()
    await reader.fetchval(f"SELECT count(*) FROM {names['amounts']}")
    try:
        with pytest.raises(RebuildError, match="nothing was swapped"):
            await rebuild(amounts, store, lock_timeout_s=0.2, lock_attempts=2, retry_pause_s=0)
        tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        assert not [t for t in tables if t["tablename"].endswith("__rebuild")]

        running = asyncio.create_task(
            rebuild(amounts, store, batch_size=1000, lock_timeout_s=0.3, retry_pause_s=0.1)
        )
        assert await eventually(lambda: _waiting_for_lock(pool, schema), timeout=60)
        for n in range(20):
            # Each would queue behind a lock request that waited for the reader.
            await asyncio.wait_for(serve_one(n), timeout=10)
        assert not running.done()
    finally:
        await reading.rollback()
        await pool.release(reader)
    await asyncio.wait_for(running, timeout=60)
    assert await projected(pool, schema) == await stored(pool, schema)
    assert len(await projected(pool, schema)) == 120
