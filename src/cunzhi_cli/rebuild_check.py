"""The read-model invariant: a rebuildable projection holds exactly what a rebuild from its
service's event store gives.

``cunzhi simulate`` checks it after a year and the suite checks it last
(``tests/test_zz_read_models_equal_their_rebuild.py``). The comparison covers the townships
whose stored events the live consumer has all processed (minus those the caller leaves out,
e.g. whose topic records did not all come from the store), and tables without a township only
once the consumer has processed every stored event; columns that only keep the order rows
arrived in are left out, since a rebuild folds in store order. The rebuild is swapped in, as
``cunzhi rebuild`` does, so the live tables afterwards are the rebuilt ones.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import asyncpg
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import Consumer, table_names
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.rebuild import rebuild

from .services import RUNNABLE

ARRIVAL_ORDER = {"seq", "noted_at"}
"""Columns that keep the order rows arrived in: a rebuild folds in another (store) order."""

Rows = dict[str, set[tuple[tuple[str, str], ...]]]
Scope = tuple[list[str], bool]


def projections() -> list[tuple[str, Consumer]]:
    """Every rebuildable projection of every service, as (service, consumer)."""
    return [
        (service, consumer)
        for service, build in sorted(RUNNABLE.items())
        for consumer in build().consumers
        if consumer.rebuildable
    ]


async def scope(
    pool: asyncpg.Pool, schema: str, consumer: Consumer, left_out: Collection[str]
) -> Scope:
    """The townships to compare (every stored event of theirs processed by the live consumer,
    none left out), and whether the consumer has processed every stored event at all."""
    names = table_names(schema, consumer)
    # Processed: its mark, or (the mark pruned since) its stream's position covers it.
    unseen = (
        f'SELECT 1 FROM "{schema}".events u WHERE NOT EXISTS (SELECT 1 FROM '
        f"{names['__processed__']} p WHERE p.event_id = u.event_id) AND NOT EXISTS (SELECT 1 "
        f"FROM {names['__positions__']} s WHERE s.stream_id = u.stream_id "
        f"AND s.source = coalesce(u.metadata->>'source', '/cunzhi/{schema}') "
        "AND u.stream_version <= s.version AND NOT s.missing @> u.stream_version)"
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


async def rows(pool: asyncpg.Pool, schema: str, consumer: Consumer, compared: Scope) -> Rows:
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
            # Every statement takes $1: "false" alone made asyncpg refuse the argument.
            where = f"$1::text[] IS NOT NULL AND {everything_seen}"
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


async def differences(
    pool: asyncpg.Pool, service: str, consumer: Consumer, compared: Scope
) -> list[str]:
    """Rebuild the projection and say, per table, how its ``compared`` rows differ from the
    live ones (nothing when they are equal)."""
    store = EventStore(pool, service, RUNNABLE[service]().all_events(), SystemClock())
    live = await rows(pool, service, consumer, compared)
    await rebuild(consumer, store)
    rebuilt = await rows(pool, service, consumer, compared)
    found = []
    for logical, before in live.items():
        gone, new = before - rebuilt[logical], rebuilt[logical] - before
        if gone or new:
            found.append(
                f"{service}.{logical}: {len(gone)} live rows differ from the rebuild's; "
                f"first: {first_difference(gone, new)}"
            )
    return found
