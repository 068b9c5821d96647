"""The outbox relay: publishes stored events to Kafka, in order per key, never losing one.

Decision: one active relay per service, elected with a session-level PostgreSQL advisory lock.
Other instances wait as hot standbys and take over within a poll interval when the leader's
connection drops (its lock goes with it; keepalives make a partitioned leader's connection
drop within ``leadership_timeout_s``). ``FOR UPDATE SKIP LOCKED`` was the alternative, but two
relays splitting a batch can publish one key's events out of order; a single publisher in
outbox-id order cannot. Outbox ids of one key are ordered by commit, because a stream's next
version can only be appended after its previous one committed (the version check).

The relay reads unsent rows (a ``sent_at`` mark, not a tailing cursor), so a row that commits
late is picked up on the next pass instead of being skipped. It is at-least-once: a relay
killed between publishing and marking publishes those rows again; consumers deduplicate by
event id.

A row is marked sent only when the broker acknowledged it on a partition that exists: a
broker that restarted without its topics (Tansu's memory engine) acknowledges writes to
topics and partitions it does not have, and loses them. So the relay makes sure its topics
exist before publishing, asks the broker again after the acknowledgements, and marks only the
prefix of the batch delivered in order. A row that can never be sent (too large for the
broker, a topic name the broker refuses) is moved to ``outbox_set_aside`` with an error log
and a metric, instead of stalling the relay and publishing its batch again for ever.

A broker that lost what it had acknowledged (a topic recreated, or ending before offsets it
gave the relay) is told loudly; in a service the relay then queues the history again
(``republish``) before it publishes anything more, so a reader from the start of the topic
sees each stream from its first version. Where each partition's log must end past is kept in
the database (``relay_published``), and the leading relay looks at its topics' ends every
``topic_check_interval_s`` with or without rows to send: a broker that came back empty is
refilled without waiting for a new event, whichever instance leads since. From then until the
copies are all published, ``cunzhi_relay_history_incomplete`` is 1 and ``/readyz`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import RecordMetadata

from .kafka import (
    KafkaAccess,
    TopicError,
    TopicPlan,
    end_offsets,
    ensure_topics,
    is_idempotent,
    partition_counts,
    start_producer,
)
from .leadership import connect_for_leadership, wait_for_leadership
from .metrics import (
    RELAY_CRASHES,
    RELAY_ERRORS,
    RELAY_HISTORY_INCOMPLETE,
    RELAY_LAG,
    RELAY_PUBLISHED,
    RELAY_SET_ASIDE,
)
from .settings import Settings

_log = structlog.get_logger(__name__)

# Errors a row will get again however often it is sent.
NEVER_SENDABLE: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTopicError,
)


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):
        await producer.stop()


# Copies queued by ``republish`` take ids below every row (at most 0: the outbox's own ids
# start at 1); those still to publish.
COPIES_WAITING = "id <= 0 AND sent_at IS NULL"
# The lag is counted up to this many rows: a count of the whole backlog at every pass made a
# republish quadratic. Above CunzhiRelayBacklog's threshold, so that alert still fires.
LAG_COUNT_CAP = 20_000


def republish_lock(service: str) -> str:
    """Held by ``republish`` while it queues copies ahead of everything; the relay waits."""
    return f"republish:{service}"


class OutboxRelay:
    def __init__(
        self,
        settings: Settings,
        service: str,
        *,
        max_backoff_s: float = 10.0,
        on_broker_lost: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        """``on_broker_lost`` queues the service's history again (``republish``)."""
        assert settings.database_url and settings.kafka_bootstrap_servers
        self.settings = settings
        self.service = service
        self.schema = f'"{service}"'
        self.batch_size = settings.relay_batch_size
        self.poll_interval_s = settings.relay_poll_interval_s
        self.max_backoff_s = max_backoff_s
        self.plan = TopicPlan.from_settings(settings)
        self.kafka = KafkaAccess.from_settings(settings)
        self.is_leader = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._verified: dict[str, float] = {}  # topic -> when it was last seen to exist
        self._seen: set[str] = set()  # topics that existed once: their loss is news
        # Offsets acknowledged per (topic, partition): the last, and the lowest of the last
        # pass (the log must end past it: Tansu's end offset counts only to the start of the
        # last batch). A broker whose log ends before them lost events.
        self._offsets: dict[tuple[str, int], int] = {}
        self._floor: dict[tuple[str, int], int] = {}
        self._fresh: dict[tuple[str, int], int] = {}  # the floors of the pass being made
        self._idempotence = settings.kafka_idempotence
        self.on_broker_lost = on_broker_lost
        self._lost: str | None = None
        # A loss this relay could not repair itself (no ``on_broker_lost``): the history
        # stays incomplete until copies are queued by hand and published.
        self._unrepaired = False
        self._log = _log.bind(service=service, component="relay")

    @property
    def history_lost(self) -> str | None:
        """Why the broker is missing events it acknowledged, until the history is queued."""
        return self._lost

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Relay until stopped. Outages are waited out; any other crash is logged and the
        relay starts again (after a backoff), so the task never dies silently."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                await self._lead()
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, KafkaError) as exc:
                self._log.warning("relay_infrastructure_unavailable", error=repr(exc))
            except Exception as exc:
                RELAY_CRASHES.labels(self.service).inc()
                self._log.exception("relay_crashed", error=repr(exc), restart_in=backoff)
            finally:
                self.is_leader = False
            if not self._stopping.is_set():
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _lead(self) -> None:
        conn = await connect_for_leadership(
            self.settings.database_url or "", self.settings.leadership_timeout_s
        )
        producer: AIOKafkaProducer | None = None
        try:
            if not await wait_for_leadership(
                conn, f"relay:{self.service}", self.poll_interval_s, self._stopping
            ):
                return
            self._verified.clear()
            self._offsets.clear()
            self._floor = await self._published(conn)
            self.is_leader = True
            self._log.info("relay_leading")
            await conn.add_listener(f"{self.service}.outbox", self._on_notify)
            backoff = 0.2
            while not self._stopping.is_set():
                handled, failed = 0, True
                try:
                    # A new producer after any failure: an idempotent one whose batch expired
                    # is out of sequence for good.
                    producer = producer or await self._start_producer()
                    if await self._check_published() and self._lost is None:
                        handled, failed = await self._pass(conn, producer)
                    if self._lost is not None:
                        await self._recover(conn)
                        continue
                except KafkaError as exc:
                    self._log.warning("relay_broker_unavailable", error=repr(exc))
                if failed:
                    if producer is not None:
                        await _quietly_stop(producer)
                        producer = None
                    if await self._sleep(backoff):
                        return
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                backoff = 0.2
                if handled < self.batch_size:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
        finally:
            self.is_leader = False
            # A standby's last figure would be stale for good: only the leader reports a lag.
            for gauge in (RELAY_LAG, RELAY_HISTORY_INCOMPLETE):
                with contextlib.suppress(KeyError):
                    gauge.remove(self.service)
            if producer is not None:
                await _quietly_stop(producer)
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = await start_producer(
            self.kafka,
            client_id=f"cunzhi-{self.service}-relay",
            idempotence=self._idempotence,
        )
        if self._idempotence == "auto" and not is_idempotent(producer):
            self._idempotence = "off"  # the broker said no once: no need to ask each time
        return producer

    async def _published(self, conn: asyncpg.Connection) -> dict[tuple[str, int], int]:
        published = f"{self.schema}.relay_published"
        rows = await conn.fetch(f"SELECT topic, partition, floor FROM {published}")
        return {(r["topic"], r["partition"]): r["floor"] for r in rows}

    async def _check_published(self) -> bool:
        """Look at the ends of the topics published to when due, with rows to send or not
        (a broker that came back empty notes ``_lost``); False if the broker did not answer."""
        try:
            await self._topics_unusable({topic for topic, _ in self._floor})
        except (KafkaError, OSError, TopicError) as exc:
            RELAY_ERRORS.labels(self.service).inc()
            self._log.warning("relay_topics_unchecked", error=repr(exc))
            return False
        return True

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _pass(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> tuple[int, bool]:
        """Publish one batch; (rows handled, whether it stopped at a failure).

        Two statements per pass: take the republish gate (shared) and read the batch; mark
        what was sent, note where the partitions must end past, count what is left (up to
        ``LAG_COUNT_CAP``) and let go of the gate.
        """
        gate = republish_lock(self.service)
        found = await conn.fetch(
            "WITH gate AS MATERIALIZED (SELECT pg_try_advisory_lock_shared(hashtext($2)) AS open) "
            "SELECT gate.open, o.* FROM gate LEFT JOIN LATERAL (SELECT id, topic, key, headers, "
            f"payload FROM {self.schema}.outbox WHERE gate.open AND sent_at IS NULL "
            "ORDER BY id LIMIT $1) o ON true",
            self.batch_size,
            gate,
        )
        if not found[0]["open"]:
            return 0, False  # a republish is queueing copies in front of everything
        unlocked = False
        try:
            rows = [r for r in found if r["id"] is not None]
            sent: list[int] = []
            set_aside: list[tuple[asyncpg.Record, str]] = []
            failure = None
            self._fresh = {}
            if rows:
                sent, set_aside, failure = await self._publish(rows, producer)
            if set_aside:
                await self._set_aside(conn, set_aside)
            floors = self._fresh
            # The count sees the rows before this statement's update: hence "- marked", and
            # a limit that many higher. Floors only go up: one that went back (a topic lost
            # meanwhile) must not hide the loss from the next check.
            lag = await conn.fetchval(
                f"WITH marked AS (UPDATE {self.schema}.outbox SET sent_at = now() "
                "WHERE id = ANY($1::bigint[]) RETURNING 1), "
                f"floors AS (INSERT INTO {self.schema}.relay_published AS p "
                "SELECT * FROM unnest($4::text[], $5::integer[], $6::bigint[]) "
                "ON CONFLICT (topic, partition) DO UPDATE SET floor = greatest(p.floor, "
                "excluded.floor)), "
                "open AS MATERIALIZED (SELECT pg_advisory_unlock_shared(hashtext($2))) "
                f"SELECT (SELECT count(*) FROM (SELECT FROM {self.schema}.outbox "
                "WHERE sent_at IS NULL LIMIT $3) unsent) - (SELECT count(*) FROM marked) FROM open",
                sent,
                gate,
                LAG_COUNT_CAP + len(sent),
                [t for t, _ in floors],
                [p for _, p in floors],
                list(floors.values()),
            )
            unlocked = True
            self._floor.update(floors)
            RELAY_PUBLISHED.labels(self.service).inc(len(sent))
            RELAY_LAG.labels(self.service).set(lag)
            # Copies still to publish: in this batch, unsent, or maybe after a full one.
            done = {*sent, *(row["id"] for row, _ in set_aside)}
            copies = any(r["id"] <= 0 and r["id"] not in done for r in rows) or (
                len(rows) == self.batch_size and rows[-1]["id"] <= 0
            )
            self._unrepaired = self._unrepaired and not copies
            RELAY_HISTORY_INCOMPLETE.labels(self.service).set(int(copies or self._unrepaired))
            if failure is not None:
                RELAY_ERRORS.labels(self.service).inc()
                self._verified.clear()  # look at the topics again before the next attempt
                self._log.warning(
                    "relay_publish_failed", error=failure, delivered=len(sent), batch=len(rows)
                )
            # Sent rows are purged by age by housekeeping.py; the events table is the log.
            return len(sent) + len(set_aside), failure is not None
        finally:
            if not unlocked:
                await conn.execute("SELECT pg_advisory_unlock_shared(hashtext($1))", gate)

    async def _publish(
        self, rows: list[asyncpg.Record], producer: AIOKafkaProducer
    ) -> tuple[list[int], list[tuple[asyncpg.Record, str]], str | None]:
        """Send ``rows``; (ids delivered in order, rows never sendable, the failure if any).

        Delivered means acknowledged by the broker on a partition its topic has now; rows
        after the first one that was not are left for the next pass (order per key first).
        """
        set_aside: list[tuple[asyncpg.Record, str]] = []
        outcome: list[tuple[asyncpg.Record, Any]] = []
        try:
            unusable = await self._topics_unusable({r["topic"] for r in rows})
        except (KafkaError, OSError, TopicError) as exc:
            return [], [], repr(exc)
        if self._lost is not None:
            return [], [], None  # nothing more before the history is queued again
        for row in rows:
            if row["topic"] in unusable:
                outcome.append((row, unusable[row["topic"]]))
                continue
            try:
                future = await producer.send(
                    row["topic"],
                    row["payload"].encode(),
                    key=row["key"].encode(),
                    headers=[(k, str(v).encode()) for k, v in row["headers"].items()],
                )
            except NEVER_SENDABLE as exc:
                outcome.append((row, exc))
                continue
            except KafkaError as exc:  # the topic vanished, metadata timed out: later
                outcome.append((row, exc))
                break
            outcome.append((row, future))
        acks = await asyncio.gather(
            *(o for _, o in outcome if isinstance(o, asyncio.Future)), return_exceptions=True
        )
        results = iter(acks)
        resolved = [
            (row, next(results) if isinstance(o, asyncio.Future) else o) for row, o in outcome
        ]
        acked = [r for _, r in resolved if isinstance(r, RecordMetadata)]
        present = await partition_counts(producer.client, {a.topic for a in acked}) if acked else {}
        sent: list[int] = []
        floors: dict[tuple[str, int], int] = {}
        for row, result in resolved:
            if isinstance(result, RecordMetadata):
                if result.partition >= present.get(result.topic, 0):
                    self._fresh = floors
                    await producer.client.force_metadata_update()
                    return sent, set_aside, f"acknowledged on a missing partition {result}"
                self._note_offset(result)
                tp = (result.topic, result.partition)
                floors[tp] = min(floors.get(tp, result.offset), result.offset)
                sent.append(row["id"])
            elif isinstance(result, (*NEVER_SENDABLE, TopicError)):
                set_aside.append((row, repr(result)))
            else:
                self._fresh = floors
                return sent, set_aside, repr(result)
        self._fresh = floors
        return sent, set_aside, None

    async def _topics_unusable(self, topics: set[str]) -> dict[str, TopicError]:
        """Make sure the topics exist (checked every topic_check_interval_s); those that
        cannot exist, ever, with the reason (other refusals are raised: they can be fixed).

        Notes in ``_lost`` a topic that no longer holds what it acknowledged (recreated, or
        ending before offsets it gave us): the broker lost its data.
        """
        now = time.monotonic()
        due = {t for t in topics if now - self._verified.get(t, -1e9) > self.plan_interval}
        unusable: dict[str, TopicError] = {}
        for topic in due:
            try:
                created = await ensure_topics(self.kafka, [topic], self.plan)
            except TopicError as exc:
                if not exc.permanent:
                    raise
                unusable[topic] = exc
                continue
            acked = {p: o for (t, p), o in self._floor.items() if t == topic}
            if topic in created and topic in self._seen:
                self._lost = f"{topic} had to be created again"
            elif acked:
                ends = await end_offsets(self.kafka, topic, acked)
                short = {p: ends.get(p, 0) for p, o in acked.items() if ends.get(p, 0) <= o}
                if short:
                    self._lost = f"{topic} ends at {short}, before offsets it acknowledged"
            self._verified[topic] = now
            self._seen.add(topic)
        return unusable

    @property
    def plan_interval(self) -> float:
        return self.settings.topic_check_interval_s

    def _note_offset(self, ack: RecordMetadata) -> None:
        """A partition's offsets going back means the broker lost what it had acknowledged."""
        tp = (ack.topic, ack.partition)
        last = self._offsets.get(tp)
        if last is not None and ack.offset < last:
            self._lost = f"{ack.topic}[{ack.partition}] went back from {last} to {ack.offset}"
        self._offsets[tp] = ack.offset

    async def _recover(self, conn: asyncpg.Connection) -> None:
        """The broker lost events it had acknowledged: queue the history again, ahead of
        everything waiting (in a service; a relay on its own can only tell the operator)."""
        remedy = "republishing the history" if self.on_broker_lost else "cunzhi republish --all"
        self._log.error("kafka_broker_lost_acknowledged_events", why=self._lost, remedy=remedy)
        RELAY_HISTORY_INCOMPLETE.labels(self.service).set(1)
        if self.on_broker_lost is not None:
            # Should it fail (the database), _lost stays: the next pass tries again first.
            queued = await self.on_broker_lost()
            self._log.warning("relay_republished_after_broker_loss", events=queued)
        else:
            self._unrepaired = True
        # The new logs start afresh (a crash before this line finds the loss again, and the
        # republish then replaces the copies still waiting).
        await conn.execute(f"DELETE FROM {self.schema}.relay_published")
        self._lost = None
        self._offsets.clear()
        self._floor.clear()

    async def _set_aside(
        self, conn: asyncpg.Connection, rows: list[tuple[asyncpg.Record, str]]
    ) -> None:
        async with conn.transaction():
            # Made by the first row set aside (only the leader gets here, so no race).
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.schema}.outbox_set_aside ("
                "id bigint PRIMARY KEY, event_id uuid NOT NULL, topic text NOT NULL, "
                "key text NOT NULL, headers jsonb NOT NULL, payload text NOT NULL, "
                "created_at timestamptz NOT NULL, set_aside_at timestamptz NOT NULL "
                "DEFAULT now(), reason text NOT NULL)"
            )
            for row, reason in rows:
                await conn.execute(
                    f"WITH moved AS (DELETE FROM {self.schema}.outbox WHERE id = $1 "
                    "RETURNING id, event_id, topic, key, headers, payload, created_at) "
                    f"INSERT INTO {self.schema}.outbox_set_aside "
                    "(id, event_id, topic, key, headers, payload, created_at, reason) "
                    "SELECT *, $2 FROM moved ON CONFLICT (id) DO NOTHING",
                    row["id"],
                    reason[:2000],
                )
        for row, reason in rows:
            RELAY_SET_ASIDE.labels(self.service).inc()
            self._log.error(
                "relay_row_set_aside",
                outbox_id=row["id"],
                topic=row["topic"],
                key=row["key"],
                reason=reason,
                table=f"{self.service}.outbox_set_aside",
            )
