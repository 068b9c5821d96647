"""The deadline timer's pass on its own: a fresh schema, no service running, the manual clock.

With no background timer racing it, one pass must handle every task the clock has reached,
page after page, each exactly once.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.consumer import create_tables
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import rebuild
from cunzhi_rectification.adapters.tasks.projection import TasksProjection
from cunzhi_rectification.adapters.tasks.timer import fire_due_deadlines
from cunzhi_rectification.application.tasks import assign_tasks
from cunzhi_rectification.domain.tasks import EscalationPolicy, TaskDraft, deadline
from cunzhi_rectification.events import Assignee, registry

pytestmark = pytest.mark.slow

START = dt.date(2026, 3, 2)
DUE = dt.date(2026, 3, 31)


async def test_one_pass_handles_every_due_task_page_after_page(
    pool: asyncpg.Pool, schema: str
) -> None:
    clock = ManualClock(dt.datetime.combine(START, dt.time(9), tzinfo=SHANGHAI))
    store = EventStore(pool, schema, registry, clock)
    projection = TasksProjection()
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
        await create_tables(conn, schema, projection)
    drafts = [
        TaskDraft(
            task_id=f"t{n}",
            source="campaign_target",
            township_id="town",
            village_id=f"v{n}",
            assignee=Assignee(kind="village", id=f"v{n}"),
            title="目标",
            starts_on=START,
            due_on=DUE if n < 7 else DUE + dt.timedelta(days=60),
            campaign_id="c",
        )
        for n in range(9)
    ]
    await assign_tasks(store, drafts, CommandContext())
    await rebuild(projection, store)
    policy = EscalationPolicy(township_after=2, county_after=4)

    clock.set(deadline(DUE))
    assert await fire_due_deadlines(store, clock, policy, batch=2) == 7
    await rebuild(projection, store)
    # Nothing more is due now; later, the escalations of the seven, page after page.
    assert await fire_due_deadlines(store, clock, policy, batch=2) == 0
    clock.set(deadline(DUE) + dt.timedelta(days=20))
    assert await fire_due_deadlines(store, clock, policy, batch=3) == 7

    rows = await pool.fetch(
        f'SELECT stream_id, type FROM "{schema}".events ORDER BY global_position'
    )
    kinds = [r["type"].rsplit(".", 1)[1] for r in rows if r["stream_id"] == "task:t0"]
    assert kinds == ["TaskAssigned", "TaskOverdue", "TaskEscalated", "TaskEscalated"]
    assert len(rows) == 9 + 7 * 3
