"""Consumers: FastStream subscribers that apply events exactly once to PostgreSQL.

Commit semantics, chosen on purpose: the subscriber uses ``AckPolicy.MANUAL``. For each
message (or batch) the handler's writes, the "processed" marks of the event ids and the
streams' positions commit in one PostgreSQL transaction; only then are the Kafka offsets of
exactly those records committed. A crash in between redelivers the message, and the marks make
the redelivery a no-op. Messages are handled one at a time per subscriber (no ``max_workers``),
which is what keeps one aggregate's events in order.

Never applied twice, however old: housekeeping prunes the marks (they would grow for ever),
but a republish, or the relay's own after the broker lost its data, sends the whole history
again under the original ids. So the consumer also keeps, per stream (``source`` and subject),
the highest ``stream_version`` it applied and the versions below it that it has not
(``<consumer>__positions``: one row per stream, never pruned), the way the ``eventsourcing``
library's process applications record their position per upstream. An event at or below its
stream's position is applied only if its version is among the missing ones: one dead-lettered
(replayed later), one the relay set aside and an operator queued again, history older than the
topic's retention when a new consumer starts. Events without a stream version (none of ours)
rely on the marks alone. A rebuild writes the positions of what it folded, swapped in with
the tables, so a rebuilt projection skips the history as well.

Every record ends in one of three ways, never skipped: applied (or ignored), dead-lettered,
or not yet — then the offsets stay before it and the consumer seeks back to it. What happens
on an error depends on what it says about the message (``classify``):

- *transient* (a database or network outage, a failover, lock or serialisation conflicts,
  ``ConcurrencyError``): not the message's fault, retried with backoff for as long as it lasts;
- *schema drift* (SQLSTATE class 42: a projection's table does not match its code after a
  deploy; or a newer deploy rebuilt the tables to another shape, ``ShapeChanged``): every event
  would fail, so the consumer *pauses* — it seeks back, probes again every ``pause_retry_s``,
  and ``/readyz`` says why — instead of dead-lettering the whole topic;
- *data* (classes 22 and 23): the event can never be written, dead-lettered at once;
- anything else a handler raises: retried ``max_retries`` times (it may be a passing state of
  the world), then dead-lettered as ``handler_error``.

An event type the consumer does not know is ignored and marked processed: producers add
types, and services are upgraded one at a time. What cannot be processed goes to
``<topic>.dlq`` with the reason in headers (``dlq_reason``, ``dlq_error``, ``dlq_consumer``,
the original topic/partition/offset): malformed envelopes, bad JSON, a known type's unknown
(newer) version, invalid payloads, an upcaster that fails (``decode_error``), data errors and
handler errors that persist. A dead letter the broker refuses for good (too large with the
added headers, not authorised) is kept in ``<service>.dead_letters`` instead, with an error
log and ``cunzhi_dlq_unpublished_total``; ``cunzhi dlq list|replay`` shows and replays both.
A replayed letter names the consumer that failed (``dlq_replay_for``): the other consumers of
the topic ignore it, so a letter that still fails comes back once, not once per consumer.
An unforeseen error anywhere in a batch (a bug) is logged and the batch is read again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    ProducerClosed,
)
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from . import positions
from .aggregate import DomainError
from .clock import SHANGHAI, Clock
from .envelope import CommandContext, Envelope, EnvelopeError, dlq_for, foreign_source
from .events import Event, EventRegistry, InvalidEventPayload, UnknownEventType
from .eventstore import ConcurrencyError, EventStore
from .metrics import (
    CONSUMED,
    CONSUMER_LAG,
    CONSUMER_PAUSED,
    CONSUMER_RETRIES,
    DLQ,
    DLQ_UNPUBLISHED,
    HANDLER_LATENCY,
)

_log = structlog.get_logger(__name__)


class Failure(enum.Enum):
    """What an error says about the message being handled."""

    TRANSIENT = "transient"
    SCHEMA_DRIFT = "schema_drift"
    DATA = "data"
    HANDLER = "handler"


# SQLSTATE classes and codes that say "try again later": connection (08), insufficient
# resources (53), operator intervention incl. admin shutdown and statement timeouts (57),
# system errors such as I/O (58); a read-only transaction after a failover, lock not available
# (also lock_timeout), serialisation failure, deadlock, statement completion unknown.
_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"25006", "55P03", "40001", "40P01", "40003"})


class ShapeChanged(Exception):
    """Another deploy rebuilt this projection's tables to another shape than this code's."""


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, ShapeChanged):
        return Failure.SCHEMA_DRIFT
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return Failure.TRANSIENT
        if isinstance(exc, asyncpg.InvalidCachedStatementError):
            return Failure.TRANSIENT  # a rebuild swapped a table under a cached plan
        if state.startswith("42"):
            return Failure.SCHEMA_DRIFT
        if state[:2] in ("22", "23"):
            return Failure.DATA
        return Failure.HANDLER
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        return Failure.DATA  # asyncpg's client-side DataError: a value it cannot send
    if isinstance(exc, ConcurrencyError | OSError | TimeoutError | asyncpg.InterfaceError):
        return Failure.TRANSIENT
    return Failure.HANDLER


def _retriable_publish(exc: BaseException) -> bool:
    """May a dead-letter publish that failed with ``exc`` succeed later?

    aiokafka marks its timeouts and a missing broker as not retriable; for a dead letter they
    are an outage to wait out. A message too large or a refused authorisation is not.
    """
    if isinstance(exc, KafkaError):
        return exc.retriable or isinstance(
            exc, KafkaTimeoutError | KafkaUnavailableError | KafkaConnectionError | ProducerClosed
        )
    return isinstance(exc, OSError | TimeoutError)


def _describe(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {state} {exc!r}" if isinstance(exc, asyncpg.PostgresError) else repr(exc)


class Tx:
    """The transaction a consumer writes in, and the names of its tables (live or rebuild).

    A policy that reacts by appending events passes ``conn=tx.conn`` to the store, so its
    events and the processed mark commit together (redelivery appends nothing twice).
    """

    def __init__(
        self, conn: asyncpg.Connection, names: Mapping[str, str], store: EventStore | None = None
    ) -> None:
        self.conn = conn
        self._names = names
        self._store = store

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise RuntimeError("this consumer runs without an event store")
        return self._store

    def t(self, logical: str) -> str:
        return self._names[logical]


def caused_by(envelope: Envelope) -> CommandContext:
    """A policy's events continue the conversation of the event that caused them.

    The policy acts as the service itself (the store records ``system:<service>``); who set
    the conversation going is found by following ``causation_id``.
    """
    return CommandContext(correlation_id=envelope.correlation_id, causation_id=envelope.id)


async def skipping_refusals(decision: Callable[[], Awaitable[object]], envelope: Envelope) -> None:
    """Run a policy's decision; a refusal by the domain is logged and the message skipped.

    The refusal is not the message's fault (the aggregate moved on, it was already done): a
    dead letter would only page someone for a decision the domain already made.
    """
    try:
        await decision()
    except DomainError as refusal:
        _log.warning(
            "policy_refused", event_id=envelope.id, event_type=envelope.type, reason=str(refusal)
        )


class Consumer:
    """Subclass per read model or policy. ``tables`` maps a logical name to its DDL.

    DDL uses ``{table}`` for the (schema-qualified) table name and must not name indexes or
    constraints, so a rebuild can create fresh copies beside the live ones. Secondary indexes
    go in ``indexes`` (logical table → column lists, or ``USING gin (col)``): the platform
    names them after the table and carries them through a rebuild, which builds them after
    folding the bulk of the store, so ``apply`` should find rows by a table's keys (primary
    key or UNIQUE in the DDL), not through a secondary index.
    """

    name: ClassVar[str]
    topics: ClassVar[Sequence[str]]
    tables: ClassVar[Mapping[str, str]] = {}
    indexes: ClassVar[Mapping[str, Sequence[str]]] = {}
    # Batches by default: one transaction and one offset commit per poll instead of per
    # message (per-message commits held a projection to a few hundred events a second).
    batch: ClassVar[bool] = True
    # A projection of the service's own events can be rebuilt from its event store.
    rebuildable: ClassVar[bool] = False
    # Bumped whenever ``tables`` or ``indexes`` change. Recorded with the shape: only code
    # of a higher version rebuilds tables by itself at start-up (``rebuild_if_reshaped``);
    # older code (a rollback, an old pod restarting mid-rollout) pauses instead.
    version: ClassVar[int] = 1

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        raise NotImplementedError

    async def apply_batch(self, tx: Tx, items: Sequence[tuple[Event, Envelope]]) -> None:
        for event, envelope in items:
            await self.apply(tx, event, envelope)


def table_names(schema: str, consumer: Consumer, suffix: str = "") -> dict[str, str]:
    names = {logical: f'"{schema}"."{logical}{suffix}"' for logical in consumer.tables}
    names["__processed__"] = f'"{schema}"."{consumer.name}__processed{suffix}"'
    names["__positions__"] = f'"{schema}"."{consumer.name}__positions{suffix}"'
    return names


def shape(consumer: Consumer) -> str:
    """A fingerprint of the tables ``consumer`` declares, its DDL and indexes (whitespace
    aside): a deploy that changes a read model's shape changes it. The platform's own tables
    count too: tables from before stream positions are rebuilt once, which writes them."""
    declared = {
        "platform": positions.DDL,
        "tables": {logical: " ".join(ddl.split()) for logical, ddl in consumer.tables.items()},
        "indexes": {logical: list(specs) for logical, specs in consumer.indexes.items()},
    }
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()


def index_specs(consumer: Consumer) -> list[tuple[str, str, str]]:
    """(logical table, index name suffix, spec) of every secondary index of ``consumer``."""
    return [
        (logical, f"ix{i}", spec)
        for logical, specs in consumer.indexes.items()
        for i, spec in enumerate(specs)
    ]


async def create_tables(
    conn: asyncpg.Connection,
    schema: str,
    consumer: Consumer,
    suffix: str = "",
    *,
    indexes: bool = True,
) -> None:
    """Create ``consumer``'s tables, processed marks and stream positions; its secondary indexes
    unless told not to (a rebuild adds them after its bulk fold, ``create_indexes``)."""
    names = table_names(schema, consumer, suffix)
    for logical, ddl in consumer.tables.items():
        await conn.execute(ddl.format(table=names[logical]))
    if indexes:
        await create_indexes(conn, schema, consumer, suffix)
    # processed_at: marks are pruned by age (housekeeping.py), BRIN being nearly free to keep.
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {names['__processed__']} (event_id uuid PRIMARY KEY, "
        "processed_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute(
        f'CREATE INDEX IF NOT EXISTS "{consumer.name}__processed{suffix}_at" '
        f"ON {names['__processed__']} USING brin (processed_at)"
    )
    await conn.execute(positions.DDL.format(table=names["__positions__"]))


async def create_indexes(
    conn: asyncpg.Connection, schema: str, consumer: Consumer, suffix: str = ""
) -> None:
    names = table_names(schema, consumer, suffix)
    for logical, index, spec in index_specs(consumer):
        columns = spec if spec.upper().startswith("USING ") else f"({spec})"
        await conn.execute(
            f'CREATE INDEX IF NOT EXISTS "{logical}{suffix}_{index}" ON {names[logical]} {columns}'
        )


@dataclass
class _Decoded:
    record: ConsumerRecord[Any, Any]
    event: Event | None  # None: a type this consumer does not handle, only marked processed
    envelope: Envelope


class _Poison(Exception):
    def __init__(self, record: ConsumerRecord[Any, Any], reason: str, error: str) -> None:
        super().__init__(error)
        self.record = record
        self.reason = reason
        self.error = error


class _Paused(Exception):
    """The consumer's tables do not match its code: stop here, probe again later."""


def _json_or_payload(value: bytes | None) -> str:
    """Which of the two reasons a payload that failed to validate was refused for."""
    try:
        return "invalid_payload" if isinstance(json.loads(value or b""), dict) else "bad_json"
    except ValueError:
        return "bad_json"


async def _raw(msg: StreamMessage[Any]) -> Any:
    """Keep the body undecoded: bad JSON must reach our handler to be dead-lettered."""
    return msg.body


async def _tolerant(
    raw: Any, default: Callable[[Any], Awaitable[StreamMessage[Any]]]
) -> StreamMessage[Any]:
    """FastStream's parser, but a header it cannot read does not stop the record.

    FastStream decodes every header as UTF-8 and fails on one without a value; the batch then
    never reached the handler and the next commit moved past it. The records reach ``_handle``
    unchanged, which judges their headers by its own rules.
    """
    try:
        return await default(raw)
    except Exception:
        if isinstance(raw, tuple):
            msg = await default(tuple(dataclasses.replace(r, headers=()) for r in raw))
        else:
            msg = await default(dataclasses.replace(raw, headers=()))
        msg.raw_message = raw
        return msg


REPLAY_FOR = "dlq_replay_for"
"""The header of a replayed dead letter: the group id of the one consumer it is replayed to."""

DEAD_LETTERS_DDL = """
CREATE TABLE IF NOT EXISTS "{schema}".dead_letters (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    reason text NOT NULL,
    error text NOT NULL,
    publish_error text NOT NULL,
    topic text NOT NULL,
    "partition" integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    value bytea,
    headers jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (consumer, topic, "partition", "offset")
)"""

REPLAYED_DDL = """
CREATE TABLE IF NOT EXISTS "{schema}".dead_letters_replayed (
    letter text NOT NULL,
    consumer text NOT NULL,
    event_id text NOT NULL,
    replayed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (letter, consumer, event_id)
)"""
"""Dead letters replayed, no longer listed as waiting: by ``cunzhi dlq``'s id of the letter,
with the consumer and event id (a broker that lost its data numbers new letters from 0 again)."""


async def create_dead_letter_tables(conn: asyncpg.Connection, schema: str) -> None:
    async with conn.transaction():
        # Several consumers (and instances) start at once; IF NOT EXISTS alone races.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"dead_letters:{schema}")
        await conn.execute(DEAD_LETTERS_DDL.format(schema=schema))
        await conn.execute(REPLAYED_DDL.format(schema=schema))


class ConsumerRunner:
    """Attaches a consumer to a broker as a FastStream subscriber with manual commits."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        broker: KafkaBroker,
        pool: asyncpg.Pool,
        schema: str,
        registry: EventRegistry,
        clock: Clock,
        max_retries: int = 3,
        retry_delay_s: float = 0.1,
        max_backoff_s: float = 10.0,
        pause_retry_s: float = 5.0,
        group_id: str | None = None,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        fetch_max_wait_ms: int = 100,
        store: EventStore | None = None,
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.broker = broker
        self.pool = pool
        self.schema = schema
        self.registry = registry
        self.clock = clock
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.max_backoff_s = max_backoff_s
        self.pause_retry_s = pause_retry_s
        self.group_id = group_id or f"cunzhi.{schema}.{consumer.name}"
        self.names = table_names(schema, consumer)
        # Where the shape of a rebuildable projection's tables is recorded (``setup``).
        self._shapes: str | None = None
        self._shape = shape(consumer)
        # Why the consumer is paused (``/readyz`` shows it), or None while it consumes.
        self.paused: str | None = None
        self._probe_at = 0.0
        self._failures = 0
        self._log = _log.bind(service=schema, consumer=consumer.name)
        subscriber = broker.subscriber(
            *consumer.topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            batch=consumer.batch,
            max_records=500 if consumer.batch else None,
            parser=_tolerant,
            decoder=_raw,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            batch_timeout_ms=fetch_max_wait_ms,
        )
        subscriber(self._on_batch if consumer.batch else self._on_message)

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await create_tables(conn, self.schema, self.consumer)
            shapes = f'"{self.schema}".projection_shapes'
            if self.consumer.rebuildable and await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", shapes
            ):
                self._shapes = shapes
            await create_dead_letter_tables(conn, self.schema)

    async def _on_message(self, msg: KafkaMessage) -> None:
        await self._handle([msg.raw_message], msg)

    async def _on_batch(self, msg: KafkaMessage) -> None:
        records = msg.raw_message
        await self._handle(list(records) if isinstance(records, tuple) else [records], msg)

    async def _handle(self, records: list[ConsumerRecord[Any, Any]], msg: KafkaMessage) -> None:
        started = time.perf_counter()
        done: set[int] = set()  # indexes of the records applied, ignored or dead-lettered
        if self.paused is not None:
            await asyncio.sleep(max(0.0, self._probe_at - time.monotonic()))
        try:
            applied, last = await self._process(records, done)
        except _Paused as paused:
            self._pause(str(paused))
        except Exception as exc:
            # Not foreseen (a bug): log it, and read the undone records again after a pause.
            self._failures += 1
            delay = self._backoff(self._failures)
            self._log.exception("consumer_batch_failed", error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
        else:
            self._failures = 0
            if applied and self.paused is not None:
                self._log.info("consumer_resumed", paused_for=self.paused)
                self.paused = None
                CONSUMER_PAUSED.labels(self.consumer.name).set(0)
            if last is not None:
                age = (self.clock.now() - last.time).total_seconds()
                CONSUMER_LAG.labels(self.consumer.name).set(max(age, 0.0))
        await self._commit(records, done, msg)
        HANDLER_LATENCY.labels(self.consumer.name).observe(time.perf_counter() - started)

    def _pause(self, reason: str) -> None:
        if self.paused is None:
            self._log.error("consumer_paused", reason=reason, probe_every_s=self.pause_retry_s)
        self.paused = reason
        self._probe_at = time.monotonic() + self.pause_retry_s
        CONSUMER_PAUSED.labels(self.consumer.name).set(1)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry_delay_s * 2 ** (attempt - 1), self.max_backoff_s))

    async def _process(
        self, records: list[ConsumerRecord[Any, Any]], done: set[int]
    ) -> tuple[int, Envelope | None]:
        """Handle ``records``, adding to ``done`` as each is finished; (applied, last envelope)."""
        decoded = [self._decode(record) for record in records]
        # A dead letter replayed to another consumer of the topic: not this one's to handle.
        done.update(i for i, d in enumerate(decoded) if d is None)
        good = [(i, d) for i, d in enumerate(decoded) if isinstance(d, _Decoded)]
        last = good[-1][1].envelope if good else None
        if good:
            try:
                applied = await self._transient_retry(lambda: self._apply([d for _, d in good]))
            except Exception as exc:
                # One bad event must not sink the batch: isolate it.
                self._log.warning("consumer_batch_isolating", error=_describe(exc))
            else:
                done.update(i for i, _ in good)
                for i, item in enumerate(decoded):
                    if isinstance(item, _Poison):
                        await self._dead_letter(item.record, item.reason, item.error)
                        done.add(i)
                return applied, last
        applied = 0
        for i, item in enumerate(decoded):
            if isinstance(item, _Poison):
                await self._dead_letter(item.record, item.reason, item.error)
            elif item is not None:
                applied += await self._apply_one(item)
            done.add(i)
        return applied, last

    def _decode(self, record: ConsumerRecord[Any, Any]) -> _Decoded | _Poison | None:
        """The record's envelope and event, why it is poison, or None: replayed for another."""
        replayed_for = next((v for k, v in record.headers or () if k == REPLAY_FOR), None)
        if replayed_for is not None and replayed_for != self.group_id.encode():
            CONSUMED.labels(self.consumer.name, "replayed_for_another").inc()
            return None
        try:
            received = (
                dt.datetime.fromtimestamp(record.timestamp / 1000, SHANGHAI)
                if record.timestamp is not None and record.timestamp >= 0
                else self.clock.now()
            )
            envelope = Envelope.from_headers(record.headers or (), received=received)
        except EnvelopeError as exc:
            return _Poison(record, "bad_envelope", str(exc))
        forged = foreign_source(envelope, record.topic, self.consumer.topics)
        if forged is not None:
            return _Poison(record, "wrong_source", forged)
        if envelope.type not in self.registry:
            return _Decoded(record, None, envelope)
        try:
            event = self.registry.decode_json(
                envelope.type, envelope.schema_version, record.value or b""
            )
        except UnknownEventType as exc:
            return _Poison(record, "unknown_version", str(exc))
        except InvalidEventPayload as exc:
            return _Poison(record, _json_or_payload(record.value), str(exc))
        except Exception as exc:  # an upcaster that fails on this payload
            return _Poison(record, "decode_error", repr(exc))
        return _Decoded(record, event, envelope)

    async def _apply(self, items: Sequence[_Decoded]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = {
                str(r["event_id"])
                for r in await conn.fetch(
                    f"INSERT INTO {self.names['__processed__']} (event_id) "
                    "SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
                    [i.envelope.id for i in items],
                )
            }
            await self._same_shape(conn)
            # Read after the marks: a concurrent transaction on the same events (a rebalance)
            # has committed its positions by the time this one got past their marks.
            streams = {item.envelope.id: positions.stream_of(item.envelope) for item in items}
            table = self.names["__positions__"]
            at = await positions.load(conn, table, [s for s in streams.values() if s])
            todo, seen, ignored = [], set(), 0
            for item in items:
                # Also drops a duplicate inside the batch (the relay re-published it).
                if item.envelope.id not in fresh or item.envelope.id in seen:
                    continue
                seen.add(item.envelope.id)
                # A mark pruned long ago: the stream's position still knows it was applied.
                stream = streams[item.envelope.id]
                if stream and not at[stream].admit(item.envelope.stream_version or 0):
                    continue
                if item.event is not None:
                    todo.append((item.event, item.envelope))
                else:
                    ignored += 1
            await positions.save(conn, table, at)
            if todo:
                tx = Tx(conn, self.names, self.store)
                if len(todo) == 1:
                    with structlog.contextvars.bound_contextvars(
                        event_id=todo[0][1].id, correlation_id=todo[0][1].correlation_id
                    ):
                        await self.consumer.apply(tx, *todo[0])
                else:
                    await self.consumer.apply_batch(tx, todo)
        CONSUMED.labels(self.consumer.name, "applied").inc(len(todo))
        CONSUMED.labels(self.consumer.name, "ignored").inc(ignored)
        CONSUMED.labels(self.consumer.name, "duplicate").inc(len(items) - len(todo) - ignored)
        return len(todo)

    async def _same_shape(self, conn: asyncpg.Connection) -> None:
        """Write nothing into tables another deploy rebuilt to another shape (a newer one,
        during its rolling upgrade): this instance's rows would lack what the new code adds.

        Read after the marks are locked: a rebuild swaps them and records the shape in one
        transaction, so this sees the shape of the tables it is about to write.
        """
        if self._shapes is None:
            return
        recorded = await conn.fetchrow(
            f"SELECT fingerprint, version FROM {self._shapes} WHERE projection = $1",
            self.consumer.name,
        )
        if recorded is None or recorded["fingerprint"] == self._shape:
            return
        if recorded["version"] > self.consumer.version:
            raise ShapeChanged(
                f"{self.consumer.name}: its tables were rebuilt by a newer version "
                f"({recorded['version']}, this code is {self.consumer.version}): this instance "
                "must be replaced by the newer image; to roll back instead, "
                f"`cunzhi rebuild {self.schema} {self.consumer.name} --force` with this one"
            )
        raise ShapeChanged(
            f"{self.consumer.name}: its tables have another shape than this code declares "
            f"(recorded by version {recorded['version']}, this code is "
            f"{self.consumer.version}): this instance must be replaced, or the projection "
            "rebuilt by this version"
        )

    async def _transient_retry(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt()``, again and again while it fails for a transient reason."""
        tries = 0
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if classify(exc) is not Failure.TRANSIENT:
                    raise
                tries += 1
                delay = self._backoff(tries)
                CONSUMER_RETRIES.labels(self.consumer.name, "transient").inc()
                self._log.warning("consumer_transient_error", error=_describe(exc), retry_in=delay)
                await asyncio.sleep(delay)

    async def _apply_one(self, item: _Decoded) -> int:
        """Apply one event alone, or dead-letter it; raises ``_Paused`` on schema drift."""
        attempt = 0
        while True:
            try:
                return int(await self._transient_retry(lambda: self._apply([item])))
            except Exception as exc:
                failure = classify(exc)
                error = _describe(exc)
                if failure is Failure.SCHEMA_DRIFT:
                    raise _Paused(
                        f"{self.consumer.name}: its tables do not match its code ({error})"
                    ) from exc
                if failure is Failure.DATA:
                    await self._dead_letter(item.record, "data_error", error)
                    return 0
                attempt += 1
                self._log.warning(
                    "consumer_handler_failed",
                    event_id=item.envelope.id,
                    attempt=attempt,
                    error=error,
                )
                if attempt >= self.max_retries:
                    await self._dead_letter(item.record, "handler_error", error)
                    return 0
                CONSUMER_RETRIES.labels(self.consumer.name, "handler").inc()
                await asyncio.sleep(self._backoff(attempt))

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str, error: str) -> None:
        headers = {
            k: v.decode(errors="replace") for k, v in (record.headers or ()) if v is not None
        }
        headers.update(
            dlq_reason=reason,
            dlq_error=error[:2000],
            dlq_consumer=self.group_id,
            dlq_topic=record.topic,
            dlq_partition=str(record.partition),
            dlq_offset=str(record.offset),
        )
        tries = 0
        while True:
            try:
                await self._publish_dead_letter(record, headers)
                break
            except Exception as exc:
                if not _retriable_publish(exc):
                    await self._keep_dead_letter(record, headers, exc)
                    return
                tries += 1
                delay = self._backoff(tries)
                CONSUMER_RETRIES.labels(self.consumer.name, "dead_letter").inc()
                self._log.warning("consumer_dead_letter_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
        DLQ.labels(self.consumer.name, reason).inc()
        self._log.error("consumer_dead_lettered", reason=reason, error=error, offset=record.offset)

    async def _publish_dead_letter(
        self, record: ConsumerRecord[Any, Any], headers: dict[str, str]
    ) -> None:
        await self.broker.publish(
            record.value or b"", dlq_for(record.topic), key=record.key, headers=headers
        )

    async def _keep_dead_letter(
        self, record: ConsumerRecord[Any, Any], headers: dict[str, str], refused: BaseException
    ) -> None:
        """The broker will never take this dead letter: keep it in the database, move on."""

        async def insert() -> None:
            await self.pool.execute(
                f'INSERT INTO "{self.schema}".dead_letters (consumer, reason, error, '
                'publish_error, topic, "partition", "offset", key, value, headers) '
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
                self.group_id,
                headers["dlq_reason"],
                headers["dlq_error"],
                repr(refused),
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                {k: v for k, v in headers.items() if not k.startswith("dlq_")},
            )

        await self._transient_retry(insert)
        DLQ_UNPUBLISHED.labels(self.consumer.name, headers["dlq_reason"]).inc()
        self._log.error(
            "consumer_dead_letter_kept_in_database",
            reason=headers["dlq_reason"],
            publish_error=repr(refused),
            table=f"{self.schema}.dead_letters",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

    async def _commit(
        self, records: list[ConsumerRecord[Any, Any]], done: set[int], msg: KafkaMessage
    ) -> None:
        """Commit each partition up to its first record not done, and read again from there."""
        offsets: dict[TopicPartition, int] = {}
        rewind: dict[TopicPartition, int] = {}
        for i, r in enumerate(records):  # a partition's records come in offset order
            tp = TopicPartition(r.topic, r.partition)
            if tp in rewind:
                continue
            if i in done:
                offsets[tp] = r.offset + 1
            else:
                offsets[tp] = rewind[tp] = r.offset
        try:
            await msg.consumer.commit(offsets)  # type: ignore[call-arg]  # aiokafka takes offsets
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partition; the new owner redelivers, the marks dedupe.
            self._log.warning("consumer_commit_failed", error=repr(exc))
        for tp, offset in rewind.items():
            try:
                msg.consumer.seek(tp, offset)
            except KafkaError as exc:  # no longer ours: its new owner starts at the commit
                self._log.warning("consumer_seek_failed", partition=str(tp), error=repr(exc))
