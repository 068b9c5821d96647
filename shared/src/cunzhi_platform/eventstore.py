"""The event store of one service, on PostgreSQL through asyncpg, with its outbox.

Table ``<schema>.events`` is the service's source of truth; ``(stream_id, stream_version)`` is
unique, which is the optimistic-concurrency guard. Every append writes the outbox rows in the
same statement, so an event is published if and only if it is stored.

Tailing safely: ``global_position`` comes from a sequence, so rows become visible out of order
when transactions commit out of order. ``read_all`` therefore pages by ``(tx_id, position)``
and only returns rows of transactions older than the oldest one still running
(``pg_snapshot_xmin``): a transaction that commits late always sorts after the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from . import idempotency
from .clock import Clock
from .envelope import CommandContext, Envelope, topic_for
from .events import Event, EventRegistry
from .metrics import CONCURRENCY_CONFLICTS, EVENTS_APPENDED
from .migrations import Migration

PLATFORM_MIGRATIONS = [
    Migration(
        "0001_events_outbox",
        """
        CREATE TABLE {schema}.events (
            global_position bigserial PRIMARY KEY,
            stream_id text NOT NULL,
            stream_version integer NOT NULL CHECK (stream_version > 0),
            event_id uuid NOT NULL UNIQUE,
            type text NOT NULL,
            schema_version integer NOT NULL,
            payload jsonb NOT NULL,
            metadata jsonb NOT NULL,
            recorded_at timestamptz NOT NULL,
            tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
            UNIQUE (stream_id, stream_version)
        );
        CREATE INDEX ON {schema}.events (tx_id, global_position);
        CREATE TABLE {schema}.outbox (
            id bigserial PRIMARY KEY,
            event_id uuid NOT NULL,
            topic text NOT NULL,
            key text NOT NULL,
            headers jsonb NOT NULL,
            payload text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz
        );
        CREATE INDEX outbox_unsent ON {schema}.outbox (id) WHERE sent_at IS NULL;
        """,
    ),
    # Growth: sent rows are purged by age, marks pruned by age (housekeeping.py). Consumers
    # create the marks tables (with the column) at start-up, after the migrations: this adds
    # it to the ones already there, as of now, without rewriting them (now() is not volatile).
    Migration(
        "0002_purge_by_age",
        r"""
        CREATE INDEX outbox_sent_at ON {schema}.outbox (sent_at) WHERE sent_at IS NOT NULL;
        DO $$
        DECLARE marks regclass;
        BEGIN
            FOR marks IN SELECT c.oid::regclass FROM pg_class c
                WHERE c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'r'
                AND c.relname LIKE '%\_\_processed'
            LOOP
                EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS processed_at '
                               'timestamptz NOT NULL DEFAULT now()', marks);
                EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING brin (processed_at)',
                               (SELECT relname FROM pg_class WHERE oid = marks) || '_at', marks);
            END LOOP;
        END $$;
        """,
    ),
    # Audit (who did what, when, in which conversation): by actor over time, by conversation.
    Migration(
        "0003_audit",
        """
        CREATE INDEX events_by_actor ON {schema}.events ((metadata->>'actor'), recorded_at);
        CREATE INDEX events_by_correlation ON {schema}.events ((metadata->>'correlation_id'));
        """,
    ),
    # The shape (``consumer.shape``) each rebuildable projection's live tables were built to:
    # a service that starts with another shape rebuilds them (``rebuild.rebuild_if_reshaped``).
    Migration(
        "0004_projection_shapes",
        """
        CREATE TABLE {schema}.projection_shapes (
            projection text PRIMARY KEY,
            fingerprint text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    # Where the broker's log of each partition must end past (``relay.py``): a topic that ends
    # before is missing events it acknowledged, whichever instance's relay notices.
    Migration(
        "0005_relay_published",
        """
        CREATE TABLE {schema}.relay_published (
            topic text NOT NULL,
            partition integer NOT NULL,
            floor bigint NOT NULL,
            PRIMARY KEY (topic, partition)
        );
        """,
    ),
    # The version (``Consumer.version``) each projection's live tables were built by: only a
    # newer one rebuilds them by itself. 0: recorded before versions.
    Migration(
        "0006_projection_versions",
        "ALTER TABLE {schema}.projection_shapes ADD COLUMN version integer NOT NULL DEFAULT 0;",
    ),
    idempotency.MIGRATION,
    # Audit of a township (an office's question): newest first through the index, a page at
    # a time, however long the store (``EventStore.audit``).
    Migration(
        "0008_audit_by_township",
        """
        CREATE INDEX events_by_township_position ON {schema}.events
            ((payload->>'township_id'), global_position)
            WHERE payload->>'township_id' IS NOT NULL;
        """,
    ),
]


def system_actor(service: str) -> str:
    """Who acts when the service acts by itself (a timer, a policy): ``system:<service>``."""
    return f"system:{service}"


def _key(key: str) -> str:
    """A payload key written into SQL (an index expression matches literals only)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", key):
        raise ValueError(f"payload key {key!r} must be lower-case letters, digits and _")
    return key


def lookup_index(*keys: str) -> Migration:
    """A service migration indexing its events by payload ``keys`` for ``stream_ids``.

    Partial (only events carrying every key), so other events cost nothing to append. Built
    inside the migration's transaction: appends wait while it is built, a second or so per
    million events carrying the keys.
    """
    exprs = ", ".join(f"(payload->>'{_key(k)}')" for k in keys)
    carried = " AND ".join(f"payload ? '{k}'" for k in keys)
    name = "events_by_" + "_".join(keys)
    return Migration(
        f"lookup_{'_'.join(keys)}",
        f"CREATE INDEX IF NOT EXISTS {name} ON {{schema}}.events ({exprs}, type) WHERE {carried}",
    )


class ConcurrencyError(Exception):
    """The stream moved on since it was loaded (HTTP 409): reload and decide again."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        found = "" if actual is None else f", it is at version {actual}"
        super().__init__(
            f"stream {stream_id} was expected at version {expected}{found}; "
            "someone else changed it meanwhile — reload and try again"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class StreamWrite:
    stream_id: str
    expected_version: int
    events: Sequence[Event]


@dataclass(frozen=True)
class Checkpoint:
    """A position in the store's commit-safe order; ``Checkpoint()`` is the beginning."""

    tx_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class StoredEvent:
    position: int
    tx_id: int
    stream_id: str
    version: int
    envelope: Envelope
    event: Event

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx_id, self.position)


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# Payload as text (pydantic parses it in one step) and metadata fields picked in SQL: decoding
# JSON twice in Python was half the cost of a rebuild.
_COLUMNS = (
    "global_position, tx_id::text::bigint AS tx, stream_id, stream_version, event_id, type, "
    "schema_version, payload::text AS payload, recorded_at, metadata->>'source' AS source, "
    "metadata->>'correlation_id' AS correlation_id, metadata->>'causation_id' AS causation_id, "
    "metadata->>'actor' AS actor"
)


class EventStore:
    def __init__(
        self, pool: asyncpg.Pool, service: str, registry: EventRegistry, clock: Clock
    ) -> None:
        self.pool = pool
        self.service = service
        self.schema = service
        self.registry = registry
        self.clock = clock
        self.topic = topic_for(service)
        s = f'"{self.schema}"'
        # One event per statement: the version check, the event and its outbox row together.
        # (A multi-row unnest() form measured 2.5x slower for the common one-event command.)
        self._append_sql = f"""
            WITH current AS (
                SELECT coalesce(max(stream_version), 0) AS v FROM {s}.events WHERE stream_id = $1
            ), ins AS (
                INSERT INTO {s}.events (stream_id, stream_version, event_id, type, schema_version,
                                        payload, metadata, recorded_at)
                SELECT $1, current.v + 1, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8
                FROM current WHERE current.v = $2
                RETURNING global_position, tx_id
            ), ob AS (
                INSERT INTO {s}.outbox (event_id, topic, key, headers, payload)
                SELECT $3, $9, $1, $10::text::jsonb, $6::text FROM ins
            )
            SELECT global_position, tx_id::text::bigint AS tx FROM ins"""
        self._wake = asyncio.Event()

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Event],
        ctx: CommandContext | None = None,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> list[StoredEvent]:
        return await self.append_many(
            [StreamWrite(stream_id, expected_version, events)], ctx, conn=conn
        )

    async def append_many(
        self,
        writes: Sequence[StreamWrite],
        ctx: CommandContext | None = None,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> list[StoredEvent]:
        """Append to several streams atomically; any version mismatch appends nothing."""
        ctx = ctx or CommandContext()
        unit = idempotency.ambient(self.pool)
        if conn is None:
            async with self.pool.acquire() as own:
                if sum(len(w.events) for w in writes) == 1 and unit is None:
                    # One statement is atomic by itself: no BEGIN/COMMIT round trips.
                    stored = await self._append(own, writes, ctx)
                else:
                    # In a keyed command's unit, a savepoint: a conflict leaves it usable.
                    async with own.transaction():
                        stored = await self._append(own, writes, ctx)
        else:
            async with conn.transaction():
                stored = await self._append(conn, writes, ctx)
        if unit is None:
            self._wake.set()
        else:  # the relay is woken once the unit commits
            unit.event_ids.extend(s.envelope.id for s in stored)
        return stored

    def wake(self) -> None:
        """Tell the relay that events were committed (``notify_appends``)."""
        self._wake.set()

    async def notify_appends(self) -> None:
        """Tell relays in other processes (LISTEN) that the outbox has rows, once per burst.

        NOTIFY inside the append transaction serialises every commit on PostgreSQL's notify
        queue lock (it cost two thirds of the append rate); sent here, after commit, it costs
        one statement per burst instead. Runs until cancelled.
        """
        channel = f"{self.schema}.outbox"
        while True:
            await self._wake.wait()
            self._wake.clear()
            # An outage is covered by the relay's polling fallback.
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self.pool.execute("SELECT pg_notify($1, '')", channel)
            await asyncio.sleep(0.002)

    async def _append(
        self, conn: asyncpg.Connection, writes: Sequence[StreamWrite], ctx: CommandContext
    ) -> list[StoredEvent]:
        now = self.clock.now()
        stored: list[StoredEvent] = []
        for write in writes:
            for offset, event in enumerate(write.events):
                expected = write.expected_version + offset
                env = Envelope.new(
                    type=event.event_type,
                    source=f"/cunzhi/{self.service}",
                    subject=write.stream_id,
                    time=now,
                    schema_version=event.schema_version,
                    correlation_id=ctx.correlation_id,
                    causation_id=ctx.causation_id,
                    # Timers and policies act as the service itself, never as nobody.
                    actor=ctx.actor or system_actor(self.service),
                    stream_version=expected + 1,
                )
                try:
                    row = await conn.fetchrow(
                        self._append_sql,
                        write.stream_id,
                        expected,
                        env.id,
                        env.type,
                        env.schema_version,
                        event.model_dump_json(),
                        json.dumps(env.to_metadata()),
                        now,
                        self.topic,
                        json.dumps({k: v.decode() for k, v in env.to_headers()}),
                    )
                except asyncpg.UniqueViolationError:
                    CONCURRENCY_CONFLICTS.labels(self.service).inc()
                    raise ConcurrencyError(write.stream_id, write.expected_version) from None
                if row is None:
                    CONCURRENCY_CONFLICTS.labels(self.service).inc()
                    actual = await conn.fetchval(
                        f'SELECT coalesce(max(stream_version), 0) FROM "{self.schema}".events '
                        "WHERE stream_id = $1",
                        write.stream_id,
                    )
                    raise ConcurrencyError(write.stream_id, write.expected_version, actual)
                stored.append(
                    StoredEvent(
                        row["global_position"], row["tx"], write.stream_id, expected + 1, env, event
                    )
                )
        EVENTS_APPENDED.labels(self.service).inc(len(stored))
        return stored

    def _decode(self, row: asyncpg.Record) -> StoredEvent:
        envelope = Envelope(
            id=str(row["event_id"]),
            type=row["type"],
            source=row["source"] or f"/cunzhi/{self.service}",
            subject=row["stream_id"],
            time=row["recorded_at"],
            schema_version=row["schema_version"],
            correlation_id=row["correlation_id"],
            causation_id=row["causation_id"],
            actor=row["actor"],
            stream_version=row["stream_version"],
        )
        event = self.registry.decode_json(row["type"], row["schema_version"], row["payload"])
        return StoredEvent(
            row["global_position"],
            row["tx"],
            row["stream_id"],
            row["stream_version"],
            envelope,
            event,
        )

    async def audit(
        self,
        *,
        township_ids: Sequence[str] | None,
        actor: str | None = None,
        correlation_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Who did what and when: the stored events' metadata, newest first.

        ``township_ids`` limits to events whose payload names one of those townships (``None``:
        every event); ``before`` to positions before it (keyset paging: the last position of a
        page asks for the next). Each township is read newest first through the
        ``0008_audit_by_township`` index, at most ``offset + limit`` entries of it, so the work
        is bounded by the page, not by the store; the ``0003_audit`` indexes serve an actor or
        a conversation asked of everything.
        """
        sql, args = self.audit_query(
            township_ids=township_ids,
            actor=actor,
            correlation_id=correlation_id,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            before=before,
        )
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    def audit_query(
        self,
        *,
        township_ids: Sequence[str] | None,
        actor: str | None = None,
        correlation_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        offset: int = 0,
        before: int | None = None,
    ) -> tuple[str, list[Any]]:
        """The query ``audit`` runs, and its arguments."""
        columns = (
            "global_position AS position, event_id, type, stream_id, stream_version, "
            "recorded_at, metadata->>'actor' AS actor, "
            "metadata->>'correlation_id' AS correlation_id, "
            "metadata->>'causation_id' AS causation_id, payload->>'township_id' AS township_id"
        )
        # Only the conditions asked for, as plain comparisons: "$n IS NULL OR …" would keep a
        # generic plan off the indexes.
        args: list[Any] = [limit, offset]
        conditions = ["true"]
        for clause, value in (
            ("metadata->>'actor' = ${}", actor),
            ("metadata->>'correlation_id' = ${}", correlation_id),
            ("recorded_at >= ${}", since),
            ("recorded_at < ${}", until),
            ("global_position < ${}", before),
        ):
            if value is not None:
                args.append(value)
                conditions.append(clause.format(len(args)))
        where = " AND ".join(conditions)
        events = f'"{self.schema}".events'
        if township_ids is None:
            sql = (
                f"SELECT {columns} FROM {events} WHERE {where} "
                "ORDER BY global_position DESC LIMIT $1 OFFSET $2"
            )
        else:
            args.append(sorted(set(township_ids)))
            sql = (
                f"SELECT page.* FROM unnest(${len(args)}::text[]) AS asked(township) "
                f"CROSS JOIN LATERAL (SELECT {columns} FROM {events} "
                f"WHERE payload->>'township_id' = asked.township AND {where} "
                "ORDER BY global_position DESC LIMIT $1::bigint + $2::bigint) AS page "
                "ORDER BY page.position DESC LIMIT $1 OFFSET $2"
            )
        return sql, args

    async def load(
        self, stream_id: str, *, conn: asyncpg.Connection | None = None
    ) -> list[StoredEvent]:
        sql = (
            f'SELECT {_COLUMNS} FROM "{self.schema}".events WHERE stream_id = $1 '
            "ORDER BY stream_version"
        )
        if conn is not None:
            rows = await conn.fetch(sql, stream_id)
        else:
            rows = await self.pool.fetch(sql, stream_id)
        return [self._decode(r) for r in rows]

    async def stream_ids(self, types: Sequence[str], where: dict[str, str]) -> list[str]:
        """Streams holding an event of one of ``types`` whose payload has the values ``where``.

        For a decision that must see every stream of a kind (all the topics of a call), which a
        read model that may lag cannot promise. Written so that the service's
        ``lookup_index(*where)`` migration serves it; without one it scans the events.
        """
        if not where:
            raise ValueError("stream_ids needs at least one payload value to look up")
        conditions = " AND ".join(
            f"payload ? '{_key(k)}' AND payload->>'{k}' = ${i}" for i, k in enumerate(where, 2)
        )
        rows = await self.pool.fetch(
            f'SELECT stream_id FROM "{self.schema}".events '
            f"WHERE type = ANY($1::text[]) AND {conditions} "
            "GROUP BY stream_id ORDER BY min(global_position)",
            list(types),
            *where.values(),
        )
        return [r["stream_id"] for r in rows]

    async def version(self, stream_id: str) -> int:
        v: int = await self.pool.fetchval(
            f'SELECT coalesce(max(stream_version), 0) FROM "{self.schema}".events '
            "WHERE stream_id = $1",
            stream_id,
        )
        return v

    async def read_all(
        self,
        after: Checkpoint = Checkpoint(),
        limit: int = 1000,
        *,
        conn: asyncpg.Connection | None = None,
        settled_only: bool = True,
    ) -> list[StoredEvent]:
        """Events after ``after`` in commit-safe order, at most ``limit``.

        With ``settled_only`` (the default) only transactions that can no longer commit behind
        the returned page are included, so a reader that pages on never skips a late commit.
        """
        bound = "AND tx_id < pg_snapshot_xmin(pg_current_snapshot())" if settled_only else ""
        sql = (
            f'SELECT {_COLUMNS} FROM "{self.schema}".events '
            "WHERE (tx_id, global_position) > ($1::text::xid8, $2) "
            f"{bound} ORDER BY tx_id, global_position LIMIT $3"
        )
        args = (str(after.tx_id), after.position, limit)
        rows = await (conn.fetch(sql, *args) if conn is not None else self.pool.fetch(sql, *args))
        return [self._decode(r) for r in rows]

    async def read_snapshot(
        self,
        conn: asyncpg.Connection,
        *,
        after_position: int = 0,
        unseen_by: str | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Events visible to ``conn``'s transaction, in stream order (``global_position``).

        Run it in a REPEATABLE READ transaction and page on ``after_position``: every page then
        comes from one snapshot, where position order is each stream's version order (version
        n+1 is inserted only once version n has committed). ``unseen_by`` (a snapshot from
        ``snapshot()``) keeps only the events that snapshot could not see, to catch up after it.
        Unlike ``read_all``, not for tailing: use it where the reader holds one snapshot.
        """
        unseen = (
            ""
            if unseen_by is None
            else "AND tx_id >= pg_snapshot_xmin($3::text::pg_snapshot) "
            "AND NOT pg_visible_in_snapshot(tx_id, $3::text::pg_snapshot)"
        )
        sql = (
            f'SELECT {_COLUMNS} FROM "{self.schema}".events WHERE global_position > $1 '
            f"{unseen} ORDER BY global_position LIMIT $2"
        )
        args: tuple[Any, ...] = (after_position, limit)
        rows = await conn.fetch(sql, *args, *(() if unseen_by is None else (unseen_by,)))
        return [self._decode(r) for r in rows]

    @staticmethod
    async def snapshot(conn: asyncpg.Connection) -> str:
        """The snapshot ``conn``'s transaction reads (taken now if it has none yet), as text."""
        value: str = await conn.fetchval("SELECT pg_current_snapshot()::text")
        return value

    async def recorded_at_head(self) -> dt.datetime | None:
        value: dt.datetime | None = await self.pool.fetchval(
            f'SELECT max(recorded_at) FROM "{self.schema}".events'
        )
        return value
