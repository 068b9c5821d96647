"""Kafka plumbing: the FastStream broker and explicit topic creation.

Topics (and their dead-letter twins) are created at start-up: Tansu, the embedded broker, does
not create topics on demand, and a county's Kafka cluster usually forbids it too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from .envelope import dlq_for

_log = structlog.get_logger(__name__)


def make_broker(bootstrap_servers: str, *, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        acks="all",
        # A little lingering lets the relay's batch share produce requests.
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=10_000,
        # What FastStream catches itself is logged through structlog, not dropped; its
        # per-message "Received"/"Processed" lines are DEBUG.
        logger=structlog.get_logger("faststream"),
        log_level=logging.DEBUG,
        # FastStream otherwise adds a random `correlation_id` header to every send; the
        # conversation's id travels in `ce_correlationid`, and one id is all a reader needs.
        id_generator=_no_correlation_id,
    )


def _no_correlation_id() -> str:
    return ""


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], *, partitions: int, with_dlq: bool = True
) -> None:
    names = sorted(
        {t for topic in topics for t in ((topic, dlq_for(topic)) if with_dlq else (topic,))}
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Error 36 (already exists) from a racing instance is fine: it is not raised.
            await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
            )
            _log.info("kafka_topics_created", topics=missing, partitions=partitions)
    finally:
        await admin.close()
