"""One leader among a service's instances, for work that must not run twice at once.

A session-level PostgreSQL advisory lock held on a dedicated connection: the instance holding
it leads; when its process or connection dies, the lock goes with it and a standby takes over
within one retry interval. Used by the outbox relay and by the services' timers.
(``session_lock`` holds one on a pooled connection instead, for a bounded piece of work.)

A leader cut off by the network does not close its connection: without keepalives PostgreSQL
would hold its lock for the kernel's two hours. Both ends of the leader's connection therefore
probe the other (TCP keepalives) and give up on data left unacknowledged (``tcp_user_timeout``)
after ``timeout_s``: the server ends the session and frees the lock, and the old leader's next
query fails, so it stops leading.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import asyncpg

from .eventstore import init_connection


def keepalive_settings(timeout_s: float) -> dict[str, str]:
    """Server-side session settings: probe after timeout/3 idle, give up after timeout_s."""
    probe = max(1, int(timeout_s / 3))
    return {
        "tcp_keepalives_idle": str(probe),
        "tcp_keepalives_interval": str(probe),
        "tcp_keepalives_count": "2",
        "tcp_user_timeout": str(int(timeout_s * 1000)),
    }


async def connect_for_leadership(url: str, timeout_s: float) -> asyncpg.Connection:
    """A connection whose loss, however it happens, is noticed on both ends within timeout_s."""
    conn: asyncpg.Connection = await asyncpg.connect(
        url, server_settings=keepalive_settings(timeout_s), timeout=timeout_s
    )
    sock = conn._transport.get_extra_info("socket")  # asyncpg offers no client keepalive option
    if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
        probe = max(1, int(timeout_s / 3))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout_s * 1000))
    await init_connection(conn)
    return conn


async def wait_for_leadership(
    conn: asyncpg.Connection, name: str, retry_s: float, stop: asyncio.Event | None = None
) -> bool:
    """True once ``conn`` holds the lock ``name``; False if ``stop`` is set first."""
    stop = stop or asyncio.Event()
    # Polling: PostgreSQL cannot notify anyone that an advisory lock came free.
    while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_s)
        if stop.is_set():
            return False
    return True


async def still_leading(conn: asyncpg.Connection) -> None:
    """Raise if the connection that holds the lock is gone (and with it the lock)."""
    await conn.fetchval("SELECT 1", timeout=10)


@contextlib.asynccontextmanager
async def session_lock(pool: asyncpg.Pool, name: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold the advisory lock ``name`` for the block, on a connection of ``pool``.

    The lock is the session's, so it spans the block's transactions and other connections'
    work. The pool hands connections back as they are (``runtime.keep_session``): one given
    back still holding the lock would hand it to its next user, so unless the unlock is
    known to have run (an error in it, a cancellation at it), the connection is closed
    instead, and the lock ends with its session.
    """
    async with pool.acquire() as conn:
        released = False
        try:
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", name)
            try:
                yield conn
            finally:
                released = await conn.fetchval("SELECT pg_advisory_unlock(hashtext($1))", name)
        finally:
            if not released:
                conn.terminate()
