"""Policies: what meetings does when other services publish, and the automatic notice.

A policy appends in the consumer's transaction (``conn=tx.conn``), so its events and the
processed mark commit together and a redelivered message appends nothing twice. A refusal by
the domain here is not the message's fault (the forum was cancelled meanwhile, the topic was
already set, the id names no forum of ours): it is logged and the message skipped, because a
dead letter would only page someone for a decision the domain already made.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import structlog
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.consumer import Consumer, Tx, caused_by, skipping_refusals
from cunzhi_platform.envelope import CommandContext, Envelope, topic_for
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import ConcurrencyError
from cunzhi_platform.runtime import Runtime

from .. import application
from ..domain import next_forum_date
from ..events import ForumClosed
from ..inbound import TaskCompleted, TopicSelected
from .queries import ReadModels

_log = structlog.get_logger(__name__)
SCHEDULER = "meetings-scheduler"
"""The actor of what the service does by itself (the automatic notice)."""


class TopicSelectedPolicy(Consumer):
    """topics ``TopicSelected`` → the forum's topic is set (and the notice may go out)."""

    name = "topic_selected"
    topics: ClassVar = [topic_for("topics")]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if not isinstance(event, TopicSelected):
            return  # the topics topic carries the whole life of a topic; we need one moment
        await skipping_refusals(
            lambda: application.set_topic(
                tx.store,
                event.forum_id,
                topic_id=event.topic_id,
                title=event.title,
                category=event.category,
                ctx=caused_by(envelope),
                conn=tx.conn,
            ),
            envelope,
        )


class TaskCompletedPolicy(Consumer):
    """rectification ``TaskCompleted`` → the forum records it, and closes on the last one."""

    name = "task_completed"
    topics: ClassVar = [topic_for("rectification")]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if not isinstance(event, TaskCompleted) or event.forum_id is None:
            return  # a campaign task, not one a forum assigned
        forum_id, task = event.forum_id, event
        await skipping_refusals(
            lambda: application.complete_task(
                tx.store,
                forum_id,
                task_id=task.task_id,
                completed_on=task.completed_on,
                ctx=caused_by(envelope),
                conn=tx.conn,
            ),
            envelope,
        )


class MonthlyCadence(Consumer):
    """A forum closed and the township has none to come: plan its next one at month end.

    Forums are monthly ("每月一次"); without this a township whose year was not planned ahead
    would stop meeting once its last forum closed. A township that planned its year (or by
    hand meanwhile) gets nothing extra. The plan is appended in the consumer's transaction,
    with ``cadence_planned``, which remembers the months this policy planned for: closings
    handled in a row (a batch, a redelivery) plan one forum, even before the calendar shows it.
    """

    name = "monthly_cadence"
    topics: ClassVar = [topic_for("meetings")]
    tables: ClassVar = {
        "cadence_planned": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            forum_date date NOT NULL,
            PRIMARY KEY (township_id, forum_date))""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if not isinstance(event, ForumClosed):
            return
        reads = ReadModels(tx.store.pool, tx.store.schema)
        today = tx.store.clock.now().date()
        if await reads.has_forum_to_come(event.township_id, today):
            return
        first_time = await tx.conn.fetchval(
            f"INSERT INTO {tx.t('cadence_planned')} VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            event.township_id,
            next_forum_date(today),
        )
        if not first_time:
            return
        ctx = CommandContext(
            actor=SCHEDULER, correlation_id=envelope.correlation_id, causation_id=envelope.id
        )
        highest = await reads.highest_forum_number(event.township_id)
        await skipping_refusals(
            lambda: application.plan_after_closing(
                tx.store,
                event.forum_id,
                highest_known_number=highest,
                today=today,
                ctx=ctx,
                conn=tx.conn,
            ),
            envelope,
        )


POLICIES: tuple[Consumer, ...] = (TopicSelectedPolicy(), TaskCompletedPolicy(), MonthlyCadence())


async def notice_timer(rt: Runtime) -> None:
    """Issue every notice that is due, each ``scheduler_interval_s``.

    Candidates come from the calendar read model; the loaded aggregate decides, so a stale row
    (a notice issued a moment ago, a postponement not yet projected) does nothing. Another
    instance racing for the same forum loses on the stream version and logs it.
    """
    reads = ReadModels(rt.pool, rt.store.schema)
    ctx = CommandContext(actor=SCHEDULER)
    while True:
        now = rt.clock.now()
        for forum_id in await reads.notice_candidates(now):
            try:
                await application.issue_due_notice(rt.store, forum_id, now=now, ctx=ctx)
            except (DomainError, ConcurrencyError) as exc:
                _log.info("automatic_notice_skipped", forum_id=forum_id, reason=str(exc))
        await asyncio.sleep(rt.settings.scheduler_interval_s)
