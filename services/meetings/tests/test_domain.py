"""The forum from plan to close, and every refusal on the way. Pure: no clock, no I/O."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import pytest
from cunzhi_meetings.domain import (
    AttendanceMark,
    Forum,
    ForumStatus,
    ResolutionDraft,
    Roster,
    RosterMember,
    default_forum_date,
    forum_id,
    forum_stream_id,
    months_to_plan,
    next_forum_date,
    notice_due_at,
    parse_forum_id,
    roster_stream_id,
)
from cunzhi_meetings.events import (
    Discussion,
    ExperienceExchange,
    ExpertLecture,
    ForumClosed,
    ForumHeld,
    ForumInviteeAdded,
    ForumNoticeIssued,
    ForumPlanned,
    ForumPostponed,
    ForumTask,
    ForumTaskCompleted,
    Policy,
    ResolutionAdopted,
    registry,
)
from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.clock import SHANGHAI, is_working_day
from cunzhi_platform.events import Event

TOWNSHIP = "guandi"
F18 = "guandi-F018-"
"""What the 18th forum puts in front of its task ids."""
TODAY = dt.date(2026, 9, 1)
FORUM_DAY = dt.date(2026, 9, 30)
LECTURE = ExpertLecture(expert_name="陈教授", affiliation="市委党校", subject="基层治理")
POLICY = Policy(title="关堤乡特殊党员管理办法", document_number="关发〔2026〕12号")


def run(agg: Aggregate, events: Sequence[Event]) -> list[Event]:
    """What the application layer does with a command's events."""
    for e in events:
        agg.apply(e)
    return list(events)


def at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


@pytest.fixture
def roster() -> Roster:
    r = Roster(roster_stream_id(TOWNSHIP))
    run(
        r,
        r.add_members(
            [
                RosterMember("p-wang", "王书记", "leadership"),
                RosterMember("p-li", "李乡长", "leadership"),
                RosterMember("p-zhao", "赵主任", "middle_cadre"),
                RosterMember("s-01", "张一", "village_secretary", village_id="v01"),
                RosterMember("s-02", "刘二", "village_secretary", village_id="v02"),
            ]
        ),
    )
    return r


def planned(roster: Roster, date: dt.date = FORUM_DAY) -> Forum:
    forum = Forum(forum_stream_id(TOWNSHIP, 18))
    run(forum, forum.plan(place="乡政府三楼会议室", date=date, roster=roster, today=TODAY))
    return forum


def noticed(roster: Roster) -> Forum:
    forum = planned(roster)
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="member_management"))
    run(forum, forum.issue_notice(roster, now=at(dt.date(2026, 9, 25))))
    return forum


def everyone_present(forum: Forum) -> list[AttendanceMark]:
    return [AttendanceMark(a.person_id, "present") for a in forum.attendees]


def held(roster: Roster) -> Forum:
    forum = noticed(roster)
    run(
        forum,
        forum.hold(everyone_present(forum), speakers=["s-01"], minutes="议定…", today=FORUM_DAY),
    )
    return forum


def task(task_id: str, due: dt.date = dt.date(2026, 10, 31), village: str = "v01") -> ForumTask:
    return ForumTask(
        task_id=task_id, assignee_village_id=village, description="完成拆迁", due_date=due
    )


def test_ids() -> None:
    assert forum_stream_id("guandi", 18) == "forum:guandi:18"
    assert forum_id("guandi", 18) == "guandi-F018"
    assert parse_forum_id("guandi-F018") == ("guandi", 18)
    assert Forum("forum:guandi:18").forum_id == "guandi-F018"
    with pytest.raises(ValueError):
        parse_forum_id("guandi-18")


def test_the_whole_cycle_from_plan_to_close(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 18))
    [plan] = run(
        forum,
        forum.plan(
            place="乡政府三楼会议室",
            roster=roster,
            today=TODAY,
            expert_lectures=[LECTURE],
            exchange_speaker_ids=["s-01", "s-02", "s-01"],
        ),
    )
    assert isinstance(plan, ForumPlanned)
    assert plan.forum_id == "guandi-F018" and plan.number == 18
    assert plan.date == default_forum_date(2026, 9) == FORUM_DAY
    assert plan.activities == (
        LECTURE,
        ExperienceExchange.model_validate(
            {
                "speakers": [
                    {"person_id": "s-01", "name": "张一", "village_id": "v01"},
                    {"person_id": "s-02", "name": "刘二", "village_id": "v02"},
                ]
            }
        ),
        Discussion(),
    )

    [invited] = run(forum, forum.add_invitee(name="孙队长", role="驻村工作队", village_id="v02"))
    assert isinstance(invited, ForumInviteeAdded) and invited.person_id == "guandi-F018-G01"
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="member_management"))
    # redelivered TopicSelected changes nothing
    assert forum.set_topic(topic_id="t-7", title="流动党员管理", category="member_management") == []

    # Sep 25–27 are the Mid-Autumn holiday: three working days before Sep 30 start on Sep 24
    assert not forum.is_notice_due(at(dt.date(2026, 9, 23), 23, 59))
    assert forum.is_notice_due(at(dt.date(2026, 9, 24)))
    [notice] = run(forum, forum.issue_notice(roster, now=at(dt.date(2026, 9, 24)), automatic=True))
    assert isinstance(notice, ForumNoticeIssued)
    assert notice.prepare_remarks is True and notice.automatic
    assert notice.topic_title == "流动党员管理" and notice.date == FORUM_DAY
    assert [a.person_id for a in notice.attendees] == [
        "p-wang", "p-li", "p-zhao", "s-01", "s-02", "guandi-F018-G01",
    ]  # fmt: skip
    assert not forum.is_notice_due(at(dt.date(2026, 9, 26)))

    [held_event] = run(
        forum,
        forum.hold(
            [
                AttendanceMark("p-wang", "present"),
                AttendanceMark("p-li", "absent", "县里开会"),
                AttendanceMark("p-zhao", "late"),
                AttendanceMark("s-01", "present"),
                AttendanceMark("s-02", "present"),
                AttendanceMark("guandi-F018-G01", "present"),
            ],
            speakers=["s-01", "p-zhao"],
            minutes="围绕流动党员管理座谈，形成管理办法。",
            today=FORUM_DAY,
        ),
    )
    assert isinstance(held_event, ForumHeld)
    assert held_event.attendance[1].reason == "县里开会"
    assert held_event.attendance[5].name == "孙队长"
    assert held_event.activities == plan.activities

    outcome = run(
        forum,
        forum.adopt_resolutions(
            [
                ResolutionDraft(
                    title="规范特殊党员管理",
                    policies=[POLICY],
                    tasks=[task("T1"), task("T2", village="v02")],
                ),
                ResolutionDraft(
                    title="建立流动党员台账",
                    tasks=[
                        ForumTask(
                            task_id="T3",
                            assignee_person_id="p-zhao",
                            description="建台账",
                            due_date=FORUM_DAY,
                        )
                    ],
                ),
            ],
            today=FORUM_DAY,
        ),
    )
    adopted = [e for e in outcome if isinstance(e, ResolutionAdopted)]
    assert len(adopted) == len(outcome) == 2
    assert [r.resolution_id for r in adopted] == ["guandi-F018-R1", "guandi-F018-R2"]
    assert adopted[0].topic_id == "t-7" and adopted[0].tasks[1].assignee_village_id == "v02"

    done = dt.date(2026, 10, 20)
    assert [type(e) for e in run(forum, forum.complete_task(F18 + "T1", completed_on=done))] == [
        ForumTaskCompleted
    ]
    assert forum.complete_task(F18 + "T1", completed_on=done) == []  # redelivery
    [stranger] = run(forum, forum.complete_task(F18 + "T9", completed_on=done))
    assert isinstance(stranger, ForumTaskCompleted) and not stranger.known
    run(forum, forum.complete_task(F18 + "T2", completed_on=done))
    assert forum.open_task_ids == {F18 + "T3"}

    last = run(forum, forum.complete_task(F18 + "T3", completed_on=dt.date(2026, 10, 25)))
    assert [type(e) for e in last] == [ForumTaskCompleted, ForumClosed]
    assert last[1] == ForumClosed(
        forum_id="guandi-F018",
        township_id=TOWNSHIP,
        topic_id="t-7",
        closed_on=dt.date(2026, 10, 25),
    )
    assert forum.status == ForumStatus.CLOSED
    assert forum.complete_task(F18 + "T3", completed_on=done) == []


def test_stored_payloads_decode_to_the_same_events_and_state(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 18))
    events = run(
        forum,
        forum.plan(
            place="乡政府",
            roster=roster,
            today=TODAY,
            expert_lectures=[LECTURE],
            exchange_speaker_ids=["s-01"],
        ),
    )
    events += run(forum, forum.add_invitee(name="孙队长", role="驻村工作队"))
    events += run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="x"))
    events += run(forum, forum.issue_notice(roster, now=at(dt.date(2026, 9, 25))))
    marks = [*everyone_present(forum)[1:], AttendanceMark("p-wang", "absent", "病假")]
    events += run(forum, forum.hold(marks, speakers=["s-01"], minutes="m", today=FORUM_DAY))
    draft = ResolutionDraft("办法", policies=[POLICY], tasks=[task("T1")])
    events += run(forum, forum.adopt_resolutions([draft], today=FORUM_DAY))
    events += run(forum, forum.complete_task(F18 + "T1", completed_on=FORUM_DAY))

    replay = Forum(forum.id)
    for e in events:
        stored = json.loads(json.dumps(e.to_payload()))
        decoded = registry.decode(e.event_type, e.schema_version, stored)
        assert decoded == e
        replay.apply(decoded)
    assert replay.status == ForumStatus.CLOSED and replay.version == forum.version == 8
    assert replay.attendance == forum.attendance and replay.activities == forum.activities


# --- plan ---------------------------------------------------------------------------------


def test_default_date_is_the_month_end_or_next_months_when_it_passed(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 1))
    [e] = forum.plan(place="乡政府", roster=roster, today=dt.date(2026, 5, 30))  # a Saturday
    assert isinstance(e, ForumPlanned)
    assert default_forum_date(2026, 5) == dt.date(2026, 5, 29)
    assert e.date == default_forum_date(2026, 6) == dt.date(2026, 6, 30)


def test_plan_refusals(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 18))
    with pytest.raises(DomainError, match="in the past") as exc:
        forum.plan(place="乡政府", date=dt.date(2026, 8, 31), roster=roster, today=TODAY)
    assert exc.value.field == "date" and exc.value.status == 422
    with pytest.raises(DomainError, match="where") as exc:
        forum.plan(place=" ", roster=roster, today=TODAY)
    assert exc.value.field == "place"
    with pytest.raises(DomainError, match="host unit") as exc:
        forum.plan(place="外出", mode="field_visit", roster=roster, today=TODAY)
    assert exc.value.field == "host_unit"
    with pytest.raises(DomainError, match="only a field visit"):
        forum.plan(place="乡政府", host_unit="某村", roster=roster, today=TODAY)
    with pytest.raises(DomainError, match="赵主任 is middle_cadre, not a village secretary"):
        forum.plan(place="乡政府", exchange_speaker_ids=["p-zhao"], roster=roster, today=TODAY)
    with pytest.raises(DomainError, match="s-99 is not on the roster"):
        forum.plan(place="乡政府", exchange_speaker_ids=["s-99"], roster=roster, today=TODAY)
    with pytest.raises(DomainError, match="at least one activity"):
        forum.plan(place="乡政府", discussion=False, roster=roster, today=TODAY)
    with pytest.raises(DomainError, match="name and affiliation"):
        forum.plan(
            place="乡政府",
            expert_lectures=[ExpertLecture(expert_name="陈教授", affiliation="", subject="x")],
            roster=roster,
            today=TODAY,
        )


def test_field_visit_names_its_host(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 18))
    visit = forum.plan(
        place="寿光", mode="field_visit", host_unit="寿光市三元朱村", roster=roster, today=TODAY
    )
    run(forum, visit)
    assert forum.mode == "field_visit" and forum.host_unit == "寿光市三元朱村"


def test_a_number_is_planned_once(roster: Roster) -> None:
    forum = planned(roster)
    with pytest.raises(InvalidTransition, match="already planned; plan the next number"):
        forum.plan(place="乡政府", roster=roster, today=TODAY)


def test_invitees_come_before_the_notice(roster: Roster) -> None:
    forum = planned(roster)
    run(forum, forum.add_invitee(name="孙队长", role="驻村工作队", person_id="x-sun"))
    assert forum.add_invitee(name="孙队长", role="驻村工作队", person_id="x-sun") == []
    with pytest.raises(DomainError, match="already invited as 孙队长"):
        forum.add_invitee(name="钱专家", role="专家", person_id="x-sun")
    forum = noticed(roster)
    with pytest.raises(InvalidTransition, match="notice of guandi-F018 is out"):
        forum.add_invitee(name="孙队长", role="驻村工作队")


# --- topic and notice ---------------------------------------------------------------------


def test_a_second_topic_is_refused(roster: Roster) -> None:
    forum = planned(roster)
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="member_management"))
    with pytest.raises(InvalidTransition, match="already has the topic '流动党员管理'") as exc:
        forum.set_topic(topic_id="t-8", title="集体经济", category="collective_economy")
    assert exc.value.status == 409


def test_notice_without_topic_is_refused(roster: Roster) -> None:
    forum = planned(roster)
    assert not forum.is_notice_due(at(FORUM_DAY))
    with pytest.raises(InvalidTransition, match="committee must select a topic first") as exc:
        forum.issue_notice(roster, now=at(dt.date(2026, 9, 25)))
    assert exc.value.status == 409


def test_manual_notice_may_come_early_but_automatic_waits(roster: Roster) -> None:
    forum = planned(roster)
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="x"))
    early = at(dt.date(2026, 9, 10))
    with pytest.raises(
        InvalidTransition, match="automatic notice of guandi-F018 is due at 2026-09-24T09:00"
    ):
        forum.issue_notice(roster, now=early, automatic=True)
    [e] = forum.issue_notice(roster, now=early)
    assert isinstance(e, ForumNoticeIssued) and not e.automatic


def test_notice_is_issued_once_and_not_after_the_forum_day(roster: Roster) -> None:
    forum = noticed(roster)
    with pytest.raises(InvalidTransition, match="already out"):
        forum.issue_notice(roster, now=at(dt.date(2026, 9, 26)))
    late = planned(roster)
    run(late, late.set_topic(topic_id="t-7", title="流动党员管理", category="x"))
    assert not late.is_notice_due(at(dt.date(2026, 10, 1)))
    with pytest.raises(InvalidTransition, match="postpone it to a new date"):
        late.issue_notice(roster, now=at(dt.date(2026, 10, 1)))


def test_notice_due_counts_working_days_across_the_national_day_holiday() -> None:
    # Oct 1–7 2026 are holidays and Oct 8 a working day, so three working days before
    # Oct 9 are Oct 8, Sep 30 and Sep 29.
    assert not any(is_working_day(dt.date(2026, 10, d)) for d in range(1, 8))
    assert is_working_day(dt.date(2026, 10, 8)) and is_working_day(dt.date(2026, 9, 30))
    due = notice_due_at(dt.date(2026, 10, 9))
    assert due == dt.datetime(2026, 9, 29, 9, 0, tzinfo=SHANGHAI)
    assert due.isoformat() == "2026-09-29T09:00:00+08:00"


def test_automatic_notice_is_due_from_nine_on_the_due_day(roster: Roster) -> None:
    forum = planned(roster, date=dt.date(2026, 10, 9))
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="x"))
    assert not forum.is_notice_due(at(dt.date(2026, 9, 29), 8, 59))
    assert forum.is_notice_due(at(dt.date(2026, 9, 29), 9, 0))
    # the same instant in UTC
    assert forum.is_notice_due(dt.datetime(2026, 9, 29, 1, 0, tzinfo=dt.UTC))
    assert not forum.is_notice_due(dt.datetime(2026, 9, 29, 0, 59, tzinfo=dt.UTC))


# --- postpone and cancel ------------------------------------------------------------------


def test_postponing_a_noticed_forum_needs_a_new_notice(roster: Roster) -> None:
    forum = noticed(roster)
    new_day = dt.date(2026, 10, 9)
    [e] = run(forum, forum.postpone(new_day, "防汛", today=dt.date(2026, 9, 28)))
    assert isinstance(e, ForumPostponed)
    assert e.previous_date == FORUM_DAY and e.date == new_day
    assert [a.person_id for a in e.attendees_to_inform][:2] == ["p-wang", "p-li"]
    assert forum.status == ForumStatus.POSTPONED and forum.attendees == ()
    with pytest.raises(InvalidTransition, match="has not been noticed"):
        forum.hold(everyone_present(forum), speakers=[], minutes="m", today=new_day)
    assert not forum.is_notice_due(at(dt.date(2026, 9, 28)))
    assert forum.is_notice_due(at(dt.date(2026, 9, 29)))
    [again] = run(forum, forum.issue_notice(roster, now=at(dt.date(2026, 9, 29)), automatic=True))
    assert isinstance(again, ForumNoticeIssued) and again.date == new_day


def test_postponing_before_the_notice_informs_nobody(roster: Roster) -> None:
    forum = planned(roster)
    [e] = forum.postpone(dt.date(2026, 10, 30), "书记外出", today=TODAY)
    assert isinstance(e, ForumPostponed) and e.attendees_to_inform == ()


def test_postpone_refusals(roster: Roster) -> None:
    forum = planned(roster)
    with pytest.raises(DomainError, match="say why") as exc:
        forum.postpone(dt.date(2026, 10, 30), " ", today=TODAY)
    assert exc.value.field == "reason"
    with pytest.raises(DomainError, match="after today"):
        forum.postpone(TODAY, "防汛", today=TODAY)
    with pytest.raises(DomainError, match="already on 2026-09-30"):
        forum.postpone(FORUM_DAY, "防汛", today=TODAY)


def test_a_cancelled_forum_cannot_be_noticed_held_or_postponed(roster: Roster) -> None:
    forum = noticed(roster)
    with pytest.raises(DomainError, match="say why"):
        forum.cancel("")
    run(forum, forum.cancel("上级临时任务"))
    assert forum.status == ForumStatus.CANCELLED
    with pytest.raises(
        InvalidTransition, match=r"cancelled \(上级临时任务\); it cannot be held"
    ) as exc:
        forum.hold(everyone_present(forum), speakers=[], minutes="m", today=FORUM_DAY)
    assert exc.value.status == 409
    with pytest.raises(InvalidTransition, match="cancelled; it cannot be noticed"):
        forum.issue_notice(roster, now=at(dt.date(2026, 9, 25)))
    with pytest.raises(InvalidTransition, match="cancelled; it cannot be postponed"):
        forum.postpone(dt.date(2026, 10, 30), "再议", today=TODAY)
    with pytest.raises(InvalidTransition, match="cancelled; it cannot be cancelled"):
        forum.cancel("again")


# --- held ---------------------------------------------------------------------------------


def test_attendance_for_someone_not_invited_is_refused(roster: Roster) -> None:
    forum = noticed(roster)
    marks = [*everyone_present(forum), AttendanceMark("p-stranger", "present")]
    with pytest.raises(DomainError, match="p-stranger was not invited to guandi-F018") as exc:
        forum.hold(marks, speakers=[], minutes="m", today=FORUM_DAY)
    assert exc.value.status == 422 and exc.value.field == "attendance"


def test_roster_changes_after_the_notice_do_not_widen_the_invitation(roster: Roster) -> None:
    forum = noticed(roster)
    run(roster, roster.add_members([RosterMember("s-03", "周三", "village_secretary", "v03")]))
    marks = [*everyone_present(forum), AttendanceMark("s-03", "present")]
    with pytest.raises(DomainError, match="s-03 was not invited"):
        forum.hold(marks, speakers=[], minutes="m", today=FORUM_DAY)


def test_attendance_refusals(roster: Roster) -> None:
    forum = noticed(roster)
    marks = everyone_present(forum)
    with pytest.raises(DomainError, match="say why 王书记 was absent"):
        forum.hold(
            [AttendanceMark("p-wang", "absent"), *marks[1:]],
            speakers=[],
            minutes="m",
            today=FORUM_DAY,
        )
    with pytest.raises(DomainError, match="attendance of 刘二 is missing"):
        forum.hold(marks[:-1], speakers=[], minutes="m", today=FORUM_DAY)
    with pytest.raises(DomainError, match="张一 is recorded twice"):
        forum.hold([*marks, marks[3]], speakers=[], minutes="m", today=FORUM_DAY)
    with pytest.raises(DomainError, match="王书记 is not recorded as present or late") as exc:
        forum.hold(
            [AttendanceMark("p-wang", "absent", "病假"), *marks[1:]],
            speakers=["p-wang"],
            minutes="m",
            today=FORUM_DAY,
        )
    assert exc.value.field == "speakers"
    with pytest.raises(DomainError, match="minutes are required"):
        forum.hold(marks, speakers=[], minutes=" ", today=FORUM_DAY)
    with pytest.raises(InvalidTransition, match="takes place on 2026-09-30"):
        forum.hold(marks, speakers=[], minutes="m", today=dt.date(2026, 9, 29))


def test_only_a_noticed_forum_is_held_and_only_once(roster: Roster) -> None:
    forum = planned(roster)
    run(forum, forum.set_topic(topic_id="t-7", title="流动党员管理", category="x"))
    with pytest.raises(InvalidTransition, match="issue the notice before recording it as held"):
        forum.hold([], speakers=[], minutes="m", today=FORUM_DAY)
    forum = held(roster)
    with pytest.raises(InvalidTransition, match="already recorded as held"):
        forum.hold(everyone_present(forum), speakers=[], minutes="m", today=FORUM_DAY)


# --- outcomes and close -------------------------------------------------------------------


def test_resolutions_come_after_the_forum_is_held(roster: Roster) -> None:
    forum = noticed(roster)
    with pytest.raises(InvalidTransition, match="has not been held"):
        forum.adopt_resolutions([ResolutionDraft("r", tasks=[task("T1")])], today=FORUM_DAY)


def test_a_task_due_before_the_forum_date_is_refused(roster: Roster) -> None:
    forum = held(roster)
    with pytest.raises(
        DomainError, match="task guandi-F018-T2 is due 2026-09-29, before the forum date"
    ) as exc:
        forum.adopt_resolutions(
            [ResolutionDraft("r", tasks=[task("T1"), task("T2", due=dt.date(2026, 9, 29))])],
            today=FORUM_DAY,
        )
    assert exc.value.status == 422 and exc.value.field == "tasks"


def test_resolution_refusals(roster: Roster) -> None:
    forum = held(roster)
    adopt = forum.adopt_resolutions
    with pytest.raises(DomainError, match="at least one resolution"):
        adopt([], today=FORUM_DAY)
    with pytest.raises(DomainError, match="needs a title"):
        adopt([ResolutionDraft(" ", tasks=[task("T1")])], today=FORUM_DAY)
    with pytest.raises(DomainError, match="issues no policy and assigns no task"):
        adopt([ResolutionDraft("空")], today=FORUM_DAY)
    with pytest.raises(DomainError, match="needs a title and a document number"):
        adopt(
            [ResolutionDraft("r", policies=[Policy(title="办法", document_number="")])],
            today=FORUM_DAY,
        )
    with pytest.raises(DomainError, match="exactly one assignee"):
        adopt(
            [
                ResolutionDraft(
                    "r", tasks=[task("T1").model_copy(update={"assignee_person_id": "p-li"})]
                )
            ],
            today=FORUM_DAY,
        )
    with pytest.raises(DomainError, match=f"task {F18}T1 is already a task of forum guandi-F018"):
        adopt(
            [ResolutionDraft("a", tasks=[task("T1")]), ResolutionDraft("b", tasks=[task("T1")])],
            today=FORUM_DAY,
        )
    run(forum, adopt([ResolutionDraft("a", tasks=[task("T1")])], today=FORUM_DAY))
    with pytest.raises(DomainError, match="task guandi-F018-T1 is already a task"):
        forum.adopt_resolutions([ResolutionDraft("b", tasks=[task("T1")])], today=FORUM_DAY)


def test_several_resolutions_over_time_all_count_towards_closing(roster: Roster) -> None:
    forum = held(roster)
    run(forum, forum.adopt_resolutions([ResolutionDraft("a", tasks=[task("T1")])], today=FORUM_DAY))
    later = dt.date(2026, 10, 10)
    [r2] = run(
        forum, forum.adopt_resolutions([ResolutionDraft("b", tasks=[task("T2")])], today=later)
    )
    assert isinstance(r2, ResolutionAdopted) and r2.resolution_id == "guandi-F018-R2"
    assert [type(e) for e in run(forum, forum.complete_task(F18 + "T1", completed_on=later))] == [
        ForumTaskCompleted
    ]
    assert [type(e) for e in run(forum, forum.complete_task(F18 + "T2", completed_on=later))] == [
        ForumTaskCompleted,
        ForumClosed,
    ]


def test_a_policy_only_sitting_closes_the_forum_at_once(roster: Roster) -> None:
    forum = held(roster)
    events = run(
        forum,
        forum.adopt_resolutions(
            [
                ResolutionDraft(
                    "办法",
                    policies=[POLICY],
                )
            ],
            today=FORUM_DAY,
        ),
    )
    assert [type(e) for e in events] == [ResolutionAdopted, ForumClosed]
    with pytest.raises(InvalidTransition, match="is closed, its work done"):
        forum.adopt_resolutions([ResolutionDraft("b", tasks=[task("T1")])], today=FORUM_DAY)


def test_an_unknown_task_reported_early_does_not_close_the_forum(roster: Roster) -> None:
    forum = held(roster)
    run(
        forum,
        forum.adopt_resolutions(
            [ResolutionDraft("a", tasks=[task("T1"), task("T2")])], today=FORUM_DAY
        ),
    )
    [e] = run(forum, forum.complete_task(F18 + "T9", completed_on=FORUM_DAY))
    assert isinstance(e, ForumTaskCompleted) and not e.known
    assert forum.open_task_ids == {F18 + "T1", F18 + "T2"} and forum.status == ForumStatus.HELD


def test_commands_on_an_unplanned_forum_are_refused(roster: Roster) -> None:
    forum = Forum(forum_stream_id(TOWNSHIP, 30))
    with pytest.raises(InvalidTransition, match="guandi-F030 has not been planned"):
        forum.set_topic(topic_id="t", title="t", category="c")
    with pytest.raises(InvalidTransition, match="has not been planned"):
        forum.complete_task(F18 + "T1", completed_on=TODAY)


def test_a_year_is_planned_month_by_month_at_month_end_skipping_what_is_planned() -> None:
    today = dt.date(2026, 9, 15)
    dates = months_to_plan(2026, today, planned_months={10})
    assert dates == [default_forum_date(2026, 9), dt.date(2026, 11, 30), dt.date(2026, 12, 31)]
    assert len(months_to_plan(2027, today, set())) == 12
    with pytest.raises(DomainError, match="2025 is over"):
        months_to_plan(2025, today, set())
    # after this month's forum day, a forum planned today takes next month's
    assert next_forum_date(dt.date(2026, 9, 30)) == default_forum_date(2026, 9)
    assert next_forum_date(dt.date(2026, 10, 31)) == default_forum_date(2026, 11)


def test_task_ids_are_made_unique_county_wide_with_the_forum_id_in_front(roster: Roster) -> None:
    forum = held(roster)
    [adopted] = run(
        forum,
        forum.adopt_resolutions(
            [ResolutionDraft("a", tasks=[task("T1"), task(F18 + "T2")])], today=FORUM_DAY
        ),
    )
    assert isinstance(adopted, ResolutionAdopted)
    assert [t.task_id for t in adopted.tasks] == [F18 + "T1", F18 + "T2"]  # given whole: kept
    with pytest.raises(DomainError, match="longer than 64 characters") as exc:
        forum.adopt_resolutions([ResolutionDraft("b", tasks=[task("T" * 60)])], today=FORUM_DAY)
    assert exc.value.field == "tasks"
    with pytest.raises(DomainError, match="every task needs a task_id"):
        forum.adopt_resolutions([ResolutionDraft("b", tasks=[task(" ")])], today=FORUM_DAY)
