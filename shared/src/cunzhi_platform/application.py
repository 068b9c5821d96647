"""Command handling: load a stream, let the aggregate decide, append with its version."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg

from .aggregate import Aggregate
from .envelope import CommandContext
from .events import Event
from .eventstore import EventStore

A = TypeVar("A", bound=Aggregate)


async def load(
    store: EventStore, cls: type[A], stream_id: str, *, conn: asyncpg.Connection | None = None
) -> A:
    return cls.fold(stream_id, [s.event for s in await store.load(stream_id, conn=conn)])


async def execute(
    store: EventStore,
    cls: type[A],
    stream_id: str,
    decide: Callable[[A], Sequence[Event]],
    ctx: CommandContext | None = None,
    *,
    conn: asyncpg.Connection | None = None,
) -> A:
    """Run one command against one aggregate; returns the aggregate with the new events folded.

    A concurrent change between load and append raises ``ConcurrencyError`` (HTTP 409).
    """
    agg = await load(store, cls, stream_id, conn=conn)
    events = list(decide(agg))
    if events:
        await store.append(stream_id, agg.version, events, ctx, conn=conn)
        for e in events:
            agg.apply(e)
    return agg
