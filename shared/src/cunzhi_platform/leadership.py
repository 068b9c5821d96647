"""One leader among a service's instances, for work that must not run twice at once.

A session-level PostgreSQL advisory lock held on a dedicated connection: the instance holding
it leads; when its process or connection dies, the lock goes with it and a standby takes over
within one retry interval. Used by the outbox relay and by the services' timers.
"""

from __future__ import annotations

import asyncio

import asyncpg


async def wait_for_leadership(conn: asyncpg.Connection, name: str, retry_s: float) -> None:
    """Return once ``conn`` holds the lock ``name`` (retrying every ``retry_s``)."""
    # Polling: PostgreSQL cannot notify anyone that an advisory lock came free.
    while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):  # noqa: ASYNC110
        await asyncio.sleep(retry_s)


async def still_leading(conn: asyncpg.Connection) -> None:
    """Raise if the connection that holds the lock is gone (and with it the lock)."""
    await conn.fetchval("SELECT 1", timeout=10)
