"""Guandi's forum history since April 2020, built through the aggregates.

Shared by the pure record tests and the read-model test on the real stack, which replays the
same events under a fresh township id. Tests get the module through the ``guandi`` fixture:
with pytest's importlib import mode, test modules cannot import each other.
"""

from __future__ import annotations

import datetime as dt
import sys
from types import ModuleType

import pytest
from cunzhi_meetings.domain import (
    AttendanceMark,
    Forum,
    ResolutionDraft,
    Roster,
    RosterMember,
    forum_stream_id,
    roster_stream_id,
)
from cunzhi_meetings.events import ExpertLecture, ForumTask, Policy
from cunzhi_platform.events import Event

EXPERTS = ["陈教授", "林研究员", "周主任", "吴博士", "郑书记"]
FIELD_VISITS = {4: "寿光市三元朱村", 9: "邹平市西王村", 15: "兰陵县代村"}


def guandi_roster(township: str = "guandi") -> Roster:
    roster = Roster(roster_stream_id(township))
    members = [
        RosterMember("p-wang", "王书记", "leadership"),
        RosterMember("p-zhao", "赵主任", "middle_cadre"),
    ] + [
        RosterMember(f"s-{n:02d}", f"书记{n}", "village_secretary", village_id=f"v{n:02d}")
        for n in range(1, 11)
    ]
    for e in roster.add_members(members):
        roster.apply(e)
    return roster


def month_of(number: int) -> tuple[int, int]:
    """Forum 1 in April 2020, one a month."""
    index = 2020 * 12 + 3 + number - 1
    return index // 12, index % 12 + 1


# eight secretaries share experience two at a time; s-01 comes back at forum 12
SHARING = {
    1: ["s-01", "s-02"],
    3: ["s-03", "s-04"],
    7: ["s-05", "s-06"],
    11: ["s-07", "s-08"],
    12: ["s-01"],
}


def forum_cycle(roster: Roster, number: int, held: bool = True) -> list[Event]:
    """One forum through the aggregate, as the application layer would drive it.

    Experts 1–5 lecture at forums 1–5 and the first comes back at forum 6. Odd forums adopt a
    policy, even ones assign two tasks that get done. s-02 is absent from forums 1–3 and s-03
    late at forum 1. A forum not held plans a new expert and new speakers, which must not count.
    """
    forum = Forum(forum_stream_id(roster.township_id, number))
    events: list[Event] = []

    def run(new: list[Event]) -> None:
        for e in new:
            forum.apply(e)
        events.extend(new)

    year, month = month_of(number)
    expert = EXPERTS[(number - 1) % 5] if held else "未到专家"
    lecture = ExpertLecture(expert_name=expert, affiliation="市委党校", subject="基层治理")
    run(
        forum.plan(
            place=FIELD_VISITS.get(number, "关堤乡政府"),
            mode="field_visit" if number in FIELD_VISITS else "at_township",
            host_unit=FIELD_VISITS.get(number),
            expert_lectures=[lecture] if number <= 6 or not held else [],
            exchange_speaker_ids=SHARING.get(number, []) if held else ["s-09", "s-10"],
            roster=roster,
            today=dt.date(year, month, 1),
        )
    )
    if number == 1:
        run(forum.add_invitee(name="孙队长", role="驻村工作队", village_id="v03"))
    run(forum.set_topic(topic_id=f"t-{number}", title=f"议题{number}", category="governance"))
    if not held:
        return events
    run(forum.issue_notice(roster, now=forum.notice_due_at, automatic=True))

    marks = {a.person_id: AttendanceMark(a.person_id, "present") for a in forum.attendees}
    if number <= 3:
        marks["s-02"] = AttendanceMark("s-02", "absent", "病假")
    if number == 1:
        marks["s-03"] = AttendanceMark("s-03", "late")
    minutes = f"第{number}期论坛纪要"
    run(forum.hold(list(marks.values()), speakers=["p-wang"], minutes=minutes, today=forum.date))

    if number % 2:
        policy = Policy(title="关堤乡特殊党员管理办法", document_number=f"关发〔{year}〕{number}号")
        run(forum.adopt_resolutions([ResolutionDraft("办法", policies=[policy])], today=forum.date))
        return events
    due = forum.date + dt.timedelta(days=30)
    tasks = [
        ForumTask(task_id=f"T{number}-{v}", assignee_village_id=v, description="拆迁", due_date=due)
        for v in ("v01", "v02")
    ]
    run(forum.adopt_resolutions([ResolutionDraft("拆迁攻坚", tasks=tasks)], today=forum.date))
    for t in tasks:
        run(forum.complete_task(f"{forum.forum_id}-{t.task_id}", completed_on=due))
    return events


def history(township: str = "guandi") -> list[Event]:
    """Forums 1–18 held and closed, forum 19 planned but not yet held."""
    roster = guandi_roster(township)
    events = [e for n in range(1, 19) for e in forum_cycle(roster, n)]
    return events + forum_cycle(roster, 19, held=False)


@pytest.fixture
def guandi() -> ModuleType:
    return sys.modules[__name__]
