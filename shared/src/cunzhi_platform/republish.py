"""Publish a service's whole history again, from its event store, through the outbox.

For a broker that lost its data (Tansu's memory engine after a restart, a recreated topic)
and for a new downstream system that wants everything from the start. Consumers already
caught up skip the copies by event id. Events are published in their current schema version
(older ones are upcast on the way).

Order, without stopping the service: the copies are read from one REPEATABLE READ snapshot in
``global_position`` order, which is each stream's version order (a stream's next version is
appended only after its previous one committed; ``(tx_id, position)`` order is not, since a
policy's transaction takes its transaction id before it appends). They are queued in chunks
under outbox ids below every existing row, so the relay, which publishes in id order, sends
all of them before anything else, including the rows waiting when the republish began. The
relay pauses while the copies are queued (an advisory lock it checks on each pass); appends go
on meanwhile, their rows queue behind the copies. An event the snapshot could not see is not
copied: its own outbox row, behind the copies, publishes it after its stream's older events.

Once at a time: copies of an earlier republish that still wait already cover every stored event
(what committed since has its own row behind them), so a second republish meanwhile — an
operator following the runbook while the relay refills a broker that lost its data — queues
nothing (``HistoryAlreadyQueued``) instead of publishing the history twice. The relay itself,
finding the broker lost events again, replaces the waiting copies (``again``): some copies may
have been among the events lost.
"""

from __future__ import annotations

import dataclasses
import json

from .eventstore import _COLUMNS, EventStore
from .leadership import session_lock
from .relay import COPIES_WAITING, republish_lock


class HistoryAlreadyQueued(Exception):
    """Copies of an earlier republish still wait for the relay: nothing was queued again."""

    def __init__(self, service: str, waiting: int) -> None:
        super().__init__(
            f"{service}: {waiting} events of an earlier republish still wait for its relay "
            "(queued by the relay after the broker lost its data, or by another republish); "
            "they cover the whole history, so nothing was queued again"
        )
        self.waiting = waiting


async def republish(store: EventStore, *, batch_size: int = 2000, again: bool = False) -> int:
    """Queue every stored event for the relay again, ahead of the rest; returns how many.

    Raises ``HistoryAlreadyQueued`` if copies of an earlier republish still wait, unless
    ``again``: then those are replaced by the new copies.
    """
    schema = f'"{store.schema}"'
    # Waits for the relay's current pass, then keeps it (and another republish) waiting.
    async with session_lock(store.pool, republish_lock(store.schema)) as gate:
        if again:
            await gate.execute(f"DELETE FROM {schema}.outbox WHERE {COPIES_WAITING}")
        elif waiting := await gate.fetchval(
            f"SELECT count(*) FROM {schema}.outbox WHERE {COPIES_WAITING}"
        ):
            raise HistoryAlreadyQueued(store.schema, waiting)
        async with (
            store.pool.acquire() as reader,
            reader.transaction(isolation="repeatable_read", readonly=True),
        ):
            total = await reader.fetchval(f"SELECT count(*) FROM {schema}.events")
            lowest = await store.pool.fetchval(
                f"SELECT least(coalesce(min(id), 1), 1) FROM {schema}.outbox"
            )
            next_id = lowest - total
            position, queued = 0, 0
            while rows := await reader.fetch(
                f"SELECT {_COLUMNS} FROM {schema}.events WHERE global_position > $1 "
                "ORDER BY global_position LIMIT $2",
                position,
                batch_size,
            ):
                page = [store._decode(r) for r in rows]
                # Upcast: the copies carry the current schema version.
                envelopes = [
                    dataclasses.replace(e.envelope, schema_version=e.event.schema_version)
                    for e in page
                ]
                headers = [
                    json.dumps({k: v.decode() for k, v in env.to_headers()}) for env in envelopes
                ]
                # One statement per chunk: appends wait for nothing but their own row.
                await store.pool.execute(
                    f"INSERT INTO {schema}.outbox (id, event_id, topic, key, headers, payload) "
                    "SELECT id, event_id, $2, key, headers::jsonb, payload FROM unnest("
                    "$1::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[]) "
                    "AS e(id, event_id, key, headers, payload)",
                    list(range(next_id, next_id + len(page))),
                    store.topic,
                    [env.id for env in envelopes],
                    [e.stream_id for e in page],
                    headers,
                    [e.event.model_dump_json() for e in page],
                )
                next_id += len(page)
                queued += len(page)
                position = page[-1].position
    await store.pool.execute("SELECT pg_notify($1, '')", f"{store.schema}.outbox")
    return queued
