"""The deadline timer: tasks become overdue at the end of their due day and escalate.

Candidates come from the ``tasks`` read model (an indexed range on ``deadline_at``), which may
lag or be stale: each candidate's own stream decides (``Task.check_deadline``), so a task
completed a moment ago or already escalated by another instance changes nothing. The platform
runs the timer in one instance of the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.clock import SHANGHAI, Clock
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import ConcurrencyError, EventStore
from cunzhi_platform.runtime import Runtime

from ...application.tasks import check_deadline
from ...domain.tasks import EscalationPolicy, TaskStatus, escalation_cutoff
from .projection import tasks_table

_log = structlog.get_logger(__name__)
SCHEDULER = "rectification-scheduler"
"""The actor of what the service does by itself."""
BATCH = 500


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
                if await check_deadline(store, row["task_id"], now=now, policy=policy, ctx=ctx):
                    moved += 1
            except (DomainError, ConcurrencyError) as exc:
                _log.info("deadline_check_skipped", task_id=row["task_id"], reason=str(exc))
        if len(rows) < batch:
            return moved
        after = (rows[-1]["deadline_at"], rows[-1]["task_id"])


def deadline_timer(policy: EscalationPolicy) -> Callable[[Runtime], Coroutine[Any, Any, None]]:
    async def task_deadlines(rt: Runtime) -> None:
        while True:
            await fire_due_deadlines(rt.store, rt.clock, policy)
            await asyncio.sleep(rt.settings.scheduler_interval_s)

    return task_deadlines
