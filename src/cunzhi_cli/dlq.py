"""``cunzhi dlq list|replay SERVICE``: the dead letters of a service's consumers, and back.

A consumer dead-letters to ``<topic>.dlq`` (naming itself in ``dlq_consumer``) or, when the
broker refuses the dead letter for good, to its service's ``dead_letters`` table; both are
listed. Replay publishes the original record again — its topic, key, value and CloudEvents
headers, without the ``dlq_*`` ones — at the end of the topic: every consumer of the topic
sees it, and those that already processed the event skip it by its id, so replaying twice
is harmless. The dead letters stay where they are (Kafka keeps them for the topic's retention).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
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

    @property
    def event_type(self) -> str:
        return self.headers.get("ce_type", "")

    @property
    def event_id(self) -> str:
        return self.headers.get("ce_id", "")

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


async def dead_letters(settings: Settings, service: Service) -> list[DeadLetter]:
    """Every dead letter of ``service``'s consumers, the broker's first, then the database's."""
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
    finally:
        await pool.close()
    return letters


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
        left = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < ends[tp]:
                        where = f"{topic}/{r.partition}/{r.offset}"
                        yield _letter(where, r.headers, r.key, r.value)
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
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
    lines = ["ID\tCONSUMER\tREASON\tEVENT TYPE\tEVENT ID\tFROM (topic/partition/offset)\tERROR"]
    for d in letters:
        error = " ".join(d.error.split())
        lines.append(
            f"{d.id}\t{d.consumer}\t{d.reason}\t{d.event_type or '-'}\t{d.event_id or '-'}\t"
            f"{d.topic}/{d.partition}/{d.offset}\t{error[:300]}"
        )
    return "\n".join(lines)


async def replay(settings: Settings, service: Service, ids: Sequence[str] | None) -> int:
    """Publish the chosen dead letters (by id or event id; all when ``ids`` is None) again."""
    _, kafka = _require(settings)
    letters = await dead_letters(settings, service)
    if ids is not None:
        wanted = set(ids)
        unknown = wanted - {d.id for d in letters} - {d.event_id for d in letters}
        if unknown:
            raise SystemExit(
                f"cunzhi: no dead letter of {service.name} has the id {', '.join(sorted(unknown))}"
            )
        letters = [d for d in letters if d.id in wanted or d.event_id in wanted]
    # One original record dead-lettered by several consumers goes back once.
    originals = list({d.original: d for d in letters}.values())
    async with _producer(kafka) as producer:
        for d in originals:
            await producer.send_and_wait(
                d.topic,
                d.value,
                key=d.key,
                headers=[(k, v.encode()) for k, v in d.headers.items()],
            )
    return len(originals)


@contextlib.asynccontextmanager
async def _producer(kafka: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
