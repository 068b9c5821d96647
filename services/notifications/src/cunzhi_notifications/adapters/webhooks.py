"""Outbound webhooks: our events, as they are appended, queued for the endpoints subscribed.

Every append of the service goes through ``append``: the events and a ledger row per subscribed
endpoint (recipient ``endpoint:{id}``, channel ``webhook``, kind = the event type) commit in one
transaction, so an endpoint gets each event exactly once to its side (``webhook-id`` is the
delivery id), with the sender's retries, backoff and ``Retry-After``. Webhook deliveries are the
transport of these events, so they publish no notification events of their own (that would
feed itself); their state is in the ledger and the API.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import EventStore, StoredEvent, StreamWrite

CHANNEL = "webhook"


async def append(
    store: EventStore,
    conn: asyncpg.Connection,
    writes: Sequence[StreamWrite],
    ctx: CommandContext,
) -> list[StoredEvent]:
    """Append ``writes`` in ``conn``'s transaction and queue them for subscribed endpoints."""
    if not writes:
        return []
    stored = await store.append_many(writes, ctx, conn=conn)
    await fan_out(conn, f'"{store.schema}"', stored, store.clock.now())
    return stored


def envelope(event: StoredEvent) -> dict[str, Any]:
    """What an endpoint receives: the CloudEvents attributes and the event's data."""
    return {
        "id": event.envelope.id,
        "type": event.envelope.type,
        "source": event.envelope.source,
        "subject": event.stream_id,
        "time": event.envelope.time.isoformat(),
        "data": event.event.to_payload(),
    }


async def fan_out(
    conn: asyncpg.Connection, s: str, stored: Sequence[StoredEvent], now: dt.datetime
) -> None:
    endpoints = await conn.fetch(f"SELECT endpoint_id, event_types FROM {s}.endpoints WHERE active")
    if not endpoints:
        return
    notices: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    for event in stored:
        subscribed = [
            e["endpoint_id"] for e in endpoints if event.envelope.type in e["event_types"]
        ]
        if not subscribed:
            continue
        data = event.event.to_payload()
        township = data.get("township_id")
        notices.append(
            (event.envelope.id, event.envelope.type, township, event.stream_id, envelope(event))
        )
        rows += [
            (event.envelope.id, f"endpoint:{e}", event.envelope.type, township) for e in subscribed
        ]
    if not rows:
        return
    await conn.executemany(
        f"""INSERT INTO {s}.notices (source_event_id, kind, source_type, township_id, subject_ref,
                context, created_at) VALUES ($1, $2, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        [(*n[:4], n[4], now) for n in notices],
    )
    await conn.executemany(
        f"""INSERT INTO {s}.deliveries (source_event_id, recipient_id, kind, channel, township_id,
                not_before, created_at) VALUES ($1, $2, $3, '{CHANNEL}', $4, $5, $5)
            ON CONFLICT DO NOTHING""",
        [(*r, now) for r in rows],
    )


def body(context: dict[str, Any]) -> str:
    return json.dumps(context, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
