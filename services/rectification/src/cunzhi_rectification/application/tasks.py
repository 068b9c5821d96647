"""Command handlers of tracked work items: load the task, let the domain decide, append.

For a campaign: ``assign_tasks`` assigns many tasks at once (a round has hundreds of targets),
all or nothing, and assigning the same tasks again appends nothing. A policy reacting to another
service's event passes ``conn`` so its tasks commit with the consumer's processed mark. A target
is a ``TaskDraft(source="campaign_target", campaign_id=…, village_id=…, area=…, kind=…,
weight=…)`` whose ``task_id`` is unique across forums and campaigns (e.g.
``<campaign>-<village>-<n>``; letters, digits, ``_ . -``). From then on the task's events
(``TaskProgressReported``, ``TaskCompleted``, ``TaskOverdue``, ``TaskEscalated``) carry its id, and
the ``tasks`` read model its status, percent and weight by campaign and village. Reports on a
target by the village's work team go through ``report_progress``/``complete_task`` with an
``Actor`` whose ``team_of`` names the team's villages with its campaign, and ``campaign_id``,
so that another round's target of the same village is neither reached nor reported on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import asyncpg
from cunzhi_platform.aggregate import DomainError, NotFound
from cunzhi_platform.application import execute, load
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import EventStore, StreamWrite

from ..domain.tasks import (
    Actor,
    EscalationPolicy,
    Task,
    TaskDraft,
    task_stream_id,
)
from ..events.tasks import Evidence

Decide = Callable[[Task], Sequence[Event]]
MAX_BATCH = 5000
"""Tasks assigned in one call: a campaign round has hundreds (364 in Bincheng)."""


async def assign_tasks(
    store: EventStore,
    drafts: Sequence[TaskDraft],
    ctx: CommandContext,
    *,
    conn: asyncpg.Connection | None = None,
) -> list[str]:
    """Assign every task of ``drafts`` atomically; returns the ids of those newly assigned.

    A task already assigned exactly so is skipped (a retry or a redelivery); one assigned
    differently, a duplicate id in the batch or an invalid draft refuses the whole batch
    (``DomainError`` naming the task), and nothing is stored.
    """
    if len(drafts) > MAX_BATCH:
        raise DomainError(
            f"assign at most {MAX_BATCH} tasks at once, not {len(drafts)}", field="tasks"
        )
    seen: set[str] = set()
    writes: list[StreamWrite] = []
    for draft in drafts:
        if draft.task_id in seen:
            raise DomainError(f"task {draft.task_id} appears twice in the batch", field="task_id")
        seen.add(draft.task_id)
        task = await load(store, Task, task_stream_id(draft.task_id), conn=conn)
        events = task.assign(draft)
        if events:
            writes.append(StreamWrite(task.id, task.version, events))
    if writes:
        await store.append_many(writes, ctx, conn=conn)
    return [w.stream_id.removeprefix("task:") for w in writes]


async def load_task(store: EventStore, task_id: str) -> Task:
    task = await load(store, Task, task_stream_id(task_id))
    if not task.exists:
        raise NotFound(f"there is no task {task_id}")
    return task


async def _on_task(
    store: EventStore,
    task_id: str,
    decide: Decide,
    ctx: CommandContext,
    *,
    campaign_id: str | None = None,
) -> Task:
    """``decide`` on the task; with ``campaign_id``, only on a target of that campaign."""

    def guarded(task: Task) -> Sequence[Event]:
        if not task.exists:
            raise NotFound(f"there is no task {task_id}")
        if campaign_id is not None:
            task.require_target_of(campaign_id)
        return decide(task)

    return await execute(store, Task, task_stream_id(task_id), guarded, ctx)


async def report_progress(
    store: EventStore,
    task_id: str,
    actor: Actor,
    *,
    percent: int,
    note: str,
    evidence: Sequence[Evidence],
    today: dt.date,
    ctx: CommandContext,
    campaign_id: str | None = None,
) -> Task:
    return await _on_task(
        store,
        task_id,
        lambda t: t.report_progress(
            actor, percent=percent, note=note, evidence=evidence, today=today
        ),
        ctx,
        campaign_id=campaign_id,
    )


async def complete_task(
    store: EventStore,
    task_id: str,
    actor: Actor,
    *,
    summary: str,
    evidence: Sequence[Evidence],
    today: dt.date,
    ctx: CommandContext,
    campaign_id: str | None = None,
) -> Task:
    return await _on_task(
        store,
        task_id,
        lambda t: t.complete(actor, summary=summary, evidence=evidence, today=today),
        ctx,
        campaign_id=campaign_id,
    )


async def reschedule_task(
    store: EventStore,
    task_id: str,
    actor: Actor,
    *,
    due_on: dt.date,
    reason: str,
    now: dt.datetime,
    ctx: CommandContext,
) -> Task:
    return await _on_task(
        store, task_id, lambda t: t.reschedule(actor, due_on=due_on, reason=reason, now=now), ctx
    )


async def check_deadline(
    store: EventStore,
    task_id: str,
    *,
    now: dt.datetime,
    policy: EscalationPolicy,
    ctx: CommandContext,
) -> list[Event]:
    """Overdue and escalation steps the clock has reached for the task, appended."""
    task = await load(store, Task, task_stream_id(task_id))
    events = task.check_deadline(now, policy)
    if events:
        await store.append(task.id, task.version, events, ctx)
    return events


async def recompute_deadline(
    store: EventStore, task_id: str, calendar_years: Sequence[int], *, ctx: CommandContext
) -> list[Event]:
    """The task's deadline computed again with today's holiday calendar, appended if it moved."""
    task = await load(store, Task, task_stream_id(task_id))
    events = task.recompute_deadline(calendar_years)
    if events:
        await store.append(task.id, task.version, events, ctx)
    return events
