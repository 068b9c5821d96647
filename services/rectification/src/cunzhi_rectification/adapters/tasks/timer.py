"""The deadline timer: tasks become overdue at the end of their due day and escalate.

Candidates come from the ``tasks`` read model (an indexed range on ``deadline_at``), which may
lag or be stale: each candidate's own stream decides (``Task.check_deadline``), so a task
completed a moment ago or already escalated by another instance changes nothing. The platform
runs the timer in one instance of the service.

At start-up the timer first looks whether the holiday calendar knows years it did not know at
the last start (recorded in ``calendar_years``): a deadline due in such a year was computed
with the Monday–Friday fallback, so every unfinished task due then is computed again and one
whose deadline changed gets a ``TaskDeadlineRecomputed`` (the read model and a rebuild follow
it). The years are recorded once every such task is done; a conflict leaves them unrecorded,
so the next start tries again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.clock import SHANGHAI, Clock, calendar_years
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import ConcurrencyError, EventStore
from cunzhi_platform.migrations import Migration
from cunzhi_platform.runtime import Runtime
from prometheus_client import Counter

from ...application.tasks import check_deadline, recompute_deadline
from ...domain.tasks import EscalationPolicy, TaskStatus, escalation_cutoff
from ...events import TaskEscalated
from .projection import tasks_table

_log = structlog.get_logger(__name__)
SCHEDULER = "rectification-scheduler"
"""The actor of what the service does by itself."""
BATCH = 500
DEADLINE_STEPS = Counter(
    "cunzhi_rectification_deadline_steps_total",
    "Tasks the deadline timer made overdue (level village) or escalated, by the level reached",
    ["level"],
)


async def fire_due_deadlines(
    store: EventStore, clock: Clock, policy: EscalationPolicy, *, batch: int = BATCH
) -> int:
    """Append what the clock has reached for every candidate task; returns how many moved.

    Candidates are read a page at a time, in (deadline, id) order after the last one seen, so a
    campaign's targets falling due on one day are all handled in one pass, and a row the read
    model has not caught up with yet is looked at once, not again and again.
    """
    now = clock.now()
    today = now.astimezone(SHANGHAI).date()
    cutoffs = (
        escalation_cutoff(today, policy.township_after),
        escalation_cutoff(today, policy.county_after),
    )
    ctx = CommandContext(actor=SCHEDULER)
    after: tuple[dt.datetime | None, str] = (None, "")
    moved = 0
    while True:
        rows = await store.pool.fetch(
            f"SELECT task_id, deadline_at FROM {tasks_table(store.schema)} "
            "WHERE ((status = $1 AND deadline_at <= $2) "
            "OR (status = $3 AND escalation_level = 'village' AND deadline_at <= $4) "
            "OR (status = $3 AND escalation_level = 'township' AND deadline_at <= $5)) "
            "AND ($6::timestamptz IS NULL OR (deadline_at, task_id) > ($6, $7)) "
            "ORDER BY deadline_at, task_id LIMIT $8",
            TaskStatus.OPEN,
            now,
            TaskStatus.OVERDUE,
            *cutoffs,
            *after,
            batch,
        )
        for row in rows:
            try:
                steps = await check_deadline(store, row["task_id"], now=now, policy=policy, ctx=ctx)
                for step in steps:
                    level = step.level if isinstance(step, TaskEscalated) else "village"
                    DEADLINE_STEPS.labels(level).inc()
                moved += bool(steps)
            except (DomainError, ConcurrencyError) as exc:
                _log.info("deadline_check_skipped", task_id=row["task_id"], reason=str(exc))
        if len(rows) < batch:
            return moved
        after = (rows[-1]["deadline_at"], rows[-1]["task_id"])


CALENDAR_YEARS = Migration(
    "calendar_years",
    "CREATE TABLE IF NOT EXISTS {schema}.calendar_years ("
    "year integer PRIMARY KEY, recorded_at timestamptz NOT NULL DEFAULT now())",
)
"""The years of the holiday calendar the stored deadlines were last computed with."""


async def recompute_deadlines(store: EventStore, *, batch: int = BATCH) -> int:
    """Deadlines of unfinished tasks due in years the calendar newly knows, computed again;
    returns how many moved. Runs before the timer's first pass."""
    known = calendar_years()
    recorded = {r["year"] for r in await store.pool.fetch(f"SELECT year FROM {_years(store)}")}
    new = sorted(known - recorded)
    if not new:
        return 0
    # a due day late in December may run into January of a newly known year
    first, last = dt.date(new[0] - 1, 12, 1), dt.date(new[-1], 12, 31)
    ctx = CommandContext(actor=SCHEDULER)
    moved, skipped, after = 0, 0, ""
    while True:
        rows = await store.pool.fetch(
            f"SELECT task_id FROM {tasks_table(store.schema)} WHERE status <> $1 "
            "AND due_on BETWEEN $2 AND $3 AND task_id > $4 ORDER BY task_id LIMIT $5",
            TaskStatus.COMPLETED,
            first,
            last,
            after,
            batch,
        )
        for row in rows:
            try:
                moved += bool(await recompute_deadline(store, row["task_id"], new, ctx=ctx))
            except (DomainError, ConcurrencyError) as exc:
                skipped += 1
                _log.warning("deadline_recompute_skipped", task_id=row["task_id"], reason=str(exc))
        if len(rows) < batch:
            break
        after = rows[-1]["task_id"]
    if not skipped:
        await store.pool.execute(
            f"INSERT INTO {_years(store)} (year) SELECT unnest($1::int[]) ON CONFLICT DO NOTHING",
            new,
        )
    _log.info("deadlines_recomputed", calendar_years=new, moved=moved, skipped=skipped)
    return moved


def _years(store: EventStore) -> str:
    return f'"{store.schema}".calendar_years'


def deadline_timer(policy: EscalationPolicy) -> Callable[[Runtime], Coroutine[Any, Any, None]]:
    async def task_deadlines(rt: Runtime) -> None:
        await recompute_deadlines(rt.store)
        while True:
            await fire_due_deadlines(rt.store, rt.clock, policy)
            await asyncio.sleep(rt.settings.scheduler_interval_s)

    return task_deadlines
