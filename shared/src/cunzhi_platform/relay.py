"""The outbox relay: publishes stored events to Kafka, in order per key, never losing one.

Decision: one active relay per service, elected with a session-level PostgreSQL advisory lock.
Other instances wait as hot standbys and take over within a poll interval when the leader's
connection drops (its lock goes with it). ``FOR UPDATE SKIP LOCKED`` was the alternative, but
two relays splitting a batch can publish one key's events out of order; a single publisher in
outbox-id order cannot. Outbox ids of one key are ordered by commit, because a stream's next
version can only be appended after its previous one committed (the version check).

The relay reads unsent rows (a ``sent_at`` mark, not a tailing cursor), so a row that commits
late is picked up on the next pass instead of being skipped. It is at-least-once: a relay
killed between publishing and marking publishes those rows again; consumers deduplicate by
event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from .eventstore import init_connection
from .leadership import wait_for_leadership
from .metrics import RELAY_ERRORS, RELAY_LAG, RELAY_PUBLISHED

_log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        *,
        database_url: str,
        broker: KafkaBroker,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.broker = broker
        self.service = service
        self.schema = f'"{service}"'
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.is_leader = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._log = _log.bind(service=service, component="relay")

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Relay until stopped; database and broker outages are waited out, not raised."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                await self._lead()
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self.is_leader = False
                self._log.warning("relay_database_unavailable", error=str(exc), retry_in=backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _lead(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.database_url)
        try:
            await init_connection(conn)
            await wait_for_leadership(conn, f"relay:{self.service}", self.poll_interval_s)
            self.is_leader = True
            self._log.info("relay_leading")
            await conn.add_listener(f"{self.service}.outbox", self._on_notify)
            while not self._stopping.is_set():
                published = await self._pass(conn)
                if published < self.batch_size:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _pass(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            f"SELECT id, topic, key, headers, payload FROM {self.schema}.outbox "
            "WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            RELAY_LAG.labels(self.service).set(0)
            return 0
        backoff = 0.2
        while True:
            try:
                await self._publish(rows)
                break
            except Exception as exc:  # any publish failure is retried, never dropped
                RELAY_ERRORS.labels(self.service).inc()
                self._log.warning("relay_publish_failed", error=repr(exc), retry_in=backoff)
                if await self._sleep(backoff):
                    return 0
                backoff = min(backoff * 2, self.max_backoff_s)
        await conn.execute(
            f"UPDATE {self.schema}.outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
        )
        RELAY_PUBLISHED.labels(self.service).inc(len(rows))
        lag = await conn.fetchval(
            f"SELECT count(*) FROM {self.schema}.outbox WHERE sent_at IS NULL"
        )
        RELAY_LAG.labels(self.service).set(lag)
        return len(rows)  # sent rows are purged by housekeeping.py

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        # One in-flight request per partition (aiokafka's sender) keeps per-key order.
        futures = [
            await self.broker.publish(
                r["payload"].encode(),
                r["topic"],
                key=r["key"].encode(),
                headers=r["headers"],
                no_confirm=True,
            )
            for r in rows
        ]
        await asyncio.gather(*futures)
