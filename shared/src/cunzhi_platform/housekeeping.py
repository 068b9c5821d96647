"""Keeping a service's tables from growing for ever, in one instance at a time.

- Processed-event marks (``<consumer>__processed``) exist to drop redeliveries. Kafka cannot
  redeliver what it no longer keeps, so a mark older than the topics' retention protects
  nothing: marks older than ``processed_retention_days`` are deleted. That setting must exceed
  the broker's retention; where the broker states it (``retention.ms``), a shorter setting
  leaves the marks alone and says so, loudly. (Tansu states none; its memory engine keeps
  messages until it restarts.) What is published again on purpose, at any age (a republish),
  is skipped by the streams' positions, which are never pruned (``positions``).
- Sent outbox rows are kept ``outbox_retention_hours`` for inspection, then deleted; the
  events table is the durable log.
- Remembered ``Idempotency-Key`` answers (``idempotency``) are kept
  ``idempotency_retention_hours``; a retry after that runs the command again.

All delete in bounded batches through an index (BRIN on ``processed_at`` and the keys'
``created_at``, b-tree on ``sent_at``), so neither scans a whole table nor holds locks for long.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from .kafka import KafkaAccess

if TYPE_CHECKING:
    from .runtime import Runtime

_log = structlog.get_logger(__name__)
BATCH = 10_000


async def _delete_in_batches(
    pool: asyncpg.Pool, table: str, column: str, older_than: dt.timedelta
) -> int:
    # The database's clock, as in the column defaults (a service's Clock may be a test's).
    # Oldest first: the ORDER BY also keeps the planner on the index when most rows are old.
    deleted = 0
    while True:
        status = await pool.execute(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
            f"WHERE {column} < now() - $1::interval ORDER BY {column} LIMIT {BATCH}))",
            older_than,
        )
        done = int(status.split()[-1])
        deleted += done
        if done < BATCH:
            return deleted
        await asyncio.sleep(0)


async def prune_processed(
    pool: asyncpg.Pool, schema: str, consumers: Iterable[str], older_than: dt.timedelta
) -> int:
    """Delete the marks of ``consumers`` (by name) recorded more than ``older_than`` ago."""
    deleted = 0
    for name in consumers:
        deleted += await _delete_in_batches(
            pool, f'"{schema}"."{name}__processed"', "processed_at", older_than
        )
    return deleted


async def purge_outbox(pool: asyncpg.Pool, schema: str, older_than: dt.timedelta) -> int:
    """Delete outbox rows sent more than ``older_than`` ago (unsent rows are never touched)."""
    return await _delete_in_batches(pool, f'"{schema}".outbox', "sent_at", older_than)


async def prune_idempotency_keys(pool: asyncpg.Pool, schema: str, older_than: dt.timedelta) -> int:
    """Delete the answers of ``Idempotency-Key`` commands remembered more than ``older_than``
    ago."""
    return await _delete_in_batches(pool, f'"{schema}".idempotency_keys', "created_at", older_than)


async def broker_retention(kafka: KafkaAccess, topics: Iterable[str]) -> dt.timedelta | None:
    """The longest ``retention.ms`` of ``topics`` as the broker states it; None if it does not.

    ``timedelta.max`` for a topic that keeps messages for ever.
    """
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
    finally:
        await admin.close()
    longest: dt.timedelta | None = None
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] != "retention.ms" or entry[1] is None:
                    continue
                ms = int(entry[1])
                kept = dt.timedelta.max if ms < 0 else dt.timedelta(milliseconds=ms)
                longest = kept if longest is None else max(longest, kept)
    return longest


async def housekeeping(rt: Runtime) -> None:
    """The platform's own timer: prune marks and purge the outbox, every ``interval``."""
    settings, log = rt.settings, _log.bind(service=rt.service.name)
    keep_marks = dt.timedelta(days=settings.processed_retention_days)
    keep_sent = dt.timedelta(hours=settings.outbox_retention_hours)
    keep_keys = dt.timedelta(hours=settings.idempotency_retention_hours)
    kafka = KafkaAccess.from_settings(settings)
    while True:
        prunable = []
        for runner in rt.runners:
            try:
                kept = await broker_retention(kafka, runner.consumer.topics)
            except (KafkaError, OSError) as exc:
                log.warning("broker_retention_unknown", error=repr(exc))
                continue
            if kept is not None and kept >= keep_marks:
                log.error(
                    "processed_retention_too_short",
                    consumer=runner.consumer.name,
                    setting="CUNZHI_PROCESSED_RETENTION_DAYS",
                    days=settings.processed_retention_days,
                    broker_retention=str(kept),
                    action="marks kept: a redelivery could otherwise be applied twice",
                )
                continue
            prunable.append(runner.consumer.name)
        marks = await prune_processed(rt.pool, rt.service.name, prunable, keep_marks)
        sent = await purge_outbox(rt.pool, rt.service.name, keep_sent)
        keys = await prune_idempotency_keys(rt.pool, rt.service.name, keep_keys)
        if marks or sent or keys:
            log.info(
                "housekeeping_done",
                processed_marks_deleted=marks,
                outbox_rows_deleted=sent,
                idempotency_keys_deleted=keys,
            )
        await asyncio.sleep(settings.housekeeping_interval_s)
