"""Publish a service's whole history again, from its event store, through the outbox.

For a broker that lost its data (Tansu's memory engine after a restart, a recreated topic)
and for a new downstream system that wants everything from the start. Consumers already
caught up skip the copies by event id. The outbox is locked while the copies are written, so
no new event of a stream can slip in front of the stream's older events; appends wait for it.
Events are published in their current schema version (older ones are upcast on the way).
"""

from __future__ import annotations

import dataclasses
import json

from .eventstore import Checkpoint, EventStore


async def republish(store: EventStore, *, batch_size: int = 5000) -> int:
    """Queue every stored event for the relay again; returns how many."""
    schema = f'"{store.schema}"'
    queued = 0
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"LOCK TABLE {schema}.outbox IN EXCLUSIVE MODE")
        checkpoint = Checkpoint()
        while page := await store.read_all(checkpoint, batch_size, conn=conn, settled_only=False):
            envelopes = [
                dataclasses.replace(e.envelope, schema_version=e.event.schema_version) for e in page
            ]
            await conn.execute(
                f"INSERT INTO {schema}.outbox (event_id, topic, key, headers, payload) "
                "SELECT id, $2, key, headers::jsonb, payload FROM unnest($1::uuid[], "
                "$3::text[], $4::text[], $5::text[]) AS e(id, key, headers, payload)",
                [env.id for env in envelopes],
                store.topic,
                [e.stream_id for e in page],
                [json.dumps({k: v.decode() for k, v in env.to_headers()}) for env in envelopes],
                [e.event.model_dump_json() for e in page],
            )
            queued += len(page)
            checkpoint = page[-1].checkpoint
        await conn.execute("SELECT pg_notify($1, '')", f"{store.schema}.outbox")
    return queued
