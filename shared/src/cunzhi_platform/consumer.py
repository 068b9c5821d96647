"""Consumers: FastStream subscribers that apply events exactly once to PostgreSQL.

Commit semantics, chosen on purpose: the subscriber uses ``AckPolicy.MANUAL``. For each
message (or batch) the handler's writes and the "processed" marks of the event ids commit in
one PostgreSQL transaction; only then are the Kafka offsets of exactly those records
committed. A crash in between redelivers the message, and the marks make the redelivery a
no-op. Messages are handled one at a time per subscriber (no ``max_workers``), which is what
keeps one aggregate's events in order.

An event type the consumer does not know is ignored and marked processed: producers add
types, and services are upgraded one at a time. What cannot be processed goes to
``<topic>.dlq`` with the reason in headers (``dlq_reason``, ``dlq_error``, the original
topic/partition/offset) and the consumer moves on: malformed envelopes, bad JSON, a known
type's unknown (newer) version, invalid payloads, and handler errors that
persist after retries. Database or network outages are not the message's fault: they are
retried until the infrastructure is back, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from .aggregate import DomainError
from .clock import Clock
from .envelope import CommandContext, Envelope, EnvelopeError, dlq_for
from .events import Event, EventRegistry, InvalidEventPayload, UnknownEventType
from .eventstore import EventStore
from .metrics import CONSUMED, CONSUMER_LAG, DLQ, HANDLER_LATENCY

_log = structlog.get_logger(__name__)

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    # The broker unreachable while dead-lettering: wait, never drop the message.
    KafkaError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    # A rebuild swapping tables or a serialisation failure: try again, nothing is wrong.
    asyncpg.InvalidCachedStatementError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


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
    """A policy's events continue the conversation of the event that caused them."""
    return CommandContext(
        actor=envelope.actor, correlation_id=envelope.correlation_id, causation_id=envelope.id
    )


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
    names them after the table and carries them through a rebuild.
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

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        raise NotImplementedError

    async def apply_batch(self, tx: Tx, items: Sequence[tuple[Event, Envelope]]) -> None:
        for event, envelope in items:
            await self.apply(tx, event, envelope)


def table_names(schema: str, consumer: Consumer, suffix: str = "") -> dict[str, str]:
    names = {logical: f'"{schema}"."{logical}{suffix}"' for logical in consumer.tables}
    names["__processed__"] = f'"{schema}"."{consumer.name}__processed{suffix}"'
    return names


def index_specs(consumer: Consumer) -> list[tuple[str, str, str]]:
    """(logical table, index name suffix, spec) of every secondary index of ``consumer``."""
    return [
        (logical, f"ix{i}", spec)
        for logical, specs in consumer.indexes.items()
        for i, spec in enumerate(specs)
    ]


async def create_tables(
    conn: asyncpg.Connection, schema: str, consumer: Consumer, suffix: str = ""
) -> None:
    names = table_names(schema, consumer, suffix)
    for logical, ddl in consumer.tables.items():
        await conn.execute(ddl.format(table=names[logical]))
    for logical, index, spec in index_specs(consumer):
        columns = spec if spec.upper().startswith("USING ") else f"({spec})"
        await conn.execute(
            f'CREATE INDEX IF NOT EXISTS "{logical}{suffix}_{index}" ON {names[logical]} {columns}'
        )
    # processed_at: marks are pruned by age (housekeeping.py), BRIN being nearly free to keep.
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {names['__processed__']} (event_id uuid PRIMARY KEY, "
        "processed_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute(
        f'CREATE INDEX IF NOT EXISTS "{consumer.name}__processed{suffix}_at" '
        f"ON {names['__processed__']} USING brin (processed_at)"
    )


@dataclass
class _Decoded:
    record: ConsumerRecord[Any, Any]
    event: Event | None  # None: a type this consumer does not handle, only marked processed
    envelope: Envelope


class _Poison(Exception):
    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def _json_or_payload(value: bytes | None) -> str:
    """Which of the two reasons a payload that failed to validate was refused for."""
    try:
        return "invalid_payload" if isinstance(json.loads(value or b""), dict) else "bad_json"
    except ValueError:
        return "bad_json"


async def _raw(msg: StreamMessage[Any]) -> Any:
    """Keep the body undecoded: bad JSON must reach our handler to be dead-lettered."""
    return msg.body


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
        self.group_id = group_id or f"cunzhi.{schema}.{consumer.name}"
        self.names = table_names(schema, consumer)
        self._log = _log.bind(service=schema, consumer=consumer.name)
        subscriber = broker.subscriber(
            *consumer.topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            batch=consumer.batch,
            max_records=500 if consumer.batch else None,
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

    async def _on_message(self, msg: KafkaMessage) -> None:
        await self._process([msg.raw_message], msg)

    async def _on_batch(self, msg: KafkaMessage) -> None:
        records = msg.raw_message
        await self._process(list(records) if isinstance(records, tuple) else [records], msg)

    async def _process(self, records: list[ConsumerRecord[Any, Any]], msg: KafkaMessage) -> None:
        started = time.perf_counter()
        good: list[_Decoded] = []
        for record in records:
            try:
                good.append(self._decode(record))
            except _Poison as poison:
                await self._dead_letter(record, poison.reason, poison.error)
        if good:
            try:
                await self._with_infra_retry(lambda: self._apply(good))
            except Exception:
                # One bad event must not sink the batch: isolate it.
                for item in good:
                    await self._apply_one_with_retries(item)
        await self._commit(records, msg)
        HANDLER_LATENCY.labels(self.consumer.name).observe(time.perf_counter() - started)
        if good:
            age = (self.clock.now() - good[-1].envelope.time).total_seconds()
            CONSUMER_LAG.labels(self.consumer.name).set(max(age, 0.0))

    def _decode(self, record: ConsumerRecord[Any, Any]) -> _Decoded:
        try:
            envelope = Envelope.from_headers(record.headers or ())
        except EnvelopeError as exc:
            raise _Poison("bad_envelope", str(exc)) from exc
        if envelope.type not in self.registry:
            return _Decoded(record, None, envelope)
        try:
            event = self.registry.decode_json(
                envelope.type, envelope.schema_version, record.value or b""
            )
        except UnknownEventType as exc:
            raise _Poison("unknown_version", str(exc)) from exc
        except InvalidEventPayload as exc:
            raise _Poison(_json_or_payload(record.value), str(exc)) from exc
        return _Decoded(record, event, envelope)

    async def _apply(self, items: Sequence[_Decoded]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = {
                str(r["event_id"])
                for r in await conn.fetch(
                    f"INSERT INTO {self.names['__processed__']} (event_id) "
                    "SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
                    [i.envelope.id for i in items],
                )
            }
            todo, seen, ignored = [], set(), 0
            for item in items:
                # Also drops a duplicate inside the batch (the relay re-published it).
                if item.envelope.id in fresh and item.envelope.id not in seen:
                    seen.add(item.envelope.id)
                    if item.event is not None:
                        todo.append((item.event, item.envelope))
                    else:
                        ignored += 1
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

    async def _with_infra_retry(self, attempt: Any) -> None:
        delay = self.retry_delay_s
        while True:
            try:
                await attempt()
                return
            except INFRASTRUCTURE_ERRORS as exc:
                self._log.warning("consumer_infrastructure_error", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _apply_one_with_retries(self, item: _Decoded) -> None:
        error: Exception | None = None
        for attempt in range(self.max_retries):
            try:
                await self._with_infra_retry(lambda: self._apply([item]))
                return
            except Exception as exc:
                error = exc
                self._log.warning(
                    "consumer_handler_failed",
                    event_id=item.envelope.id,
                    attempt=attempt + 1,
                    error=repr(exc),
                )
                await asyncio.sleep(self.retry_delay_s * 2**attempt)
        await self._dead_letter(item.record, "handler_error", repr(error))

    async def _dead_letter(self, record: ConsumerRecord[Any, Any], reason: str, error: str) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            dlq_reason=reason,
            dlq_error=error[:2000],
            dlq_consumer=self.group_id,
            dlq_topic=record.topic,
            dlq_partition=str(record.partition),
            dlq_offset=str(record.offset),
        )
        await self._with_infra_retry(
            lambda: self.broker.publish(
                record.value or b"", dlq_for(record.topic), key=record.key, headers=headers
            )
        )
        DLQ.labels(self.consumer.name, reason).inc()
        self._log.error("consumer_dead_lettered", reason=reason, error=error, offset=record.offset)

    async def _commit(self, records: list[ConsumerRecord[Any, Any]], msg: KafkaMessage) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await msg.consumer.commit(offsets)  # type: ignore[call-arg]  # aiokafka takes offsets
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partition; the new owner redelivers, the marks dedupe.
            self._log.warning("consumer_commit_failed", error=repr(exc))
