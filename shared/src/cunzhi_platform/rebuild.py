"""Rebuild a projection from the service's own event store while the live one keeps serving.

1. Create empty copies of the projection's tables (``<table>__rebuild``).
2. Fold the store into them in batches, paging in commit-safe order (``read_all``).
3. Lock the live tables (the live consumer waits, queries wait only for the swap), apply what
   committed since the last page, and swap the copies in by renaming, in one transaction.

The processed-event marks are part of the swap, so events the live consumer has not seen yet
but the rebuild has are not applied twice when they arrive from Kafka.
"""

from __future__ import annotations

import asyncpg
import structlog

from .consumer import Consumer, Tx, create_tables, table_names
from .eventstore import Checkpoint, EventStore, StoredEvent

_log = structlog.get_logger(__name__)
SUFFIX = "__rebuild"


async def _apply(
    conn: asyncpg.Connection,
    consumer: Consumer,
    names: dict[str, str],
    events: list[StoredEvent],
    dedupe: bool,
    store: EventStore,
) -> None:
    if dedupe:
        fresh = {
            str(r["event_id"])
            for r in await conn.fetch(
                f"INSERT INTO {names['__processed__']} (event_id) SELECT unnest($1::uuid[]) "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                [e.envelope.id for e in events],
            )
        }
        events = [e for e in events if e.envelope.id in fresh]
    else:
        await conn.copy_records_to_table(
            names["__processed__"].split(".")[1].strip('"'),
            schema_name=names["__processed__"].split(".")[0].strip('"'),
            records=[(e.envelope.id,) for e in events],
        )
    if events:
        await consumer.apply_batch(Tx(conn, names, store), [(e.event, e.envelope) for e in events])


async def rebuild(consumer: Consumer, store: EventStore, *, batch_size: int = 5000) -> int:
    """Rebuild ``consumer``'s tables from ``store``; returns the number of events folded."""
    if not consumer.rebuildable:
        raise ValueError(f"{consumer.name} does not project the service's own events")
    schema = store.schema
    live, fresh = table_names(schema, consumer), table_names(schema, consumer, SUFFIX)
    log = _log.bind(service=schema, projection=consumer.name)
    folded = 0
    async with store.pool.acquire() as conn:
        for name in fresh.values():
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await create_tables(conn, schema, consumer, SUFFIX)
        checkpoint = Checkpoint()
        while True:
            async with conn.transaction():
                page = await store.read_all(checkpoint, batch_size, conn=conn)
                if not page:
                    break
                await _apply(conn, consumer, fresh, page, dedupe=False, store=store)
            folded += len(page)
            checkpoint = page[-1].checkpoint
        async with conn.transaction():
            # The processed marks first: a consumer transaction starts there, so holding them
            # means no consumer is half-way (locking in another order deadlocks with it).
            ordered = [live["__processed__"], *(n for k, n in live.items() if k != "__processed__")]
            await conn.execute("LOCK TABLE " + ", ".join(ordered) + " IN ACCESS EXCLUSIVE MODE")
            # Under the lock nothing more reaches the live tables; take every visible event
            # the pages did not cover (late commits included; the marks drop repeats).
            while True:
                page = await store.read_all(checkpoint, batch_size, conn=conn, settled_only=False)
                if not page:
                    break
                await _apply(conn, consumer, fresh, page, dedupe=True, store=store)
                folded += len(page)
                checkpoint = page[-1].checkpoint
            for logical, name in live.items():
                bare = name.split(".")[1].strip('"')
                await conn.execute(f"DROP TABLE {name}")
                await conn.execute(f'ALTER TABLE {fresh[logical]} RENAME TO "{bare}"')
                # Indexes (primary keys included) take the live names back, so the next
                # rebuild's copies are created under the same names as this one's.
                for row in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                    schema,
                    bare,
                ):
                    index = row["indexname"]
                    if index.startswith(bare + SUFFIX):
                        live_name = bare + index.removeprefix(bare + SUFFIX)
                        await conn.execute(
                            f'ALTER INDEX "{schema}"."{index}" RENAME TO "{live_name}"'
                        )
    log.info("projection_rebuilt", events=folded)
    return folded
