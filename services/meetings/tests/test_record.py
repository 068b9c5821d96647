"""Read logic: Guandi's record of 18 / 18 / 5 / 8 / 3, and attendance rates."""

from __future__ import annotations

import datetime as dt

from cunzhi_meetings.domain import (
    AttendanceMark,
    AttendanceTally,
    Forum,
    ResolutionDraft,
    Roster,
    RosterMember,
    attendance_by_person,
    attendance_by_village,
    default_forum_date,
    forum_stream_id,
    roster_stream_id,
    township_record,
)
from cunzhi_meetings.events import (
    ExpertLecture,
    ForumClosed,
    ForumHeld,
    ForumPlanned,
    ForumTask,
    ForumTaskCompleted,
    Policy,
)
from cunzhi_platform.events import Event

TOWNSHIP = "guandi"
EXPERTS = ["陈教授", "林研究员", "周主任", "吴博士", "郑书记"]
FIELD_VISITS = {4: "寿光市三元朱村", 9: "邹平市西王村", 15: "兰陵县代村"}


def guandi_roster() -> Roster:
    roster = Roster(roster_stream_id(TOWNSHIP))
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
    forum = Forum(forum_stream_id(TOWNSHIP, number))
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
        run(forum.complete_task(t.task_id, completed_on=due))
    return events


def test_guandi_record_since_april_2020() -> None:
    roster = guandi_roster()
    events = [e for n in range(1, 19) for e in forum_cycle(roster, n)]
    events += forum_cycle(roster, 19, held=False)  # planned, its expert and speakers not yet seen
    assert isinstance(events[0], ForumPlanned) and events[0].date == default_forum_date(2020, 4)

    record = township_record(events)

    assert (
        record.forums_held,
        record.problems_solved,
        record.experts_invited,
        record.secretaries_sharing_experience,
        record.field_visits,
    ) == (18, 18, 5, 8, 3)
    assert record.experts == frozenset(EXPERTS)


def test_a_held_forum_with_open_tasks_is_not_yet_a_solved_problem() -> None:
    roster = guandi_roster()
    events = [e for n in (1, 2) for e in forum_cycle(roster, n)]
    # forum 2's tasks are still being worked on
    unfinished = [
        e
        for e in events
        if not (isinstance(e, ForumTaskCompleted | ForumClosed) and e.forum_id == "guandi-F002")
    ]
    record = township_record(unfinished)
    assert (record.forums_held, record.problems_solved) == (2, 1)


def test_attendance_rates_per_person_and_per_village() -> None:
    roster = guandi_roster()
    held = [e for n in range(1, 19) for e in forum_cycle(roster, n) if isinstance(e, ForumHeld)]

    by_person = attendance_by_person(held)
    assert by_person["s-02"] == AttendanceTally(invited=18, present=15, late=0, absent=3)
    assert by_person["s-02"].rate == 15 / 18
    assert by_person["s-03"] == AttendanceTally(invited=18, present=17, late=1, absent=0)
    assert by_person["s-03"].rate == 1.0
    assert by_person["guandi-F001-G01"].invited == 1

    by_village = attendance_by_village(held)
    assert by_village["v02"].rate == 15 / 18
    assert by_village["v03"] == AttendanceTally(invited=19, present=18, late=1, absent=0)
    assert "p-wang" not in by_village and len(by_village) == 10
    assert attendance_by_person([]) == {}
