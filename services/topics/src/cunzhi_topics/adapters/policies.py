"""Policies: what the topics service does when events arrive, its own or other services'.

Each appends with ``conn=tx.conn``, so its events and the consumer's "processed" mark commit
together: a redelivered message appends nothing twice. A domain refusal is logged and the
message skipped, never dead-lettered: it means the work is already done (a call already
scheduled, a topic already carried over or resolved) or cannot be done by a retry either (a
forum moved to another date, which is not supported); a person reads the log.

- ``ForumCalendar`` (meetings ``ForumPlanned``) schedules the township's call for topics,
  opening it at once when D−10 has passed; otherwise the ``call_timers`` job opens and closes it
  on time. ``ForumPostponed`` moves the call's opening and deadline with the forum;
  ``ForumCancelled`` cancels the call and returns its topics (the selected one too) to the
  township's next call, where ``CarryOver`` brings them.
- ``CarryOver`` (own events) brings deferred (or returned) topics into the township's next call
  once it is open. It reacts both to ``CallForTopicsOpened`` and to ``TopicDeferred``, so it works
  whichever of the two arrives first (they are on different partitions), and whether the call
  was opened by the ``ForumPlanned`` policy or by the timer.
- ``ForumOutcomes`` (meetings ``ResolutionAdopted``, rectification ``TaskCompleted``) keeps the
  ledger of each forum's tasks in its own tables and resolves the forum's topic when every task
  is done; a completion may arrive before the resolution that names the task. A forum whose
  resolutions assign no task at all is resolved on meetings' ``ForumClosed``, which meetings
  publishes exactly then: without tasks, no ``TaskCompleted`` would ever come.
"""

from __future__ import annotations

from typing import ClassVar

import structlog
from cunzhi_platform.consumer import Consumer, Tx, caused_by, skipping_refusals
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from .. import application
from ..domain import ForumTaskLedger, TopicState
from ..events import (
    SERVICE,
    CallForTopicsCancelled,
    CallForTopicsDecided,
    CallForTopicsOpened,
    CallForTopicsRescheduled,
    TopicDeferred,
    TopicReferralAnswered,
    TopicReturned,
)
from ..inbound import (
    ForumCancelled,
    ForumClosed,
    ForumPlanned,
    ForumPostponed,
    ResolutionAdopted,
    TaskCompleted,
)

_log = structlog.get_logger(__name__)


class ForumCalendar(Consumer):
    """A forum planned, postponed or cancelled: its call for topics follows.

    One consumer for the three, so one forum's events are handled in the order meetings
    published them (a postponement is never seen before the plan). Its name, and so its
    consumer group, stays what it was when it handled ``ForumPlanned`` alone.
    """

    name = "forum_planned"
    topics: ClassVar = [topic_for("meetings")]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        ctx = caused_by(envelope)
        match event:
            case ForumPlanned():
                decision = application.schedule_call(
                    tx.store, ctx, event.township_id, event.forum_id, event.date, conn=tx.conn
                )
            case ForumPostponed():
                decision = application.postpone_call(
                    tx.store,
                    ctx,
                    event.township_id,
                    event.forum_id,
                    event.date,
                    event.reason,
                    conn=tx.conn,
                )
            case ForumCancelled():
                decision = application.cancel_call(
                    tx.store, ctx, event.township_id, event.forum_id, event.reason, conn=tx.conn
                )
            case _:
                return
        await skipping_refusals(lambda: decision, envelope)


class CarryOver(Consumer):
    """Deferred topics go into the township's next call (see the module docstring)."""

    name = "carry_over"
    topics: ClassVar = [topic_for(SERVICE)]
    tables: ClassVar = {
        "carry_calls": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            forum_id text NOT NULL,
            forum_date date NOT NULL,
            decided boolean NOT NULL DEFAULT false,
            PRIMARY KEY (township_id, forum_id))""",
        "carry_deferred": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            topic_id text NOT NULL,
            forum_id text NOT NULL,
            PRIMARY KEY (township_id, topic_id))""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        match event:
            case CallForTopicsOpened():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('carry_calls')} (township_id, forum_id, forum_date) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    event.township_id,
                    event.forum_id,
                    event.forum_date,
                )
                # Topics deferred by an earlier forum of the township (or by one whose call
                # this policy has not seen open: its date is unknown here, and it is not this
                # call's forum).
                rows = await tx.conn.fetch(
                    f"SELECT d.topic_id FROM {tx.t('carry_deferred')} d "
                    f"LEFT JOIN {tx.t('carry_calls')} c USING (township_id, forum_id) "
                    "WHERE d.township_id = $1 AND d.forum_id <> $2 "
                    "AND (c.forum_date IS NULL OR c.forum_date < $3) ORDER BY d.topic_id",
                    event.township_id,
                    event.forum_id,
                    event.forum_date,
                )
                for row in rows:
                    await self._carry(
                        tx, envelope, event.township_id, row["topic_id"], event.forum_id
                    )
            case TopicDeferred() | TopicReturned() | TopicReferralAnswered(answer="returned"):
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('carry_deferred')} (township_id, topic_id, forum_id) "
                    "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    event.township_id,
                    event.topic_id,
                    event.forum_id,
                )
                # The earliest later call of the township that is open and undecided, if any.
                forum_id = await tx.conn.fetchval(
                    f"SELECT forum_id FROM {tx.t('carry_calls')} WHERE township_id = $1 "
                    "AND forum_id <> $2 AND NOT decided AND forum_date > coalesce("
                    f"(SELECT forum_date FROM {tx.t('carry_calls')} "
                    "WHERE township_id = $1 AND forum_id = $2), '-infinity'::date) "
                    "ORDER BY forum_date LIMIT 1",
                    event.township_id,
                    event.forum_id,
                )
                if forum_id is not None:
                    await self._carry(tx, envelope, event.township_id, event.topic_id, forum_id)
            case CallForTopicsRescheduled():
                await tx.conn.execute(
                    f"UPDATE {tx.t('carry_calls')} SET forum_date = $3 "
                    "WHERE township_id = $1 AND forum_id = $2",
                    event.township_id,
                    event.forum_id,
                    event.forum_date,
                )
            case CallForTopicsDecided() | CallForTopicsCancelled():
                # Either way the call takes no more topics ("decided" means just that here).
                # Upserted: the decision may be seen before the opening (other partition).
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('carry_calls')} AS c (township_id, forum_id, forum_date, "
                    "decided) VALUES ($1, $2, $3, true) ON CONFLICT (township_id, forum_id) "
                    "DO UPDATE SET decided = true",
                    event.township_id,
                    event.forum_id,
                    event.forum_date,
                )

    async def _carry(
        self, tx: Tx, envelope: Envelope, township_id: str, topic_id: str, forum_id: str
    ) -> None:
        await skipping_refusals(
            lambda: application.carry_over(
                tx.store, caused_by(envelope), topic_id, township_id, forum_id, conn=tx.conn
            ),
            envelope,
        )
        # Carried now or earlier, the topic needs no more watching; a topic still deferred
        # (the call stopped taking topics meanwhile) waits for the next call.
        topic = await application.load_topic(tx.store, topic_id, conn=tx.conn)
        if topic.state is not TopicState.DEFERRED:
            await tx.conn.execute(
                f"DELETE FROM {tx.t('carry_deferred')} WHERE township_id = $1 AND topic_id = $2",
                township_id,
                topic_id,
            )


class ForumOutcomes(Consumer):
    """Resolves a forum's topic once every task of its resolutions is done."""

    name = "forum_outcomes"
    topics: ClassVar = [topic_for("meetings"), topic_for("rectification")]
    tables: ClassVar = {
        "forums": """CREATE TABLE IF NOT EXISTS {table} (
            forum_id text PRIMARY KEY,
            township_id text NOT NULL,
            topic_id text,
            resolutions_known boolean NOT NULL DEFAULT false)""",
        "forum_tasks": """CREATE TABLE IF NOT EXISTS {table} (
            forum_id text NOT NULL,
            task_id text NOT NULL,
            assigned boolean NOT NULL DEFAULT false,
            completed boolean NOT NULL DEFAULT false,
            PRIMARY KEY (forum_id, task_id))""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        match event:
            case ResolutionAdopted(forum_id=forum_id):
                await self._forum(tx, forum_id, event.township_id, event.topic_id)
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('forum_tasks')} (forum_id, task_id, assigned) "
                    "SELECT $1, unnest($2::text[]), true "
                    "ON CONFLICT (forum_id, task_id) DO UPDATE SET assigned = true",
                    forum_id,
                    [task.task_id for task in event.tasks],
                )
            case TaskCompleted(forum_id=str(forum_id)):
                await self._forum(tx, forum_id, event.township_id, None)
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('forum_tasks')} (forum_id, task_id, completed) "
                    "VALUES ($1, $2, true) "
                    "ON CONFLICT (forum_id, task_id) DO UPDATE SET completed = true",
                    forum_id,
                    event.task_id,
                )
            case ForumClosed():
                # With tasks, the last TaskCompleted resolves the topic (whichever of the two
                # arrives later); ForumClosed itself only matters for a forum without any.
                if not await tx.conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {tx.t('forum_tasks')} "
                    "WHERE forum_id = $1 AND assigned)",
                    event.forum_id,
                ):
                    await self._resolve(tx, envelope, event.topic_id, event.forum_id)
                return
            case _:
                return  # other meetings events, and tasks of campaigns rather than forums
        await self._resolve_if_done(tx, envelope, forum_id)

    async def _forum(self, tx: Tx, forum_id: str, township_id: str, topic_id: str | None) -> None:
        """Upsert the forum's row, which also locks it until commit.

        The lock serialises ``ResolutionAdopted`` and ``TaskCompleted`` of one forum (they come
        from two topics and may be handled at once by two instances): without it each could
        miss the other's write and neither would see the forum done.
        """
        await tx.conn.execute(
            f"INSERT INTO {tx.t('forums')} AS f (forum_id, township_id, topic_id, "
            "resolutions_known) VALUES ($1, $2, $3::text, $3::text IS NOT NULL) "
            "ON CONFLICT (forum_id) DO UPDATE SET topic_id = coalesce(excluded.topic_id, "
            "f.topic_id), resolutions_known = f.resolutions_known OR excluded.resolutions_known",
            forum_id,
            township_id,
            topic_id,
        )

    async def _resolve_if_done(self, tx: Tx, envelope: Envelope, forum_id: str) -> None:
        forum = await tx.conn.fetchrow(
            f"SELECT topic_id, resolutions_known FROM {tx.t('forums')} WHERE forum_id = $1",
            forum_id,
        )
        if forum is None or not forum["resolutions_known"]:
            return  # completions before any resolution: wait for it
        tasks = await tx.conn.fetch(
            f"SELECT task_id, assigned, completed FROM {tx.t('forum_tasks')} WHERE forum_id = $1",
            forum_id,
        )
        ledger = ForumTaskLedger()
        ledger.expect(forum_id, [t["task_id"] for t in tasks if t["assigned"]])
        for task in tasks:
            if task["completed"]:
                ledger.complete(forum_id, task["task_id"])
        # Without any task, "done" would only mean "no tasks yet": ForumClosed covers that case.
        if any(t["assigned"] for t in tasks) and ledger.is_done(forum_id):
            await self._resolve(tx, envelope, forum["topic_id"], forum_id)

    async def _resolve(self, tx: Tx, envelope: Envelope, topic_id: str, forum_id: str) -> None:
        await skipping_refusals(
            lambda: application.resolve_topic(
                tx.store, caused_by(envelope), topic_id, forum_id, conn=tx.conn
            ),
            envelope,
        )
