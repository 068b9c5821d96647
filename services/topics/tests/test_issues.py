"""Speak-up issues (逢五说事), their claims (领办) and their promotion to topics."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

import pytest
from cunzhi_platform.aggregate import DomainError, Forbidden, InvalidTransition, NotFound
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.events import Event
from cunzhi_topics import events as ev
from cunzhi_topics.domain import (
    CallForTopics,
    CallTimes,
    Claimant,
    Issue,
    IssueState,
    Topic,
    TopicState,
    VillageSecretary,
    call_stream_id,
    issue_stream_id,
    promote_issue,
    topic_stream_id,
)

Agg = TypeVar("Agg", Issue, Topic)

TOWNSHIP = "guandi"
SPEAK_UP_DAY = dt.date(2026, 11, 23)  # lunar 10/15
NOT_SPEAK_UP_DAY = dt.date(2026, 11, 24)  # lunar 10/16
NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
LATER = NOW + dt.timedelta(days=3)
CADRE = "p-wang"
WANG = VillageSecretary(CADRE, "v01")


def raised(issue_id: str = "i1", raised_on: dt.date = SPEAK_UP_DAY) -> Issue:
    issue = Issue(issue_stream_id(issue_id))
    return applied(
        issue,
        issue.raise_issue(
            TOWNSHIP,
            "v01",
            CADRE,
            "路灯坏了",
            "村东头路灯不亮",
            raised_on,
            NOW,
            villager_name="张大爷",
        ),
    )


def claimed(issue: Issue, claimant: str = "p-liu") -> Issue:
    return applied(issue, issue.claim(Claimant(claimant, villages=frozenset({"v01"})), NOW))


def applied(agg: Agg, events: list[Event]) -> Agg:
    for event in events:
        agg.apply(event)
    return agg


def test_an_issue_raised_on_a_speak_up_day_is_heard_that_day() -> None:
    issue = Issue(issue_stream_id("i1"))
    events = issue.raise_issue(
        TOWNSHIP, "v01", CADRE, " 路灯坏了 ", "村东头路灯不亮", SPEAK_UP_DAY, NOW, villager_name=" "
    )
    assert events == [
        ev.IssueRaised(
            issue_id="i1",
            township_id=TOWNSHIP,
            village_id="v01",
            title="路灯坏了",
            description="村东头路灯不亮",
            villager_name=None,
            raised_by=CADRE,
            raised_on=SPEAK_UP_DAY,
            speak_up_day=SPEAK_UP_DAY,
            on_speak_up_day=True,
        )
    ]
    applied(issue, events)
    assert issue.state is IssueState.RAISED


def test_an_issue_raised_on_another_day_is_accepted_for_the_next_speak_up_day() -> None:
    issue = raised(raised_on=NOT_SPEAK_UP_DAY)
    assert issue.speak_up_day == dt.date(2026, 12, 3)  # lunar 10/25


def test_raising_needs_a_past_date_a_title_and_a_fresh_issue() -> None:
    issue = Issue(issue_stream_id("i1"))
    with pytest.raises(DomainError, match="still to come") as refused:
        issue.raise_issue(TOWNSHIP, "v01", CADRE, "t", "d", dt.date(2026, 11, 25), NOW)
    assert refused.value.field == "raised_on"
    with pytest.raises(DomainError) as refused:
        issue.raise_issue(TOWNSHIP, "v01", CADRE, "", "d", SPEAK_UP_DAY, NOW)
    assert refused.value.field == "title"
    with pytest.raises(InvalidTransition, match="already been raised"):
        raised().raise_issue(TOWNSHIP, "v01", CADRE, "t", "d", SPEAK_UP_DAY, NOW)
    with pytest.raises(ValueError, match="not an issue stream id"):
        Issue("i1")


def test_a_party_member_of_the_village_claims_an_open_issue() -> None:
    issue = raised()
    events = issue.claim(Claimant("p-liu", villages=frozenset({"v01"})), NOW)
    assert events == [
        ev.IssueClaimed(
            issue_id="i1",
            township_id=TOWNSHIP,
            village_id="v01",
            claimant_id="p-liu",
            claimed_at=NOW,
        )
    ]
    applied(issue, events)
    assert (issue.state, issue.claimant_id) == (IssueState.CLAIMED, "p-liu")


def test_a_claimed_issue_cannot_be_claimed_again() -> None:
    issue = claimed(raised())
    with pytest.raises(InvalidTransition, match="already claimed by p-liu") as refused:
        issue.claim(Claimant("p-chen", villages=frozenset({"v01"})), NOW)
    assert refused.value.status == 409


def test_a_cadre_of_the_township_claims_an_issue_of_any_of_its_villages() -> None:
    events = raised().claim(Claimant("p-zhang", townships=frozenset({TOWNSHIP})), NOW)
    assert [e.claimant_id for e in events if isinstance(e, ev.IssueClaimed)] == ["p-zhang"]


@pytest.mark.parametrize(
    "claimant",
    [
        Claimant("p-chen"),
        Claimant("p-chen", villages=frozenset({"v02"})),
        Claimant("p-chen", townships=frozenset({"dazhangjia"})),
    ],
)
def test_only_party_members_and_cadres_of_the_village_or_township_claim(
    claimant: Claimant,
) -> None:
    with pytest.raises(Forbidden, match="party members and cadres of that village"):
        raised().claim(claimant, NOW)


def test_the_claimant_reports_progress_and_closes_with_what_was_done() -> None:
    issue = claimed(raised())
    with pytest.raises(Forbidden, match="only the claimant can report progress on it"):
        issue.report_progress("p-chen", "买了灯泡", NOW)
    with pytest.raises(DomainError) as refused:
        issue.report_progress("p-liu", " ", NOW)
    assert refused.value.field == "note"
    applied(issue, issue.report_progress("p-liu", "买了灯泡", NOW))
    assert issue.progress == ["买了灯泡"]

    with pytest.raises(DomainError) as refused:
        issue.close("p-liu", "", LATER)
    assert refused.value.field == "outcome"
    with pytest.raises(Forbidden, match="only the claimant can close it"):
        issue.close("p-chen", "修好了", LATER)
    events = issue.close("p-liu", "换了三盏路灯", LATER)
    assert isinstance(events[0], ev.IssueClosed)
    applied(issue, events)
    assert (issue.state, issue.outcome) == (IssueState.CLOSED, "换了三盏路灯")
    with pytest.raises(InvalidTransition, match="was closed by p-liu"):
        issue.claim(Claimant("p-chen", villages=frozenset({"v01"})), LATER)
    with pytest.raises(InvalidTransition, match="was closed"):
        issue.report_progress("p-liu", "again", LATER)


def test_an_unclaimed_issue_takes_no_report_or_closing() -> None:
    with pytest.raises(InvalidTransition, match="not been claimed yet"):
        raised().close("p-liu", "done", NOW)
    with pytest.raises(NotFound, match="there is no issue i9"):
        Issue(issue_stream_id("i9")).claim(Claimant("p-liu", villages=frozenset({"v01"})), NOW)


# -- promotion -----------------------------------------------------------------------------


def open_call(township: str = TOWNSHIP) -> CallForTopics:
    call = CallForTopics(call_stream_id(township, "f-2026-11"))
    forum_date = dt.date(2026, 11, 27)
    return applied_call(call, call.schedule(forum_date, CallTimes.for_forum(forum_date).opens_at))


def applied_call(call: CallForTopics, events: list[Event]) -> CallForTopics:
    for event in events:
        call.apply(event)
    return call


IN_CALL = dt.datetime(2026, 11, 18, 10, 0, tzinfo=SHANGHAI)


def test_a_claimed_issue_is_promoted_to_a_topic_of_the_open_call() -> None:
    issue = claimed(raised())
    topic = Topic(topic_stream_id("t1"))
    call = open_call()
    events = promote_issue(issue, topic, call, WANG, "livelihood_works", IN_CALL)
    assert events["issue:i1"] == [
        ev.IssuePromoted(
            issue_id="i1",
            township_id=TOWNSHIP,
            village_id="v01",
            topic_id="t1",
            forum_id="f-2026-11",
            claimant_id="p-liu",
            promoted_by=CADRE,
            promoted_at=IN_CALL,
        )
    ]
    submitted = events["topic:t1"][0]
    assert isinstance(submitted, ev.TopicSubmitted)
    assert (submitted.title, submitted.source_issue_id, submitted.village_ids) == (
        "路灯坏了",
        "i1",
        ["v01"],
    )
    applied(issue, events["issue:i1"])
    applied(topic, events["topic:t1"])
    assert (issue.state, issue.promoted_to) == (IssueState.PROMOTED, "t1")
    assert topic.state is TopicState.SUBMITTED
    assert topic.sources[0].issue_id == "i1"
    with pytest.raises(InvalidTransition, match="promoted to topic t1; follow that topic"):
        issue.report_progress("p-liu", "x", IN_CALL)
    with pytest.raises(InvalidTransition, match="cannot promote issue i1"):
        promote_issue(issue, Topic(topic_stream_id("t2")), call, WANG, "livelihood_works", IN_CALL)


def test_promotion_takes_the_callers_wording_and_keeps_the_issues_village() -> None:
    issue = raised()
    events = promote_issue(
        issue,
        Topic(topic_stream_id("t1")),
        open_call(),
        WANG,
        "livelihood_works",
        IN_CALL,
        title="全村路灯改造",
        description="路灯老化",
        village_ids=["v01", "v02"],
    )
    submitted = events["topic:t1"][0]
    assert isinstance(submitted, ev.TopicSubmitted)
    assert (submitted.title, submitted.village_ids) == ("全村路灯改造", ["v01", "v02"])
    with pytest.raises(DomainError, match="must concern village v01") as refused:
        promote_issue(
            issue,
            Topic(topic_stream_id("t2")),
            open_call(),
            WANG,
            "livelihood_works",
            IN_CALL,
            village_ids=["v02"],
        )
    assert refused.value.field == "village_ids"


def test_promotion_needs_the_townships_open_call_and_an_open_issue() -> None:
    issue = raised()
    topic = Topic(topic_stream_id("t1"))
    with pytest.raises(DomainError, match="promote it to that township's call"):
        promote_issue(issue, topic, open_call("dazhangjia"), WANG, "livelihood_works", IN_CALL)
    after_deadline = dt.datetime(2026, 11, 21, 9, 0, tzinfo=SHANGHAI)
    with pytest.raises(InvalidTransition, match="closed at 2026-11-20 17:30"):
        promote_issue(issue, topic, open_call(), WANG, "livelihood_works", after_deadline)
    done = claimed(raised("i2"))
    applied(done, done.close("p-liu", "修好了", NOW))
    with pytest.raises(InvalidTransition, match="cannot promote issue i2: it was closed"):
        promote_issue(done, topic, open_call(), WANG, "livelihood_works", IN_CALL)
