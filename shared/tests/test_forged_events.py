"""Consumers accept an event only from its producer's topic.

Each service's Kafka principal may write its own topic only (deploy/k8s/kafka-users.yaml); an
event there that names another producer — another service's source, or a type of another
service the consumer reads — is forged or misrouted, and goes to the dead letters.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaProducer
from counting import registry as counting
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.consumer import Consumer, Tx
from cunzhi_platform.envelope import Envelope, dlq_for, foreign_source, topic_for, topic_owner
from cunzhi_platform.events import Event, EventRegistry, Reader
from cunzhi_platform.runtime import Service
from cunzhi_platform.testing import consume, eventually, running

pytestmark = pytest.mark.slow


def _envelope(type_: str, source: str, key: str) -> Envelope:
    return Envelope.new(type=type_, source=source, subject=key, time=dt.datetime.now(SHANGHAI))


def test_the_owner_of_a_topic_and_what_names_another_one() -> None:
    assert topic_owner("cunzhi.meetings.events") == "meetings"
    assert topic_owner("cunzhi.meetings.events.dlq") is None
    assert topic_owner("bench.raw") is None
    topics = ["cunzhi.topics.events", "cunzhi.meetings.events"]
    own = _envelope("cunzhi.meetings.ForumHeld", "/cunzhi/meetings", "f")
    assert foreign_source(own, "cunzhi.meetings.events", topics) is None
    forged = _envelope("cunzhi.meetings.ForumHeld", "/cunzhi/topics", "f")
    assert "source /cunzhi/topics" in (
        foreign_source(forged, "cunzhi.meetings.events", topics) or ""
    )
    disguised = _envelope("cunzhi.meetings.ForumHeld", "/cunzhi/topics", "f")
    assert "meetings's" in (foreign_source(disguised, "cunzhi.topics.events", topics) or "")
    # A type of a service this consumer does not read is none of its business (ignored).
    assert foreign_source(
        _envelope("cunzhi.rectification.TaskCompleted", "/cunzhi/topics", "t"),
        "cunzhi.topics.events",
        topics,
    ) is None  # fmt: skip


async def test_an_event_naming_another_producer_than_its_topic_is_dead_lettered(
    pool, schema, settings
):
    other = f"{schema}o"
    readers = EventRegistry()

    @readers.register(f"cunzhi.{other}.Granted")
    class Granted(Reader):
        counter: str
        amount: int

    class Grants(Consumer):
        """Reads its own service's topic and ``other``'s, where Granted is published."""

        name = "grants"
        topics: ClassVar = [topic_for(schema), topic_for(other)]
        tables: ClassVar = {
            "grants": "CREATE TABLE IF NOT EXISTS {table} (counter text PRIMARY KEY, amount int)"
        }

        async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
            assert isinstance(event, Granted)
            await tx.conn.execute(
                f"INSERT INTO {tx.t('grants')} VALUES ($1, $2)", event.counter, event.amount
            )

    service = Service(name=schema, registry=counting, consumes=[readers], consumers=[Grants()])
    granted = f"cunzhi.{other}.Granted"
    records = [
        # A service writing another's type into its own topic: the type gives it away.
        (topic_for(schema), _envelope(granted, f"/cunzhi/{schema}", "forged-type")),
        # ... and with the other's source as well.
        (topic_for(schema), _envelope(granted, f"/cunzhi/{other}", "forged-both")),
        # A type nobody here handles, under another's source: still not the owner's.
        (topic_for(schema), _envelope("cunzhi.test.Unknown", f"/cunzhi/{other}", "forged-src")),
        # The genuine one, on its producer's topic, after the rest.
        (topic_for(other), _envelope(granted, f"/cunzhi/{other}", "genuine")),
    ]
    async with running(service, settings):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for topic, env in records:
                body = json.dumps({"counter": env.subject, "amount": 1}).encode()
                await producer.send_and_wait(
                    topic, body, key=env.subject.encode(), headers=env.to_headers()
                )
        finally:
            await producer.stop()

        async def genuine_applied() -> bool:
            rows = await pool.fetch(f'SELECT counter FROM "{schema}".grants')
            return [r["counter"] for r in rows] == ["genuine"]

        assert await eventually(genuine_applied, timeout=60)
        dead = await consume(settings.kafka_bootstrap_servers, dlq_for(topic_for(schema)), 3)
    assert sorted(dict(r.headers)["ce_subject"].decode() for r in dead) == [
        "forged-both",
        "forged-src",
        "forged-type",
    ]
    assert {dict(r.headers)["dlq_reason"] for r in dead} == {b"wrong_source"}
    assert [r["counter"] for r in await pool.fetch(f'SELECT counter FROM "{schema}".grants')] == [
        "genuine"
    ]
