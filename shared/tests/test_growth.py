"""What grows with use is pruned or indexed: processed marks, sent outbox rows, lookups."""

import datetime as dt
import uuid

import pytest
from counting import Incremented, Tallies, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import create_tables
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore, lookup_index
from cunzhi_platform.housekeeping import prune_processed, purge_outbox
from cunzhi_platform.migrations import migrate
from cunzhi_platform.runtime import Service
from cunzhi_platform.testing import eventually, running

pytestmark = pytest.mark.slow


async def _index_scans(pool, schema: str, index: str) -> int:
    # Statistics reach other sessions within about a second: callers poll.
    await pool.execute("SELECT pg_stat_clear_snapshot()")
    return await pool.fetchval(
        "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
        "WHERE schemaname = $1 AND indexrelname = $2",
        schema,
        index,
    )


async def _scanned(pool, schema, index, before):
    return await _index_scans(pool, schema, index) > before


async def test_marks_tables_of_an_older_release_get_a_recorded_time_and_are_pruned_by_it(
    pool, schema
):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS[:1])
        # A marks table as the previous release created it, full of marks.
        await conn.execute(
            f'CREATE TABLE "{schema}".tallies__processed (event_id uuid PRIMARY KEY)'
        )
        await conn.execute(
            f'INSERT INTO "{schema}".tallies__processed '
            "SELECT gen_random_uuid() FROM generate_series(1, 200000)"
        )
        assert await migrate(conn, schema, PLATFORM_MIGRATIONS[:2]) == ["0002_purge_by_age"]
    marks = f'"{schema}".tallies__processed'
    assert await pool.fetchval(f"SELECT count(*) FROM {marks} WHERE processed_at IS NULL") == 0
    # Half of them from before the retention, the other half since.
    await pool.execute(
        f"UPDATE {marks} SET processed_at = now() - interval '40 days' "
        f"WHERE event_id IN (SELECT event_id FROM {marks} ORDER BY event_id LIMIT 100000)"
    )
    await pool.execute(f"VACUUM ANALYZE {marks}")
    recent = await pool.fetchval(
        f"SELECT count(*) FROM {marks} WHERE processed_at > now() - interval '1 day'"
    )
    before = await _index_scans(pool, schema, "tallies__processed_at")

    assert await prune_processed(pool, schema, ["tallies"], dt.timedelta(days=30)) == 100000
    assert await pool.fetchval(f"SELECT count(*) FROM {marks}") == recent == 100000
    assert await eventually(lambda: _scanned(pool, schema, "tallies__processed_at", before))


async def test_sent_outbox_rows_are_purged_through_the_sent_at_index_and_unsent_ones_kept(
    pool, schema
):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    outbox = f'"{schema}".outbox'
    await pool.execute(
        f"INSERT INTO {outbox} (event_id, topic, key, headers, payload, sent_at) "
        "SELECT gen_random_uuid(), 't', 'k', '{}', '{}', now() - i * interval '1 second' "
        "FROM generate_series(1, 100000) AS i"
    )
    await pool.execute(
        f"INSERT INTO {outbox} (event_id, topic, key, headers, payload, created_at) "
        "SELECT gen_random_uuid(), 't', 'k', '{}', '{}', now() - interval '3 days' "
        "FROM generate_series(1, 100)"
    )
    await pool.execute(f"ANALYZE {outbox}")
    older = await pool.fetchval(
        f"SELECT count(*) FROM {outbox} WHERE sent_at < now() - interval '20 hours'"
    )
    before = await _index_scans(pool, schema, "outbox_sent_at")

    assert await purge_outbox(pool, schema, dt.timedelta(hours=20)) == older > 0
    assert await pool.fetchval(f"SELECT count(*) FROM {outbox} WHERE sent_at IS NULL") == 100
    assert await eventually(lambda: _scanned(pool, schema, "outbox_sent_at", before))


async def test_stream_ids_reads_the_lookup_index_not_the_whole_event_table(pool, schema):
    async with pool.acquire() as conn:
        await migrate(conn, schema, [*PLATFORM_MIGRATIONS, lookup_index("counter")])
    store = EventStore(pool, schema, registry, SystemClock())
    await pool.execute(
        f'INSERT INTO "{schema}".events (stream_id, stream_version, event_id, type, '
        "schema_version, payload, metadata, recorded_at) "
        "SELECT 'counter:' || i, 1, gen_random_uuid(), 'cunzhi.test.Incremented', 1, "
        "jsonb_build_object('counter', 'c' || i % 5000, 'amount', i), '{}', now() "
        "FROM generate_series(1, 100000) AS i"
    )
    await pool.execute(f'ANALYZE "{schema}".events')
    before = await _index_scans(pool, schema, "events_by_counter")

    found = await store.stream_ids(["cunzhi.test.Incremented"], {"counter": "c42"})
    assert found == [f"counter:{i}" for i in range(42, 100001, 5000)]
    assert await eventually(lambda: _scanned(pool, schema, "events_by_counter", before))
    with pytest.raises(ValueError, match="lower-case letters"):
        await store.stream_ids(["cunzhi.test.Incremented"], {"counter'; --": "x"})


async def test_a_running_service_prunes_old_marks_and_keeps_recent_ones(pool, schema, settings):
    consumer = Tallies(schema)
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
        await create_tables(conn, schema, consumer)
    old, recent = uuid.uuid4(), uuid.uuid4()
    marks = f'"{schema}".tallies__processed'
    await pool.execute(
        f"INSERT INTO {marks} VALUES ($1, now() - interval '31 days'), ($2, now() - interval "
        "'29 days')",
        old,
        recent,
    )
    service = Service(name=schema, registry=registry, consumers=[consumer])
    async with running(service, settings) as client:
        store = client.app.state.runtime.store
        await store.append("counter:x", 0, [Incremented(counter="x", amount=1)])

        async def pruned():
            return (
                await pool.fetchval(f"SELECT count(*) FROM {marks} WHERE event_id = $1", old) == 0
            )

        assert await eventually(pruned)
        kept = await pool.fetchval(f"SELECT count(*) FROM {marks} WHERE event_id = $1", recent)
        assert kept == 1
