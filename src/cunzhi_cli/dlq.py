"""``cunzhi dlq list|replay SERVICE``: the dead letters of a service's consumers, and back.

A consumer dead-letters to ``<topic>.dlq`` (naming itself in ``dlq_consumer``) or, when the
broker refuses the dead letter for good, to its service's ``dead_letters`` table; both are
listed. Replay publishes the original record again — its topic, key, value and CloudEvents
headers, without the ``dlq_*`` ones — at the end of the topic, for the consumer that failed
only (``dlq_replay_for``: the other consumers of the topic ignore it, so a letter that fails
again comes back once, from that consumer). That consumer applies it even if it has applied
later events of the stream meanwhile (its stream positions note the version as missing), and
skips it if it was applied since, so replaying twice is harmless. A replayed letter is noted
in ``<service>.dead_letters_replayed`` with the time and leaves the list (``--replayed`` shows
those); Kafka keeps the letters themselves for the topic's retention.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.consumer import REPLAY_FOR, create_dead_letter_tables
from cunzhi_platform.envelope import dlq_for
from cunzhi_platform.infra import InfrastructureError
from cunzhi_platform.kafka import KafkaAccess
from cunzhi_platform.runtime import Service, connect_database
from cunzhi_platform.settings import Settings


@dataclass(frozen=True)
class DeadLetter:
    id: str  # "<dlq topic>/<partition>/<offset>", or "<service>.dead_letters/<row id>"
    consumer: str
    reason: str
    error: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]  # the original headers, without the dlq_* ones
    replayed_at: dt.datetime | None = None

    @property
    def event_type(self) -> str:
        return self.headers.get("ce_type", "")

    @property
    def event_id(self) -> str:
        return self.headers.get("ce_id", "")

    @property
    def replay_key(self) -> tuple[str, str, str]:
        """What a replay is noted by: a recreated DLQ topic numbers its letters from 0 again."""
        return (self.id, self.consumer, self.event_id)

    @property
    def original(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def _require(settings: Settings) -> tuple[str, KafkaAccess]:
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        raise InfrastructureError(
            "CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS must name the service's "
            "database and broker"
        )
    return settings.database_url, KafkaAccess.from_settings(settings)


async def dead_letters(
    settings: Settings, service: Service, *, replayed: bool = False
) -> list[DeadLetter]:
    """The dead letters of ``service``'s consumers waiting for a replay (or, with
    ``replayed``, those replayed, with when), the broker's first, then the database's."""
    database_url, kafka = _require(settings)
    groups = {f"cunzhi.{service.name}.{c.name}" for c in service.consumers}
    topics = sorted({dlq_for(t) for c in service.consumers for t in c.topics})
    letters = [
        letter
        for topic in topics
        async for letter in _from_topic(kafka, topic)
        if letter.consumer in groups
    ]
    pool = await connect_database(database_url)
    try:
        table = f'"{service.name}".dead_letters'
        if await pool.fetchval("SELECT to_regclass($1)", table) is not None:
            rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY id")
            letters += [
                DeadLetter(
                    id=f"{service.name}.dead_letters/{r['id']}",
                    consumer=r["consumer"],
                    reason=r["reason"],
                    error=f"{r['error']} (the broker refused it: {r['publish_error']})",
                    topic=r["topic"],
                    partition=r["partition"],
                    offset=r["offset"],
                    key=r["key"],
                    value=r["value"],
                    headers=r["headers"],
                )
                for r in rows
            ]
        when = await _replayed(pool, service.name)
    finally:
        await pool.close()
    return [
        dataclasses.replace(d, replayed_at=when.get(d.replay_key))
        for d in letters
        if (d.replay_key in when) == replayed
    ]


async def _replayed(pool: asyncpg.Pool, schema: str) -> dict[tuple[str, str, str], dt.datetime]:
    table = f'"{schema}".dead_letters_replayed'
    if await pool.fetchval("SELECT to_regclass($1)", table) is None:
        return {}
    return {
        (r["letter"], r["consumer"], r["event_id"]): r["replayed_at"]
        for r in await pool.fetch(f"SELECT * FROM {table}")
    }


async def _from_topic(kafka: KafkaAccess, topic: str) -> AsyncIterator[DeadLetter]:
    """The records of ``topic`` from the first to the last one there now."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        # Up to the ends the broker states, then on until a poll finds nothing: Tansu states a
        # partition's end one short after concurrent writes, which hid the newest letter (and
        # kept it from `replay --all`) until another came behind it.
        while True:
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    yield _letter(f"{topic}/{r.partition}/{r.offset}", r.headers, r.key, r.value)
            if not batch and all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                return
    finally:
        await consumer.stop()


def _letter(
    id: str, raw: Sequence[tuple[str, bytes | None]], key: bytes | None, value: bytes | None
) -> DeadLetter:
    h = {k: (v or b"").decode(errors="replace") for k, v in raw}
    return DeadLetter(
        id=id,
        consumer=h.get("dlq_consumer", ""),
        reason=h.get("dlq_reason", ""),
        error=h.get("dlq_error", ""),
        topic=h.get("dlq_topic", ""),
        partition=int(h.get("dlq_partition", "-1")),
        offset=int(h.get("dlq_offset", "-1")),
        key=key,
        value=value,
        headers={k: v for k, v in h.items() if not k.startswith("dlq_")},
    )


def render(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    replayed = any(d.replayed_at for d in letters)
    lines = [
        "ID\tCONSUMER\tREASON\tEVENT TYPE\tEVENT ID\tFROM (topic/partition/offset)\tERROR"
        + ("\tREPLAYED AT" if replayed else "")
    ]
    for d in letters:
        error = " ".join(d.error.split())
        lines.append(
            f"{d.id}\t{d.consumer}\t{d.reason}\t{d.event_type or '-'}\t{d.event_id or '-'}\t"
            f"{d.topic}/{d.partition}/{d.offset}\t{error[:300]}"
            + (f"\t{d.replayed_at.astimezone(SHANGHAI).isoformat()}" if d.replayed_at else "")
        )
    return "\n".join(lines)


async def replay(settings: Settings, service: Service, ids: Sequence[str] | None) -> int:
    """Publish the chosen waiting dead letters (by id or event id; all when ``ids`` is None)
    again, each to the consumer that failed, and note them replayed; returns how many."""
    database_url, kafka = _require(settings)
    letters = await dead_letters(settings, service)
    if ids is not None:
        wanted = set(ids)
        unknown = wanted - {d.id for d in letters} - {d.event_id for d in letters}
        if unknown:
            raise SystemExit(
                f"cunzhi: no dead letter of {service.name} waits with the id "
                f"{', '.join(sorted(unknown))} (replayed ones: cunzhi dlq list "
                f"{service.name} --replayed)"
            )
        letters = [d for d in letters if d.id in wanted or d.event_id in wanted]
    # A record one consumer dead-lettered twice (read again after a crash) goes back once.
    originals = list({(d.original, d.consumer): d for d in letters}.values())
    async with _producer(kafka) as producer:
        for d in originals:
            await producer.send_and_wait(
                d.topic,
                d.value,
                key=d.key,
                headers=[
                    *((k, v.encode()) for k, v in d.headers.items()),
                    (REPLAY_FOR, d.consumer.encode()),
                ],
            )
    pool = await connect_database(database_url)
    try:
        async with pool.acquire() as conn:
            await create_dead_letter_tables(conn, service.name)
            await conn.execute(
                f'INSERT INTO "{service.name}".dead_letters_replayed (letter, consumer, event_id) '
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
                [d.id for d in letters],
                [d.consumer for d in letters],
                [d.event_id for d in letters],
            )
    finally:
        await pool.close()
    return len(originals)


@contextlib.asynccontextmanager
async def _producer(kafka: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
