"""Speak-up sessions (逢五说事) and the quarterly contest of village heads (擂台比武)."""

from __future__ import annotations

import datetime as dt

import pytest
from cunzhi_meetings.domain import (
    Contest,
    RaisedIssue,
    SpeakUpSession,
    contest_stream_id,
    quarter_of,
    speak_up_stream_id,
)
from cunzhi_meetings.events import ContestHeld, ContestParticipant, SpeakUpSessionHeld
from cunzhi_platform.aggregate import DomainError, InvalidTransition
from cunzhi_platform.clock import lunar_day

SPEAK_UP_DAY = dt.date(2026, 5, 21)  # lunar 4th month, 5th day
TODAY = dt.date(2026, 6, 1)
KNOWN = {
    "i-1": RaisedIssue("i-1", "v01", "村东路灯不亮"),
    "i-2": RaisedIssue("i-2", "v01", "排水沟堵塞"),
    "i-9": RaisedIssue("i-9", "v02", "邻村的事"),
}


def test_speak_up_session_on_a_lunar_fifth() -> None:
    assert lunar_day(SPEAK_UP_DAY) == 5
    session = SpeakUpSession(speak_up_stream_id("v01", SPEAK_UP_DAY))
    [e] = session.hold(
        township_id="guandi",
        attendance_count=42,
        issue_ids=["i-1", "i-2"],
        known_issues=KNOWN,
        hosted_by="张一",
        today=TODAY,
    )
    assert isinstance(e, SpeakUpSessionHeld)
    assert (e.session_id, e.lunar_day, e.issue_ids, e.issues_raised) == (
        "v01-2026-05-21",
        5,
        ("i-1", "i-2"),
        ("村东路灯不亮", "排水沟堵塞"),
    )
    session.apply(e)
    with pytest.raises(InvalidTransition, match="already recorded"):
        session.hold(
            township_id="guandi",
            attendance_count=1,
            issue_ids=[],
            known_issues=KNOWN,
            hosted_by="张一",
            today=TODAY,
        )


def test_speak_up_on_another_day_names_the_next_speak_up_day() -> None:
    session = SpeakUpSession(speak_up_stream_id("v01", dt.date(2026, 5, 22)))
    with pytest.raises(DomainError, match=r"not a speak-up day.*the next one is 2026-05-31") as exc:
        session.hold(
            township_id="guandi",
            attendance_count=10,
            issue_ids=[],
            known_issues=KNOWN,
            hosted_by="张一",
            today=TODAY,
        )
    assert exc.value.field == "date" and lunar_day(dt.date(2026, 5, 31)) == 15


def test_speak_up_refusals() -> None:
    session = SpeakUpSession(speak_up_stream_id("v01", SPEAK_UP_DAY))
    hold = session.hold
    with pytest.raises(DomainError, match="has not taken place yet"):
        hold(
            township_id="g",
            attendance_count=1,
            issue_ids=[],
            known_issues=KNOWN,
            hosted_by="张一",
            today=SPEAK_UP_DAY - dt.timedelta(days=1),
        )

    def hold_with(issue_ids: list[str], attendance: int = 3, host: str = "张一") -> None:
        hold(
            township_id="g",
            attendance_count=attendance,
            issue_ids=issue_ids,
            known_issues=KNOWN,
            hosted_by=host,
            today=TODAY,
        )

    with pytest.raises(DomainError, match="how many villagers"):
        hold_with([], attendance=0)
    with pytest.raises(DomainError, match="who hosted"):
        hold_with([], host=" ")
    for issue_ids, reason in (
        (["i-7"], "no speak-up issue i-7 is known"),
        (["i-1", "i-9"], "i-9 are on another village's claim list"),
        (["i-1", "i-1"], "named twice"),
    ):
        with pytest.raises(DomainError, match=reason) as refused:
            hold_with(issue_ids)
        assert refused.value.field == "issue_ids"


def heads(*villages: str) -> list[ContestParticipant]:
    return [ContestParticipant(village_id=v, head_name=f"{v}村主任") for v in villages]


def test_contest_once_a_quarter() -> None:
    day = dt.date(2026, 6, 26)
    contest = Contest(contest_stream_id("guandi", 2026, quarter_of(day)))
    assert contest.id == "contest:guandi:2026Q2"
    [e] = contest.hold(
        date=day, participants=heads("v01", "v02", "v03"), ranking=["v02", "v01", "v03"], today=day
    )
    assert isinstance(e, ContestHeld) and e.contest_id == "guandi-2026Q2" and e.ranking[0] == "v02"
    contest.apply(e)
    with pytest.raises(InvalidTransition, match="already held its 2026 Q2 contest on 2026-06-26"):
        contest.hold(date=day, participants=heads("v01", "v02"), ranking=["v01", "v02"], today=day)


def test_contest_refusals() -> None:
    contest = Contest(contest_stream_id("guandi", 2026, 2))
    day = dt.date(2026, 6, 26)
    with pytest.raises(DomainError, match="2026-07-01 is not in 2026 Q2"):
        contest.hold(
            date=dt.date(2026, 7, 1),
            participants=heads("v01", "v02"),
            ranking=["v01", "v02"],
            today=TODAY.replace(month=8),
        )
    with pytest.raises(DomainError, match="has not taken place yet"):
        contest.hold(
            date=day, participants=heads("v01", "v02"), ranking=["v01", "v02"], today=TODAY
        )
    with pytest.raises(DomainError, match="at least two villages"):
        contest.hold(date=day, participants=heads("v01"), ranking=["v01"], today=day)
    with pytest.raises(DomainError, match="v01 is listed twice"):
        contest.hold(date=day, participants=heads("v01", "v01"), ranking=["v01"], today=day)
    with pytest.raises(DomainError, match="missing v03; not participating: v09") as exc:
        contest.hold(
            date=day,
            participants=heads("v01", "v02", "v03"),
            ranking=["v01", "v02", "v09"],
            today=day,
        )
    assert exc.value.field == "ranking"
    with pytest.raises(DomainError, match="every participating village once"):
        contest.hold(
            date=day, participants=heads("v01", "v02"), ranking=["v01", "v02", "v01"], today=day
        )
