"""The deadline timer: tasks become overdue at the end of their due day and escalate.

Candidates come from the ``tasks`` read model (an indexed range on ``deadline_at``), which may
lag or be stale: each candidate's own stream decides (``Task.check_deadline``), so a task
completed a moment ago or already escalated by another instance changes nothing. The platform
runs the timer in one instance of the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import ConcurrencyError
from cunzhi_platform.runtime import Runtime

from ...application.tasks import check_deadline
from ...domain.tasks import EscalationPolicy, TaskStatus, escalation_cutoff
from .projection import tasks_table

_log = structlog.get_logger(__name__)
SCHEDULER = "rectification-scheduler"
"""The actor of what the service does by itself."""
BATCH = 500


async def fire_due_deadlines(rt: Runtime, policy: EscalationPolicy) -> int:
    """Append what the clock has reached for at most ``BATCH`` tasks; returns how many moved."""
    now = rt.clock.now()
    today = now.astimezone(SHANGHAI).date()
    rows = await rt.pool.fetch(
        f"SELECT task_id FROM {tasks_table(rt.store.schema)} "
        "WHERE (status = $1 AND deadline_at <= $2) "
        "OR (status = $3 AND escalation_level = 'village' AND deadline_at <= $4) "
        "OR (status = $3 AND escalation_level = 'township' AND deadline_at <= $5) "
        "ORDER BY deadline_at LIMIT $6",
        TaskStatus.OPEN,
        now,
        TaskStatus.OVERDUE,
        escalation_cutoff(today, policy.township_after),
        escalation_cutoff(today, policy.county_after),
        BATCH,
    )
    ctx = CommandContext(actor=SCHEDULER)
    moved = 0
    for row in rows:
        try:
            if await check_deadline(rt.store, row["task_id"], now=now, policy=policy, ctx=ctx):
                moved += 1
        except (DomainError, ConcurrencyError) as exc:
            _log.info("deadline_check_skipped", task_id=row["task_id"], reason=str(exc))
    return moved


def deadline_timer(policy: EscalationPolicy) -> Callable[[Runtime], Coroutine[Any, Any, None]]:
    async def task_deadlines(rt: Runtime) -> None:
        while True:
            await fire_due_deadlines(rt, policy)
            await asyncio.sleep(rt.settings.scheduler_interval_s)

    return task_deadlines
