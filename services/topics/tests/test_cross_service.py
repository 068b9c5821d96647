"""The topic cycle driven by the other services' events over the real broker.

The test publishes what meetings and rectification will publish (``ForumPlanned``,
``ResolutionAdopted``, ``TaskCompleted``) as their relays would, with CloudEvents headers; the
timers open and close the call as the manual clock passes its times.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cunzhi_meetings.events import (
    ForumCancelled,
    ForumPlanned,
    ForumPostponed,
    ForumTask,
    ResolutionAdopted,
)
from cunzhi_platform.metrics import DLQ
from cunzhi_platform.testing import eventually
from cunzhi_rectification.events import TaskCompleted
from cunzhi_rectification.events.tasks import TaskProgressReported
from cunzhi_topics.domain import topic_stream_id

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow

MEETINGS = "cunzhi.meetings.events"
RECTIFICATION = "cunzhi.rectification.events"


def planned(township_id: str, forum_id: str, date: dt.date) -> ForumPlanned:
    return ForumPlanned(
        forum_id=forum_id,
        township_id=township_id,
        number=7,
        date=date,
        place="乡政府三楼会议室",
        mode="at_township",
        activities=(),
    )


def completed(forum_id: str, township_id: str, task_id: str) -> TaskCompleted:
    return TaskCompleted(
        task_id=task_id, forum_id=forum_id, township_id=township_id, completed_on=dt.date.today()
    )


def dead_letters() -> float:
    return sum(s.value for m in DLQ.collect() for s in m.samples if s.name.endswith("_total"))


async def test_cycle_from_forum_planned_to_resolution(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = kit.fresh("forum")
    forum_key = f"forum:{forum}"
    dead_before = dead_letters()
    plan = planned(town, forum, kit.forum_date(open_now=False))
    plan_id = await kit.publish(MEETINGS, plan, forum_key)
    call_path = f"/townships/{town}/calls/{forum}"
    call = await kit.until(call_path, lambda c: c["state"] == "scheduled")
    assert call["forum_date"] == str(plan.date)

    # ForumPlanned again: the very same message, and the same news under a new event id.
    await kit.publish(MEETINGS, plan, forum_key, event_id=plan_id)
    await kit.publish(MEETINGS, plan, forum_key)
    await marker_processed(kit, forum_key)
    assert await kit.call_version(town, forum) == 1

    times = await kit.call_times(town, forum)
    kit.clock.set(times.opens_at)
    await kit.until(call_path, lambda c: c["state"] == "open")
    wang = kit.secretary(town, village)
    chosen = await kit.submit(town, forum, wang, village_ids=[village])
    other = await kit.submit(town, forum, wang, village_ids=[village], title="换届准备")
    r = await kit.post(f"/topics/{chosen}/shortlist", kit.office(town))
    assert r.status_code == 200, r.text
    kit.clock.set(times.closes_at)
    await kit.until(call_path, lambda c: c["state"] == "closed")
    r = await kit.post(
        f"{call_path}/selection",
        kit.committee(town),
        {"topic_id": chosen, "dispositions": {other: {"kind": "decline", "reason": "已解决"}}},
    )
    assert r.status_code == 200, r.text
    await kit.topic(chosen, lambda t: t["state"] == "selected")

    # Rectification reports a task done before meetings' resolution naming it arrives.
    t1, t2 = f"{forum}-T1", f"{forum}-T2"
    await kit.publish(RECTIFICATION, completed(forum, town, t1), f"task:{t1}")
    await ledger_has(kit, forum, t1, "completed")
    resolution = ResolutionAdopted(
        resolution_id=f"{forum}-R1",
        forum_id=forum,
        township_id=town,
        topic_id=chosen,
        title="关于加强流动党员管理的决议",
        policies=(),
        tasks=tuple(
            ForumTask(
                task_id=t,
                assignee_village_id=village,
                description="建立流动党员联系台账",
                due_date=plan.date + dt.timedelta(days=30),
            )
            for t in (t1, t2)
        ),
    )
    await kit.publish(MEETINGS, resolution, forum_key)
    await ledger_has(kit, forum, t2, "assigned")
    progress = TaskProgressReported(
        task_id=t2,
        township_id=town,
        percent=60,
        previous_percent=0,
        note="台账已建立",
        reported_by="p-wang",
        reported_on=dt.date.today(),
    )
    await kit.publish(RECTIFICATION, progress, f"task:{t2}")
    assert (await kit.topic(chosen, bool))["state"] == "selected"  # t2 is still to do

    done_id = await kit.publish(RECTIFICATION, completed(forum, town, t2), f"task:{t2}")
    await kit.topic(chosen, lambda t: t["state"] == "resolved")
    (resolved,) = await kit.published("cunzhi.topics.TopicResolved", topic_id=chosen)
    assert resolved["forum_id"] == forum

    # The submitter follows every step in words, from submission to resolution.
    timeline = await kit.until(f"/topics/{chosen}/timeline", lambda p: p["total"] == 8, wang)
    steps = [s["step"] for s in timeline["items"]]
    # In time order; here the other services' events carry the test's own clock, not the
    # service's manual one, so only each side's order is certain.
    own = {"submitted", "shortlisted", "selected", "resolved"}
    assert [s for s in steps if s in own] == ["submitted", "shortlisted", "selected", "resolved"]
    assert sorted(steps) == sorted(
        [*own, "resolution_adopted", "task_progress", "task_completed", "task_completed"]
    )
    (progressed,) = [s for s in timeline["items"] if s["step"] == "task_progress"]
    assert progressed["description"] == f"任务 {t2} 进度 60%：台账已建立"
    (adopted,) = [s for s in timeline["items"] if s["step"] == "resolution_adopted"]
    assert adopted["description"] == "论坛通过《关于加强流动党员管理的决议》，部署任务2项"
    r = await kit.client.get(f"/topics/{chosen}/timeline", headers=kit.office(kit.fresh("town")))
    assert r.status_code == 403

    # Redelivered completions and plans change nothing and are not dead-lettered.
    await kit.publish(RECTIFICATION, completed(forum, town, t2), f"task:{t2}", event_id=done_id)
    await kit.publish(RECTIFICATION, completed(forum, town, t2), f"task:{t2}")
    await kit.publish(MEETINGS, plan, forum_key)
    await kit.publish(MEETINGS, resolution, forum_key)
    await marker_processed(kit, forum_key)
    marker_forum = kit.fresh("forum")
    await kit.publish(RECTIFICATION, completed(marker_forum, town, "x"), f"task:{t2}")
    await ledger_has(kit, marker_forum, "x", "completed")
    assert await kit.version(topic_stream_id(chosen)) == 4  # submitted … selected, resolved
    assert await kit.call_version(town, forum) == 4  # scheduled, opened, closed, decided
    assert dead_letters() == dead_before


async def marker_processed(kit: Kit, key: str) -> None:
    """Publish a plan for a fresh township under ``key``: once its call exists, everything
    published before it under that key (same partition) has been handled."""
    town, forum = kit.fresh("town"), kit.fresh("forum")
    await kit.publish(MEETINGS, planned(town, forum, kit.forum_date(open_now=False)), key)
    await kit.until(f"/townships/{town}/calls/{forum}", bool)


async def ledger_has(kit: Kit, forum: str, task: str, column: str) -> None:
    async def check() -> bool:
        flag = await kit.pool.fetchval(
            f"SELECT {column} FROM topics.forum_tasks WHERE forum_id = $1 AND task_id = $2",
            forum,
            task,
        )
        return bool(flag)

    assert await eventually(check, timeout=20), f"{forum}/{task} not {column}"


async def test_a_postponed_forum_moves_its_call_and_a_cancelled_one_returns_its_topic(
    kit: Kit,
) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum, next_forum = kit.fresh("forum"), kit.fresh("forum")
    date = kit.forum_date(open_now=False)
    await kit.publish(MEETINGS, planned(town, forum, date), f"forum:{forum}")
    call_path = f"/townships/{town}/calls/{forum}"
    await kit.until(call_path, lambda c: c["state"] == "scheduled")

    later = date + dt.timedelta(days=7)
    postponed = ForumPostponed(
        forum_id=forum, township_id=town, previous_date=date, date=later, reason="县委巡察"
    )
    await kit.publish(MEETINGS, postponed, f"forum:{forum}")
    moved = await kit.until(call_path, lambda c: c["forum_date"] == str(later))
    assert moved["state"] == "scheduled"
    times = await kit.call_times(town, forum)
    assert times.forum_date == later

    # Open, a topic selected, then the forum is cancelled: the topic waits for the next call.
    kit.clock.set(times.opens_at)
    await kit.until(call_path, lambda c: c["state"] == "open")
    chosen = await kit.submit(town, forum, kit.secretary(town, village), village_ids=[village])
    assert (await kit.post(f"/topics/{chosen}/shortlist", kit.office(town))).status_code == 200
    kit.clock.set(times.closes_at)
    await kit.until(call_path, lambda c: c["state"] == "closed")
    r = await kit.post(
        f"{call_path}/selection", kit.committee(town), {"topic_id": chosen, "dispositions": {}}
    )
    assert r.status_code == 200, r.text
    cancelled = ForumCancelled(forum_id=forum, township_id=town, topic_id=chosen, reason="暴雨")
    await kit.publish(MEETINGS, cancelled, f"forum:{forum}")
    await kit.until(call_path, lambda c: c["state"] == "cancelled")
    returned = await kit.topic(chosen, lambda t: t["state"] == "deferred")
    assert returned["reason"] == "暴雨"

    # The township's next call takes it in, as submitted, with where it came from.
    next_date = later + dt.timedelta(days=28)
    await kit.publish(MEETINGS, planned(town, next_forum, next_date), f"forum:{next_forum}")
    await kit.until(f"/townships/{town}/calls/{next_forum}", bool)
    kit.clock.set((await kit.call_times(town, next_forum)).opens_at)
    carried = await kit.topic(chosen, lambda t: t["forum_id"] == next_forum)
    assert (carried["state"], carried["carried_over_from"]) == ("submitted", [forum])
    # Delivered again, the cancellation changes nothing.
    await kit.publish(MEETINGS, cancelled, f"forum:{forum}")
    await marker_processed(kit, f"forum:{forum}")
    assert await kit.call_version(town, forum) == 6  # … rescheduled, …, decided, cancelled
