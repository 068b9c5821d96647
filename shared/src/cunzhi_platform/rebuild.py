"""Rebuild a projection from the service's own event store while the live one keeps serving.

1. Create empty copies of the projection's tables (``<table>__rebuild``), keys but no
   secondary indexes yet.
2. Fold the store into them from one REPEATABLE READ snapshot, in ``global_position`` order:
   within a snapshot that is each stream's version order. (Commit-safe tailing order,
   ``(tx_id, position)``, is not: a policy's transaction takes its xid before it appends, so
   version n+1 of a stream can sort before version n.) Then build the secondary indexes.
3. Catch up, still unlocked, on what committed since the previous snapshot, until little is
   left: each round folds the events the previous snapshot could not see, from a new one.
4. Lock the live tables with a short ``lock_timeout`` (a lock request waiting behind a long
   reader would queue every query and the live consumer behind it), fold the last few events,
   and swap the copies in by renaming, in one transaction. If the lock is not granted in time,
   catch up again and retry after a pause; after ``lock_attempts`` the rebuild gives up and the
   live tables are untouched.

The processed-event marks and the streams' positions are part of the swap, so events the
live consumer has not seen yet but the rebuild has are not applied twice when they arrive from
Kafka, nor the history when it is published again.

The swap records the shape and the version (``Consumer.version``) the tables were built to. A
projection's version only moves forward by itself: code of an older version than recorded
(a rollback, an old pod restarting in the middle of a rollout) neither rebuilds at start-up
nor swaps in a rebuild, unless told to (``force``, ``cunzhi rebuild … --force``).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from . import positions
from .consumer import Consumer, Tx, create_indexes, create_tables, shape, table_names
from .eventstore import EventStore, StoredEvent
from .leadership import session_lock

_log = structlog.get_logger(__name__)
SUFFIX = "__rebuild"


class RebuildError(RuntimeError):
    """The rebuild could not swap its tables in; the live projection is unchanged."""


class NewerProjection(RuntimeError):
    """The live tables were built by a newer version of the projection than this code's."""


async def _apply(
    conn: asyncpg.Connection,
    consumer: Consumer,
    names: dict[str, str],
    events: list[StoredEvent],
    store: EventStore,
) -> None:
    # Snapshots' differences never overlap, so every event is new here: a repeat would be a
    # bug, and the marks' primary key says so loudly.
    schema, table = (part.strip('"') for part in names["__processed__"].split("."))
    await conn.copy_records_to_table(
        table, schema_name=schema, columns=["event_id"], records=[(e.envelope.id,) for e in events]
    )
    await consumer.apply_batch(Tx(conn, names, store), [(e.event, e.envelope) for e in events])
    await positions.advance(conn, names["__positions__"], [e.envelope for e in events])


async def _fold(
    conn: asyncpg.Connection,
    consumer: Consumer,
    fresh: dict[str, str],
    store: EventStore,
    since: str | None,
    batch_size: int,
) -> int:
    """Fold what this transaction's snapshot sees and ``since`` did not, in stream order."""
    folded, after = 0, 0
    while page := await store.read_snapshot(
        conn, after_position=after, unseen_by=since, limit=batch_size
    ):
        await _apply(conn, consumer, fresh, page, store)
        folded += len(page)
        after = page[-1].position
    return folded


async def _catch_up(
    conn: asyncpg.Connection,
    consumer: Consumer,
    fresh: dict[str, str],
    store: EventStore,
    since: str | None,
    batch_size: int,
) -> tuple[int, str]:
    async with conn.transaction(isolation="repeatable_read"):
        snapshot = await store.snapshot(conn)
        folded = await _fold(conn, consumer, fresh, store, since, batch_size)
    return folded, snapshot


async def _swap(
    conn: asyncpg.Connection, schema: str, live: dict[str, str], fresh: dict[str, str]
) -> None:
    for logical, name in live.items():
        bare = name.split(".")[1].strip('"')
        await conn.execute(f"DROP TABLE {name}")
        await conn.execute(f'ALTER TABLE {fresh[logical]} RENAME TO "{bare}"')
        # Indexes (primary keys included) take the live names back, so the next rebuild's
        # copies are created under the same names as this one's.
        for row in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            schema,
            bare,
        ):
            index = row["indexname"]
            if index.startswith(bare + SUFFIX):
                live_name = bare + index.removeprefix(bare + SUFFIX)
                await conn.execute(f'ALTER INDEX "{schema}"."{index}" RENAME TO "{live_name}"')


async def rebuild(
    consumer: Consumer,
    store: EventStore,
    *,
    batch_size: int = 5000,
    lock_timeout_s: float = 2.0,
    lock_attempts: int = 30,
    retry_pause_s: float = 1.0,
    force: bool = False,
) -> int:
    """Rebuild ``consumer``'s tables from ``store``; returns the number of events folded.

    Raises ``NewerProjection`` if a newer version of the projection built the live tables,
    unless ``force`` (a rollback, meant).
    """
    if not consumer.rebuildable:
        raise ValueError(f"{consumer.name} does not project the service's own events")
    schema = store.schema
    live, fresh = table_names(schema, consumer), table_names(schema, consumer, SUFFIX)
    log = _log.bind(service=schema, projection=consumer.name)
    async with store.pool.acquire() as conn:
        if not force:
            _refuse_older(await _recorded(conn, schema, consumer), schema, consumer)
        for name in fresh.values():
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        # Secondary indexes once the bulk is folded: built in one pass instead of kept up at
        # every write (a sixth to a third of a rebuild's time); the folds find rows by key.
        await create_tables(conn, schema, consumer, SUFFIX, indexes=False)
        try:
            folded, snapshot = await _catch_up(conn, consumer, fresh, store, None, batch_size)
            await create_indexes(conn, schema, consumer, SUFFIX)
            for attempt in range(1, lock_attempts + 1):
                # Unlocked rounds until a round finds less than a page: what is left to fold
                # under the lock is then about what commits in one round trip.
                while True:
                    more, snapshot = await _catch_up(
                        conn, consumer, fresh, store, snapshot, batch_size
                    )
                    folded += more
                    if more < batch_size:
                        break
                try:
                    folded += await _locked_swap(
                        conn,
                        consumer,
                        store,
                        live,
                        fresh,
                        snapshot,
                        batch_size,
                        lock_timeout_s,
                        force,
                    )
                    break
                except asyncpg.LockNotAvailableError:
                    log.warning("rebuild_lock_not_granted", attempt=attempt, retry_in=retry_pause_s)
                    await asyncio.sleep(retry_pause_s)
            else:
                raise RebuildError(
                    f"{schema}.{consumer.name}: the live tables stayed in use for "
                    f"{lock_attempts} attempts of {lock_timeout_s}s; nothing was swapped"
                )
        except BaseException:
            # Leave nothing half-built behind (a broken connection cannot: the next run drops).
            with contextlib.suppress(Exception):
                for name in fresh.values():
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
            raise
    log.info("projection_rebuilt", events=folded)
    return folded


async def _locked_swap(
    conn: asyncpg.Connection,
    consumer: Consumer,
    store: EventStore,
    live: dict[str, str],
    fresh: dict[str, str],
    snapshot: str,
    batch_size: int,
    lock_timeout_s: float,
    force: bool,
) -> int:
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        # The processed marks first: a consumer transaction starts there, so holding them
        # means no consumer is half-way (locking in another order deadlocks with it). LOCK
        # before any query: the transaction's snapshot is taken after it, so it sees every
        # event a live consumer applied, and later events reach the live consumer after the
        # swap, through Kafka, in order.
        ordered = [live["__processed__"], *(n for k, n in live.items() if k != "__processed__")]
        await conn.execute("LOCK TABLE " + ", ".join(ordered) + " IN ACCESS EXCLUSIVE MODE")
        if not force:  # a newer deploy may have swapped its tables in since the start
            _refuse_older(await _recorded(conn, store.schema, consumer), store.schema, consumer)
        folded = await _fold(conn, consumer, fresh, store, snapshot, batch_size)
        await _swap(conn, store.schema, live, fresh)
        await _record_shape(conn, store.schema, consumer)
    return folded


async def _shapes(conn: asyncpg.Connection, schema: str) -> str | None:
    """Where shapes and versions are recorded: nowhere in a database whose service has not
    yet started with migrations 0004 and 0006 (an operator's rebuild before the upgrade; its
    next start-up notes the shape then)."""
    versioned = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attname = 'version' AND NOT attisdropped)",
        f'"{schema}".projection_shapes',
    )
    return f'"{schema}".projection_shapes' if versioned else None


async def _recorded(
    conn: asyncpg.Connection, schema: str, consumer: Consumer
) -> asyncpg.Record | None:
    """The shape and version ``consumer``'s live tables were recorded with, if any."""
    shapes = await _shapes(conn, schema)
    if shapes is None:
        return None
    return await conn.fetchrow(
        f"SELECT fingerprint, version FROM {shapes} WHERE projection = $1", consumer.name
    )


def _refuse_older(recorded: asyncpg.Record | None, schema: str, consumer: Consumer) -> None:
    if recorded is not None and recorded["version"] > consumer.version:
        raise NewerProjection(
            f"{schema}.{consumer.name}: its live tables were built by version "
            f"{recorded['version']} of the projection, this code is version "
            f"{consumer.version}; rebuilding would roll it back (--force to mean it)"
        )


async def _record_shape(conn: asyncpg.Connection, schema: str, consumer: Consumer) -> None:
    """Note that ``consumer``'s live tables have the shape and version its code declares."""
    shapes = await _shapes(conn, schema)
    if shapes is not None:
        await conn.execute(
            f"INSERT INTO {shapes} (projection, fingerprint, version) VALUES ($1, $2, $3) "
            "ON CONFLICT (projection) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "version = excluded.version, recorded_at = now()",
            consumer.name,
            shape(consumer),
            consumer.version,
        )


async def rebuild_if_reshaped(consumer: Consumer, store: EventStore) -> bool:
    """At start-up, before ``consumer`` consumes: rebuild its tables if a newer version of the
    projection changed their shape.

    The live tables were built to the shape and version recorded in ``projection_shapes``; a
    deploy whose code declares another shape (a new column, table or index) and a higher
    ``version`` would otherwise pause the consumer on SQLSTATE class 42 until an operator
    rebuilt it. Tables the code declares that do not exist yet are created first (empty), so
    the blue/green rebuild has live tables to swap. Code of an older version than recorded (a
    rollback, an old pod restarting mid-rollout), or of the same version with another shape
    (a change without its version step), rebuilds nothing: its consumer pauses (``/readyz``
    says why) and the log names the remedy; a rollback is ``cunzhi rebuild … --force``.
    Nothing is recorded for a consumer that is not ``rebuildable`` (its shape is its own
    migrations' business). Tables with no recorded shape — a new projection, or the first
    start with this check — are taken to be the code's: the shape is recorded, nothing rebuilt.
    Several instances starting at once: one rebuilds, the others wait and find it done.
    Returns whether it rebuilt.
    """
    if not consumer.rebuildable:
        return False
    schema, declared = store.schema, shape(consumer)
    live = table_names(schema, consumer)
    log = _log.bind(service=schema, projection=consumer.name, version=consumer.version)
    async with session_lock(store.pool, f"projection_shape:{schema}.{consumer.name}") as conn:
        recorded = await _recorded(conn, schema, consumer)
        if recorded is not None and recorded["fingerprint"] == declared:
            if recorded["version"] < consumer.version:  # recorded before versions (0)
                await _record_shape(conn, schema, consumer)
            return False
        built = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", live["__processed__"])
        if recorded is None or not built:
            await _record_shape(conn, schema, consumer)
            return False
        if recorded["version"] >= consumer.version:
            newer = recorded["version"] > consumer.version
            log.error(
                "projection_newer_than_code" if newer else "projection_reshaped_at_same_version",
                recorded_version=recorded["version"],
                remedy=(
                    "replace this instance by the newer image; to roll back, "
                    f"cunzhi rebuild {schema} {consumer.name} --force with this one"
                    if newer
                    else f"declare version {consumer.version + 1} on the projection, or "
                    f"cunzhi rebuild {schema} {consumer.name}"
                ),
            )
            return False
        await create_tables(conn, schema, consumer, indexes=False)
        folded = await rebuild(consumer, store)
    log.warning(
        "projection_rebuilt_on_shape_change",
        events=folded,
        recorded_version=recorded["version"],
        recorded_shape=recorded["fingerprint"][:12],
        declared_shape=declared[:12],
    )
    return True
