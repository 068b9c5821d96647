import asyncio

import asyncpg
import pytest
from counting import Incremented, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import (
    PLATFORM_MIGRATIONS,
    Checkpoint,
    ConcurrencyError,
    EventStore,
    StreamWrite,
)
from cunzhi_platform.migrations import Migration, migrate


@pytest.fixture
async def store(pool, schema):
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    return EventStore(pool, schema, registry, SystemClock())


def inc(counter="c", amount=1, seq=0):
    return Incremented(counter=counter, amount=amount, seq=seq)


async def test_append_then_load_in_order_with_metadata(store):
    ctx = CommandContext(actor="secretary-1", correlation_id="corr-1")
    await store.append("counter:a", 0, [inc("a", 1), inc("a", 2)], ctx)
    await store.append("counter:a", 2, [inc("a", 3)], ctx)
    loaded = await store.load("counter:a")
    assert [s.event.amount for s in loaded] == [1, 2, 3]
    assert [s.version for s in loaded] == [1, 2, 3]
    assert {s.envelope.actor for s in loaded} == {"secretary-1"}
    assert {s.envelope.correlation_id for s in loaded} == {"corr-1"}
    assert loaded[0].envelope.type == "cunzhi.test.Incremented"
    assert await store.version("counter:a") == 3


async def test_wrong_expected_version_is_a_conflict_and_stores_nothing(store):
    await store.append("counter:b", 0, [inc("b")])
    with pytest.raises(ConcurrencyError, match="expected at version 0, it is at version 1"):
        await store.append("counter:b", 0, [inc("b", 5)])
    with pytest.raises(ConcurrencyError):
        await store.append("counter:b", 7, [inc("b", 5)])
    assert [s.event.amount for s in await store.load("counter:b")] == [1]


async def test_twenty_concurrent_writers_on_one_stream_exactly_one_wins(store):
    await store.append("counter:hot", 0, [inc("hot", 0)])
    results = await asyncio.gather(
        *(store.append("counter:hot", 1, [inc("hot", i, seq=i)]) for i in range(1, 21)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(wins) == 1 and len(conflicts) == 19
    events = await store.load("counter:hot")
    assert [s.version for s in events] == [1, 2]
    assert events[1].event.seq == wins[0][0].event.seq
    outbox = await store.pool.fetchval(f'SELECT count(*) FROM "{store.schema}".outbox')
    assert outbox == 2  # the losers left no outbox rows either


async def test_multi_stream_append_is_atomic(store):
    await store.append("counter:x", 0, [inc("x")])
    with pytest.raises(ConcurrencyError):
        await store.append_many(
            [StreamWrite("counter:y", 0, [inc("y")]), StreamWrite("counter:x", 0, [inc("x")])]
        )
    assert await store.load("counter:y") == []


async def test_outbox_rows_are_written_with_the_events(store):
    stored = await store.append("counter:o", 0, [inc("o", 4)])
    row = await store.pool.fetchrow(f'SELECT * FROM "{store.schema}".outbox')
    assert row["key"] == "counter:o"
    assert row["topic"] == f"cunzhi.{store.schema}.events"
    assert row["headers"]["ce_id"] == stored[0].envelope.id
    assert row["sent_at"] is None


async def test_read_all_pages_through_everything(store):
    for i in range(25):
        await store.append(f"counter:{i % 3}-r", i // 3, [inc(f"{i % 3}", i)])
    seen, checkpoint = [], Checkpoint()
    while page := await store.read_all(checkpoint, limit=7):
        seen += [s.event.amount for s in page]
        checkpoint = page[-1].checkpoint
    assert sorted(seen) == list(range(25))


async def test_read_all_never_skips_a_transaction_that_commits_late(store, pool):
    slow = await pool.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        # The slow writer takes its position first but commits last.
        await store.append("counter:slow", 0, [inc("slow", 1)], conn=slow)
        await store.append("counter:fast", 0, [inc("fast", 2)])
        first = await store.read_all(Checkpoint())
        assert first == []  # the fast one waits behind the open transaction
        await tx.commit()
    finally:
        await pool.release(slow)
    assert sorted(s.event.amount for s in await store.read_all(Checkpoint())) == [1, 2]


async def test_concurrent_writers_and_a_tailing_reader_lose_nothing(store):
    writers, per_writer = 16, 40
    done = asyncio.Event()

    async def write(w: int) -> None:
        for i in range(per_writer):
            await store.append(f"counter:w{w}", i, [inc(f"w{w}", 1, seq=i)])
            if i % 7 == 0:
                await asyncio.sleep(0)

    seen: list[str] = []

    async def tail() -> None:
        checkpoint = Checkpoint()
        while True:
            finished = done.is_set()
            page = await store.read_all(checkpoint, limit=50)
            seen.extend(s.envelope.id for s in page)
            if page:
                checkpoint = page[-1].checkpoint
            elif finished:
                return
            else:
                await asyncio.sleep(0.005)

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await reader
    assert len(seen) == len(set(seen)) == writers * per_writer


async def test_migrations_are_idempotent_and_run_once(pool, schema):
    steps = [Migration("0001", "CREATE TABLE {schema}.once (n int)")]
    async with pool.acquire() as a, pool.acquire() as b:
        applied = await asyncio.gather(migrate(a, schema, steps), migrate(b, schema, steps))
    assert sorted(map(len, applied)) == [0, 1]
    async with pool.acquire() as conn:
        assert await migrate(conn, schema, steps) == []
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.execute(f'SELECT * FROM "{schema}".nothing')


async def test_stream_ids_finds_every_stream_by_event_type_and_payload(store):
    await store.append("counter:p1", 0, [inc("north", 1)])
    await store.append("counter:p2", 0, [inc("south", 1)])
    await store.append("counter:p3", 0, [inc("north", 2)])
    assert await store.stream_ids(["cunzhi.test.Incremented"], {"counter": "north"}) == [
        "counter:p1",
        "counter:p3",
    ]
    assert await store.stream_ids(["cunzhi.test.Other"], {"counter": "north"}) == []
