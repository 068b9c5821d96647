"""Read logic: Guandi's record of 18 / 18 / 5 / 8 / 3, and attendance rates.

The history itself is built in ``conftest.py`` (fixture ``guandi``).
"""

from __future__ import annotations

import datetime as dt
from types import ModuleType

import pytest
from cunzhi_meetings.domain import (
    AttendanceTally,
    Forum,
    attendance_by_person,
    attendance_by_village,
    default_forum_date,
    forum_stream_id,
    township_record,
)
from cunzhi_meetings.events import (
    ForumClosed,
    ForumHeld,
    ForumPlanned,
    ForumTaskCompleted,
    GuestSpeaker,
)
from cunzhi_platform.aggregate import DomainError, InvalidTransition


def test_guandi_record_since_april_2020(guandi: ModuleType) -> None:
    events = guandi.history()  # forum 19 planned: its expert and speakers not yet seen
    assert isinstance(events[0], ForumPlanned) and events[0].date == default_forum_date(2020, 4)

    record = township_record(events)

    assert (
        record.forums_held,
        record.problems_solved,
        record.experts_invited,
        record.secretaries_sharing_experience,
        record.field_visits,
    ) == (18, 18, 5, 8, 3)
    assert record.experts == frozenset(guandi.EXPERTS)


def test_a_held_forum_with_open_tasks_is_not_yet_a_solved_problem(guandi: ModuleType) -> None:
    roster = guandi.guandi_roster()
    events = [e for n in (1, 2) for e in guandi.forum_cycle(roster, n)]
    # forum 2's tasks are still being worked on
    unfinished = [
        e
        for e in events
        if not (isinstance(e, ForumTaskCompleted | ForumClosed) and e.forum_id == "guandi-F002")
    ]
    record = township_record(unfinished)
    assert (record.forums_held, record.problems_solved) == (2, 1)


def test_attendance_rates_per_person_and_per_village(guandi: ModuleType) -> None:
    held = [e for e in guandi.history() if isinstance(e, ForumHeld)]

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


def test_ledger_forums_count_and_a_guest_is_one_sharer_however_often_they_come() -> None:
    guest = GuestSpeaker(name="东大阳村支书", affiliation="新乡县东大阳村党支部")
    today = dt.date(2026, 11, 25)
    events = []
    for number, solved in ((1, True), (2, False)):
        forum = Forum(forum_stream_id("guandi", number))
        events += forum.record_past(
            date=dt.date(2020, 3 + number, 28),
            today=today,
            place="新乡县东大阳村",
            mode="field_visit",
            host_unit="新乡县东大阳村党支部",
            topic_title="村集体经济发展",
            guest_speakers=[guest],
            problem_solved=solved,
        )
        for e in events[-1:]:
            forum.apply(e)
        with pytest.raises(InvalidTransition, match="already recorded"):
            forum.record_past(
                date=dt.date(2020, 4, 28),
                today=today,
                place="p",
                topic_title="t",
                problem_solved=True,
            )
    record = township_record(events)
    assert (record.forums_held, record.problems_solved, record.field_visits) == (2, 1, 2)
    assert record.secretaries_sharing_experience == 1
    with pytest.raises(DomainError) as refused:
        Forum(forum_stream_id("guandi", 3)).record_past(
            date=today, today=today, place="p", topic_title="t", problem_solved=True
        )
    assert refused.value.field == "date"
