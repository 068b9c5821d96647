"""The deadline timer's pass on its own: a fresh schema, no service running, the manual clock.

With no background timer racing it, one pass must handle every task the clock has reached,
page after page, each exactly once.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import chinese_calendar
import pytest
from cunzhi_platform.clock import SHANGHAI, ManualClock, calendar_years
from cunzhi_platform.consumer import create_tables
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import rebuild
from cunzhi_rectification.adapters.tasks.projection import TasksProjection, tasks_table
from cunzhi_rectification.adapters.tasks.timer import (
    CALENDAR_YEARS,
    fire_due_deadlines,
    recompute_deadlines,
)
from cunzhi_rectification.application.tasks import assign_tasks, complete_task
from cunzhi_rectification.domain.tasks import Actor, EscalationPolicy, TaskDraft, deadline
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


FUTURE = 2031
"""A year the installed chinese-calendar does not know yet: the Monday–Friday fallback."""
WORKED = {dt.date(FUTURE, 9, 27)}  # a Saturday worked (调休), as in a real arrangement
HOLIDAYS = {dt.date(FUTURE, 10, d) for d in range(1, 8)}  # National Day week


def at_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI)


async def test_deadlines_are_computed_again_when_the_calendar_learns_their_year(
    pool: asyncpg.Pool, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert FUTURE not in calendar_years()
    clock = ManualClock(dt.datetime(FUTURE, 6, 1, 9, tzinfo=SHANGHAI))
    store = EventStore(pool, schema, registry, clock)
    projection = TasksProjection()
    async with pool.acquire() as conn:
        await migrate(conn, schema, [*PLATFORM_MIGRATIONS, CALENDAR_YEARS])
        await create_tables(conn, schema, projection)
    assert await recompute_deadlines(store) == 0  # the first start records the years known

    def target(task_id: str, due_on: dt.date) -> TaskDraft:
        return TaskDraft(
            task_id=task_id,
            source="campaign_target",
            township_id="town",
            village_id="v1",
            assignee=Assignee(kind="village", id="v1"),
            title="目标",
            starts_on=dt.date(FUTURE, 6, 1),
            due_on=due_on,
            campaign_id="c",
        )

    saturday, national_day = dt.date(FUTURE, 9, 27), dt.date(FUTURE, 10, 1)
    await assign_tasks(
        store,
        [
            target("sat", saturday),
            target("oct", national_day),
            target("done", national_day),
            target("november", dt.date(FUTURE, 11, 12)),
        ],
        CommandContext(),
    )
    await complete_task(
        store,
        "done",
        Actor("office", office_of=frozenset({"town"})),
        summary="已完成",
        evidence=(),
        today=clock.now().date(),
        ctx=CommandContext(),
    )
    await rebuild(projection, store)
    # computed with the fallback: the Saturday a rest day, National Day a working Wednesday
    assert deadline(saturday) == at_midnight(dt.date(FUTURE, 9, 30))
    assert deadline(national_day) == at_midnight(dt.date(FUTURE, 10, 2))

    # the package is upgraded and now knows the year
    known = chinese_calendar.is_workday

    def is_workday(day: dt.date) -> bool:
        if day.year != FUTURE:
            return known(day)
        return day in WORKED or (day.weekday() < 5 and day not in HOLIDAYS)

    monkeypatch.setattr(chinese_calendar, "is_workday", is_workday)
    holidays = {**chinese_calendar.constants.holidays, **dict.fromkeys(HOLIDAYS, None)}
    monkeypatch.setattr(chinese_calendar.constants, "holidays", holidays)

    assert await recompute_deadlines(store) == 2
    assert await recompute_deadlines(store) == 0  # the years are recorded: nothing to do
    rows = await pool.fetch(
        f'SELECT stream_id, payload FROM "{schema}".events WHERE type = '
        "'cunzhi.rectification.TaskDeadlineRecomputed' ORDER BY stream_id"
    )
    moved = {r["stream_id"]: r["payload"] for r in rows}
    assert sorted(moved) == ["task:oct", "task:sat"]
    assert moved["task:sat"]["deadline"] == "2031-09-28T00:00:00+08:00"
    assert moved["task:oct"]["deadline"] == "2031-10-09T00:00:00+08:00"
    assert moved["task:oct"]["previous_deadline"] == "2031-10-02T00:00:00+08:00"
    assert moved["task:oct"]["calendar_years"] == [FUTURE]

    # the read model, rebuilt from the events, holds the new deadlines: the worked Saturday's
    # task is overdue on Sunday, National Day's not before the holiday week is over
    await rebuild(projection, store)
    policy = EscalationPolicy()
    clock.set(dt.datetime(FUTURE, 9, 28, 9, tzinfo=SHANGHAI))
    assert await fire_due_deadlines(store, clock, policy) == 1
    clock.set(dt.datetime(FUTURE, 10, 2, 9, tzinfo=SHANGHAI))
    assert await fire_due_deadlines(store, clock, policy) == 0
    deadlines = dict(
        await pool.fetch(f"SELECT task_id, deadline_at FROM {tasks_table(schema)} ORDER BY task_id")
    )
    assert deadlines["sat"] == at_midnight(dt.date(FUTURE, 9, 28))
    assert deadlines["oct"] == at_midnight(dt.date(FUTURE, 10, 9))
