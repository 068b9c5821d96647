"""The topics domain: call for topics, submission, consolidation, selection, resolution."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import pytest
from cunzhi_platform.aggregate import (
    Aggregate,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
)
from cunzhi_platform.clock import SHANGHAI, working_days_before
from cunzhi_platform.events import Event
from cunzhi_topics import events as ev
from cunzhi_topics.domain import (
    CallForTopics,
    CallState,
    CallTimes,
    Category,
    Decline,
    Defer,
    ForumTaskLedger,
    Refer,
    StationHead,
    Topic,
    TopicState,
    TownshipCategories,
    VillageSecretary,
    call_stream_id,
    cancel_forum_call,
    categories_stream_id,
    check_category,
    merge_topics,
    select_topic,
    topic_stream_id,
)

TOWNSHIP = "guandi"
FORUM = "guandi-2026-10"
FORUM_DATE = dt.date(2026, 10, 30)  # a month-end forum: opens Tue 20 Oct, closes Fri 23 Oct
NEXT_FORUM = "guandi-2026-11"
NEXT_FORUM_DATE = dt.date(2026, 11, 27)

WANG = VillageSecretary("p-wang", "v01")
LI = VillageSecretary("p-li", "v02")
ZHAO = VillageSecretary("p-zhao", "v03")
STATION_HEAD = StationHead("p-sun", "nongjingzhan")  # the township's 农经站
OFFICE = "p-office"
COMMITTEE = "p-secretary"


def at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


IN_CALL = at(dt.date(2026, 10, 21))
AFTER_DEADLINE = at(dt.date(2026, 10, 26))


A = TypeVar("A", bound=Aggregate)


def folded(agg: A, events: Iterable[Event]) -> A:
    for event in events:
        agg.apply(event)
    return agg


def fold_all(by_stream: Mapping[str, list[Event]], *aggregates: Aggregate) -> None:
    by_id = {agg.id: agg for agg in aggregates}
    assert set(by_stream) <= set(by_id)
    for stream_id, events in by_stream.items():
        folded(by_id[stream_id], events)


def open_call(
    forum_id: str = FORUM, forum_date: dt.date = FORUM_DATE, township: str = TOWNSHIP
) -> CallForTopics:
    call = CallForTopics(call_stream_id(township, forum_id))
    return folded(call, call.schedule(forum_date, CallTimes.for_forum(forum_date).opens_at))


def closed(call: CallForTopics) -> CallForTopics:
    assert call.times is not None
    return folded(call, call.close(call.times.closes_at))


def submitted(
    call: CallForTopics,
    topic_id: str,
    submitter: VillageSecretary | StationHead = WANG,
    villages: tuple[str, ...] = ("v01",),
    title: str = "特殊党员管理",
    category: str = Category.MEMBER_MANAGEMENT,
    now: dt.datetime = IN_CALL,
) -> Topic:
    topic = Topic(topic_stream_id(topic_id))
    return folded(
        topic,
        topic.submit(call, submitter, title, "流动党员长期不参加组织生活", category, villages, now),
    )


def shortlisted(topic: Topic) -> Topic:
    return folded(topic, topic.shortlist(OFFICE, AFTER_DEADLINE))


# -- the call's times ------------------------------------------------------------------------


def test_a_month_end_call_opens_at_d_minus_10_and_closes_five_working_days_before() -> None:
    times = CallTimes.for_forum(FORUM_DATE)
    assert times.opens_at == at(dt.date(2026, 10, 20), 0)
    # Friday 30 October: Thursday to Monday are four working days, the fifth is Friday 23rd.
    assert times.closes_at == at(dt.date(2026, 10, 23), 17, 30)


@pytest.mark.parametrize(
    ("forum_date", "closes_on"),
    [
        (dt.date(2026, 11, 30), dt.date(2026, 11, 23)),  # a Monday
        (dt.date(2026, 12, 1), dt.date(2026, 11, 24)),  # a Tuesday
        (dt.date(2026, 12, 2), dt.date(2026, 11, 25)),  # a Wednesday
    ],
)
def test_the_deadline_leaves_a_working_day_before_the_forum_notice(
    forum_date: dt.date, closes_on: dt.date
) -> None:
    """Meetings notices at 09:00 three working days before and needs the selected topic."""
    times = CallTimes.for_forum(forum_date)
    assert times.closes_at == at(closes_on, 17, 30)
    notice_at = at(working_days_before(forum_date, 3), 9)
    assert working_days_before(notice_at.date(), 1) > times.closes_at.date()


@pytest.mark.parametrize(
    ("forum_date", "opens_on", "closes_on"),
    [
        # After National Day (1–7 October) and Mid-Autumn (25–27 September) holidays.
        (dt.date(2026, 10, 9), dt.date(2026, 9, 23), dt.date(2026, 9, 24)),
        # Saturday 10 October is an adjusted working day.
        (dt.date(2026, 10, 12), dt.date(2026, 9, 28), dt.date(2026, 9, 29)),
        # The Spring Festival pulls the deadline of a February month-end forum to 13 February.
        (dt.date(2026, 2, 27), dt.date(2026, 2, 12), dt.date(2026, 2, 13)),
    ],
)
def test_a_call_is_open_at_least_two_working_days_even_after_a_long_holiday(
    forum_date: dt.date, opens_on: dt.date, closes_on: dt.date
) -> None:
    times = CallTimes.for_forum(forum_date)
    assert times.opens_at == at(opens_on, 0)
    assert times.closes_at == at(closes_on, 17, 30)


# -- the call's life ---------------------------------------------------------------------------


def test_a_forum_planned_early_schedules_the_call_which_opens_at_d_minus_10() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    planned = call.schedule(FORUM_DATE, at(dt.date(2026, 9, 28)))
    assert [type(e) for e in planned] == [ev.CallForTopicsScheduled]
    folded(call, planned)
    assert call.state is CallState.SCHEDULED

    with pytest.raises(InvalidTransition, match="opens at 2026-10-20 00:00"):
        call.open(at(dt.date(2026, 10, 19), 23, 59))
    opened = call.open(at(dt.date(2026, 10, 20), 0))
    assert opened == [
        ev.CallForTopicsOpened(
            township_id=TOWNSHIP,
            forum_id=FORUM,
            forum_date=FORUM_DATE,
            opened_at=at(dt.date(2026, 10, 20), 0),
            closes_at=at(dt.date(2026, 10, 23), 17, 30),
        )
    ]
    folded(call, opened)
    assert call.state is CallState.OPEN
    with pytest.raises(InvalidTransition, match="is open"):
        call.open(IN_CALL)


def test_a_forum_planned_after_d_minus_10_opens_its_call_at_once() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    planned = call.schedule(FORUM_DATE, IN_CALL)
    assert [type(e) for e in planned] == [ev.CallForTopicsScheduled, ev.CallForTopicsOpened]
    assert isinstance(planned[1], ev.CallForTopicsOpened)
    assert planned[1].opened_at == IN_CALL


def test_forum_planned_delivered_again_changes_nothing_but_a_new_date_is_refused() -> None:
    call = open_call()
    assert call.schedule(FORUM_DATE, IN_CALL) == []
    with pytest.raises(InvalidTransition, match="already planned for a forum on 2026-10-30"):
        call.schedule(dt.date(2026, 10, 29), IN_CALL)


def test_the_call_closes_at_its_deadline_not_before() -> None:
    call = open_call()
    with pytest.raises(InvalidTransition, match="open until 2026-10-23 17:30"):
        call.close(at(dt.date(2026, 10, 23), 17, 29))
    close = call.close(at(dt.date(2026, 10, 23), 17, 30))
    assert [type(e) for e in close] == [ev.CallForTopicsClosed]
    folded(call, close)
    assert call.state is CallState.CLOSED
    with pytest.raises(InvalidTransition, match="only an open call can close"):
        call.close(AFTER_DEADLINE)


def test_a_call_that_was_never_planned_takes_nothing() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    with pytest.raises(InvalidTransition, match="no call for topics for forum guandi-2026-10"):
        call.open(IN_CALL)
    with pytest.raises(InvalidTransition, match="no call for topics"):
        submitted(call, "t1")


def test_stream_ids() -> None:
    assert call_stream_id("guandi", "f:1") == "call:guandi:f:1"
    assert CallForTopics("call:guandi:f:1").forum_id == "f:1"
    assert Topic(topic_stream_id("t1")).topic_id == "t1"
    with pytest.raises(ValueError, match="must not contain"):
        call_stream_id("a:b", "f")
    with pytest.raises(ValueError, match="not a call stream id"):
        CallForTopics("topic:t1")
    with pytest.raises(ValueError, match="not a topic stream id"):
        Topic("t1")


# -- submission --------------------------------------------------------------------------------


def test_a_village_secretary_submits_a_topic_for_their_village() -> None:
    call = open_call()
    topic = Topic(topic_stream_id("t1"))
    events = topic.submit(
        call,
        WANG,
        "  特殊党员管理  ",
        "流动党员长期不参加组织生活",
        "member_management",
        ["v01", "v02", "v01"],
        IN_CALL,
    )
    assert events == [
        ev.TopicSubmitted(
            topic_id="t1",
            township_id=TOWNSHIP,
            forum_id=FORUM,
            village_ids=["v01", "v02"],
            submitter_ids=["p-wang"],
            title="特殊党员管理",
            description="流动党员长期不参加组织生活",
            category="member_management",
            submitted_by="p-wang",
            submitter_role="village_secretary",
            submitter_village_id="v01",
            submitted_at=IN_CALL,
        )
    ]
    folded(topic, events)
    assert topic.state is TopicState.SUBMITTED
    assert topic.submitter_ids == ["p-wang"]


def test_a_station_submits_township_wide_topics_about_any_villages_or_none() -> None:
    call = open_call()
    topic = submitted(call, "t1", STATION_HEAD, ("v02", "v09"))
    assert topic.sources[0].station_id == "nongjingzhan"
    assert topic.sources[0].submitter_role == "station_head"
    township_wide = submitted(call, "t2", STATION_HEAD, ())
    assert township_wide.village_ids == []
    with pytest.raises(DomainError, match="at least one village") as refused:
        submitted(call, "t3", WANG, ())
    assert refused.value.field == "village_ids"


def test_a_village_secretary_cannot_submit_a_topic_that_leaves_out_their_village() -> None:
    with pytest.raises(Forbidden, match="include village v01") as refused:
        submitted(open_call(), "t1", WANG, ("v02",))
    assert refused.value.field == "village_ids"


@pytest.mark.parametrize(
    ("title", "description", "category", "villages", "field"),
    [
        ("   ", "d", "member_management", ("v01",), "title"),
        ("议" * 101, "d", "member_management", ("v01",), "title"),
        ("t", "  ", "member_management", ("v01",), "description"),
        ("t", "d", "sports", ("v01",), "category"),
        ("t", "d", "member_management", (" ",), "village_ids"),
    ],
)
def test_submissions_with_bad_values_are_refused_naming_the_field(
    title: str, description: str, category: str, villages: tuple[str, ...], field: str
) -> None:
    topic = Topic(topic_stream_id("t1"))
    with pytest.raises(DomainError) as refused:
        topic.submit(open_call(), WANG, title, description, category, villages, IN_CALL)
    assert refused.value.status == 422
    assert refused.value.field == field


def test_a_title_of_100_characters_and_a_township_category_are_accepted() -> None:
    topic = Topic(topic_stream_id("t1"))
    events = topic.submit(
        open_call(),
        WANG,
        "议" * 100,
        "d",
        "ecological_farming",
        ["v01"],
        IN_CALL,
        extra_categories={"ecological_farming"},
    )
    assert isinstance(events[0], ev.TopicSubmitted)
    assert events[0].category == "ecological_farming"


def test_categories_are_the_eleven_of_the_reports() -> None:
    assert len(Category) == 11
    assert check_category("land_acquisition_demolition") == "land_acquisition_demolition"
    with pytest.raises(DomainError, match="unknown category 'sports'; use one of: village_gov"):
        check_category("sports")


# -- a township's own categories --------------------------------------------------------------


def township_categories(*added: tuple[str, str]) -> TownshipCategories:
    categories = TownshipCategories(categories_stream_id(TOWNSHIP))
    for code, label in added:
        folded(categories, categories.add(code, label, OFFICE, IN_CALL))
    return categories


def test_the_office_adds_a_category_the_townships_topics_may_use() -> None:
    categories = township_categories()
    (added,) = categories.add("mobile_member_certificates", " 流动党员活动证 ", OFFICE, IN_CALL)
    assert added == ev.CategoryAdded(
        township_id=TOWNSHIP,
        code="mobile_member_certificates",
        label="流动党员活动证",
        added_by=OFFICE,
        added_at=IN_CALL,
    )
    folded(categories, [added])
    assert categories.codes == {"mobile_member_certificates"}
    assert categories.labels == {"mobile_member_certificates": "流动党员活动证"}

    topic = Topic(topic_stream_id("t1"))
    (event,) = topic.submit(
        open_call(),
        WANG,
        "流动党员活动证发放",
        "外出党员未领活动证",
        "mobile_member_certificates",
        ["v01"],
        IN_CALL,
        extra_categories=categories.codes,
    )
    assert isinstance(event, ev.TopicSubmitted)
    assert event.category == "mobile_member_certificates"


def test_adding_a_category_again_as_it_is_changes_nothing() -> None:
    categories = township_categories(("mobile_member_certificates", "流动党员活动证"))
    assert categories.add("mobile_member_certificates", "流动党员活动证 ", OFFICE, IN_CALL) == []


def test_a_category_keeps_its_label() -> None:
    categories = township_categories(("mobile_member_certificates", "流动党员活动证"))
    with pytest.raises(InvalidTransition, match="labelled '流动党员活动证'") as refused:
        categories.add("mobile_member_certificates", "党员证", OFFICE, IN_CALL)
    assert (refused.value.status, refused.value.field) == (409, "code")


@pytest.mark.parametrize(
    "code", ["", "Mobile", "1st_category", "mobile-members", "流动党员", "a" * 65, "mobile\n"]
)
def test_a_code_that_is_not_snake_case_is_refused(code: str) -> None:
    with pytest.raises(DomainError, match="lower-case letters") as refused:
        township_categories().add(code, "流动党员活动证", OFFICE, IN_CALL)
    assert (refused.value.status, refused.value.field) == (422, "code")


def test_a_code_of_a_built_in_category_is_refused() -> None:
    with pytest.raises(DomainError, match="member_management is a built-in") as refused:
        township_categories().add("member_management", "党员管理", OFFICE, IN_CALL)
    assert (refused.value.status, refused.value.field) == (422, "code")


def test_a_category_needs_a_label() -> None:
    with pytest.raises(DomainError, match="the label is missing") as refused:
        township_categories().add("mobile_member_certificates", "  ", OFFICE, IN_CALL)
    assert (refused.value.status, refused.value.field) == (422, "label")


def test_categories_streams_are_per_township() -> None:
    assert TownshipCategories(categories_stream_id("guandi")).township_id == "guandi"
    with pytest.raises(ValueError, match="must not contain ':'"):
        categories_stream_id("guandi:x")
    with pytest.raises(ValueError, match="not a categories stream id"):
        TownshipCategories("topic:t1")


def test_a_submission_before_the_call_opens_is_refused() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    folded(call, call.schedule(FORUM_DATE, at(dt.date(2026, 10, 1))))
    with pytest.raises(InvalidTransition, match="opens at 2026-10-20 00:00; submit the topic then"):
        submitted(call, "t1", now=at(dt.date(2026, 10, 19)))


def test_a_submission_after_the_deadline_is_refused_naming_the_deadline() -> None:
    call = open_call()
    message = (
        r"closed at 2026-10-23 17:30 \(Asia/Shanghai\); submit the topic to the township's next "
        r"call, which opens 10 days before its next forum"
    )
    # Refused from the deadline on, even before the closing timer has recorded it...
    with pytest.raises(InvalidTransition, match=message) as refused:
        submitted(call, "t1", now=at(dt.date(2026, 10, 23), 17, 30))
    assert refused.value.status == 409
    # ...and after.
    with pytest.raises(InvalidTransition, match=message):
        submitted(closed(call), "t1", now=AFTER_DEADLINE)


def test_one_minute_before_the_deadline_a_submission_is_accepted() -> None:
    topic = submitted(open_call(), "t1", now=at(dt.date(2026, 10, 23), 17, 29))
    assert topic.state is TopicState.SUBMITTED


def test_a_call_planned_after_its_deadline_takes_no_submission() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    folded(call, call.schedule(FORUM_DATE, at(dt.date(2026, 10, 26))))
    assert call.state is CallState.OPEN
    with pytest.raises(InvalidTransition, match="closed at 2026-10-23 17:30"):
        submitted(call, "t1", now=at(dt.date(2026, 10, 26)))


def test_a_topic_is_submitted_once() -> None:
    call = open_call()
    topic = submitted(call, "t1")
    with pytest.raises(InvalidTransition, match="already been submitted"):
        topic.submit(call, WANG, "t", "d", "member_management", ["v01"], IN_CALL)


# -- revise, withdraw, support ---------------------------------------------------------------


def test_the_submitter_revises_while_the_call_is_open() -> None:
    call = open_call()
    topic = submitted(call, "t1")
    events = topic.revise(
        call,
        WANG,
        IN_CALL,
        title="流动党员管理",
        village_ids=["v01", "v04"],
        category="five_reforms",
    )
    assert events == [
        ev.TopicRevised(
            topic_id="t1",
            township_id=TOWNSHIP,
            forum_id=FORUM,
            village_ids=["v01", "v04"],
            submitter_ids=["p-wang"],
            title="流动党员管理",
            description="流动党员长期不参加组织生活",
            category="five_reforms",
            revised_by="p-wang",
            revised_at=IN_CALL,
        )
    ]
    folded(topic, events)
    assert (topic.title, topic.category, topic.village_ids) == (
        "流动党员管理",
        "five_reforms",
        ["v01", "v04"],
    )


def test_revisions_are_refused_to_others_after_the_deadline_and_without_changes() -> None:
    call = open_call()
    topic = submitted(call, "t1")
    with pytest.raises(Forbidden, match="only the submitter of topic t1 can revise it"):
        topic.revise(call, LI, IN_CALL, title="x")
    with pytest.raises(InvalidTransition, match="closed at 2026-10-23 17:30"):
        topic.revise(call, WANG, AFTER_DEADLINE, title="x")
    with pytest.raises(DomainError, match="nothing to revise"):
        topic.revise(call, WANG, IN_CALL)
    with pytest.raises(Forbidden, match="include village v01"):
        topic.revise(call, WANG, IN_CALL, village_ids=["v02"])
    with pytest.raises(DomainError) as refused:
        topic.revise(call, WANG, IN_CALL, title="")
    assert refused.value.field == "title"


def test_a_shortlisted_topic_is_no_longer_the_submitters_to_revise_or_withdraw() -> None:
    call = open_call()
    topic = shortlisted(submitted(call, "t1"))
    with pytest.raises(InvalidTransition, match=r"cannot revise topic t1 .*on the committee's"):
        topic.revise(call, WANG, IN_CALL, title="x")
    with pytest.raises(InvalidTransition, match="cannot withdraw topic t1"):
        topic.withdraw(call, "p-wang", IN_CALL)


def test_the_submitter_withdraws_while_the_call_is_open() -> None:
    call = open_call()
    topic = submitted(call, "t1")
    with pytest.raises(Forbidden, match="only the submitter"):
        topic.withdraw(call, "p-li", IN_CALL)
    with pytest.raises(InvalidTransition, match="closed at 2026-10-23 17:30"):
        topic.withdraw(call, "p-wang", AFTER_DEADLINE)
    events = topic.withdraw(call, "p-wang", IN_CALL, reason=" 村里已解决 ")
    assert isinstance(events[0], ev.TopicWithdrawn)
    assert events[0].reason == "村里已解决"
    folded(topic, events)
    assert topic.state is TopicState.WITHDRAWN
    with pytest.raises(InvalidTransition, match="withdrawn by its submitter"):
        topic.withdraw(call, "p-wang", IN_CALL)


def test_acting_on_a_topic_that_does_not_exist_is_not_found() -> None:
    with pytest.raises(NotFound, match="there is no topic t9"):
        Topic(topic_stream_id("t9")).shortlist(OFFICE, IN_CALL)


def test_other_cadres_support_a_topic_once() -> None:
    topic = submitted(open_call(), "t1")
    events = topic.support("p-li", "v02", IN_CALL)
    assert isinstance(events[0], ev.TopicSupported)
    folded(topic, events)
    assert [s.person_id for s in topic.supporters] == ["p-li"]
    with pytest.raises(InvalidTransition, match="p-li already supports topic t1"):
        topic.support("p-li", "v02", IN_CALL)
    with pytest.raises(InvalidTransition, match="submitter need not support"):
        topic.support("p-wang", "v01", IN_CALL)


# -- consolidation -----------------------------------------------------------------------------


def test_a_merge_keeps_the_sources_supporters_and_villages_of_every_merged_topic() -> None:
    call = open_call()
    survivor = submitted(call, "t1")
    folded(survivor, survivor.support("p-zhao", "v03", IN_CALL))
    duplicate = submitted(call, "t2", LI, ("v02",))
    folded(duplicate, duplicate.support("p-zhou", "v05", IN_CALL))
    # A supporter of one who submitted the other is a source, not also a supporter.
    folded(duplicate, duplicate.support("p-wang", "v01", IN_CALL))
    third = submitted(call, "t3", STATION_HEAD, ("v03",))

    events = merge_topics(survivor, [duplicate, third], OFFICE, AFTER_DEADLINE)
    assert set(events) == {"topic:t1", "topic:t2", "topic:t3"}
    merged = events["topic:t1"][0]
    assert isinstance(merged, ev.TopicsMerged)
    assert merged.merged_topic_ids == ["t2", "t3"]
    assert merged.submitter_ids == ["p-wang", "p-li", "p-sun"]
    assert merged.village_ids == ["v01", "v02", "v03"]
    assert [(s.topic_id, s.submitted_by) for s in merged.sources] == [
        ("t1", "p-wang"),
        ("t2", "p-li"),
        ("t3", "p-sun"),
    ]
    assert [s.person_id for s in merged.supporters] == ["p-zhao", "p-zhou"]
    assert events["topic:t2"] == [
        ev.TopicMergedInto(
            topic_id="t2",
            township_id=TOWNSHIP,
            forum_id=FORUM,
            village_ids=["v02"],
            submitter_ids=["p-li"],
            merged_into="t1",
            merged_by=OFFICE,
            merged_at=AFTER_DEADLINE,
        )
    ]

    fold_all(events, survivor, duplicate, third)
    assert survivor.state is TopicState.SUBMITTED
    assert survivor.submitter_ids == ["p-wang", "p-li", "p-sun"]
    assert survivor.merged_topic_ids == ["t2", "t3"]
    assert duplicate.state is TopicState.MERGED
    assert duplicate.merged_into == "t1"
    # The survivor now holds other villages' submissions: its submitter no longer acts alone.
    with pytest.raises(InvalidTransition, match=r"also carries topics t2, t3 .* ask the office"):
        survivor.withdraw(call, "p-wang", IN_CALL)
    with pytest.raises(InvalidTransition, match="merged into topic t1; act on that topic"):
        duplicate.shortlist(OFFICE, AFTER_DEADLINE)


def test_topics_of_two_townships_cannot_be_merged() -> None:
    ours = submitted(open_call(), "t1")
    theirs = submitted(open_call(township="dazhangjia"), "t2")
    with pytest.raises(DomainError, match="only topics of the same township") as refused:
        merge_topics(ours, [theirs], OFFICE, AFTER_DEADLINE)
    assert refused.value.status == 422
    assert refused.value.field == "merged_topic_ids"


def test_topics_of_two_calls_cannot_be_merged() -> None:
    ours = submitted(open_call(), "t1")
    later = submitted(open_call(NEXT_FORUM, NEXT_FORUM_DATE), "t2", now=at(dt.date(2026, 11, 18)))
    with pytest.raises(DomainError, match="only topics of the same call"):
        merge_topics(ours, [later], OFFICE, AFTER_DEADLINE)


def test_merges_need_live_topics_each_named_once() -> None:
    call = open_call()
    survivor = submitted(call, "t1")
    other = submitted(call, "t2", LI, ("v02",))
    with pytest.raises(DomainError, match="at least one topic"):
        merge_topics(survivor, [], OFFICE, AFTER_DEADLINE)
    with pytest.raises(DomainError, match="named once"):
        merge_topics(survivor, [other, other], OFFICE, AFTER_DEADLINE)
    with pytest.raises(DomainError, match="must not be the surviving topic"):
        merge_topics(survivor, [survivor], OFFICE, AFTER_DEADLINE)
    withdrawn = submitted(call, "t3")
    folded(withdrawn, withdrawn.withdraw(call, "p-wang", IN_CALL))
    with pytest.raises(InvalidTransition, match=r"cannot merge into topic t3 .* withdrawn"):
        merge_topics(withdrawn, [other], OFFICE, AFTER_DEADLINE)
    with pytest.raises(InvalidTransition, match=r"cannot merge topic t3 .* withdrawn"):
        merge_topics(survivor, [withdrawn], OFFICE, AFTER_DEADLINE)


def test_the_office_shortlists_a_submitted_topic_once() -> None:
    topic = submitted(open_call(), "t1")
    events = topic.shortlist(OFFICE, AFTER_DEADLINE)
    assert isinstance(events[0], ev.TopicShortlisted)
    folded(topic, events)
    assert topic.state is TopicState.SHORTLISTED
    with pytest.raises(InvalidTransition, match="already on the committee's shortlist"):
        topic.shortlist(OFFICE, AFTER_DEADLINE)


def test_the_office_recategorises_before_selection() -> None:
    topic = shortlisted(submitted(open_call(), "t1"))
    events = topic.recategorise("weak_organisations", OFFICE, AFTER_DEADLINE)
    assert isinstance(events[0], ev.TopicRecategorised)
    assert (events[0].category, events[0].previous_category) == (
        "weak_organisations",
        "member_management",
    )
    folded(topic, events)
    assert topic.category == "weak_organisations"
    with pytest.raises(DomainError, match="already in category weak_organisations"):
        topic.recategorise("weak_organisations", OFFICE, AFTER_DEADLINE)
    with pytest.raises(DomainError, match="unknown category"):
        topic.recategorise("sports", OFFICE, AFTER_DEADLINE)


# -- selection ---------------------------------------------------------------------------------


def shortlist_of_four(call: CallForTopics) -> list[Topic]:
    return [
        shortlisted(submitted(call, "t1", title="特殊党员管理办法")),
        shortlisted(submitted(call, "t2", LI, ("v02",), category="land_acquisition_demolition")),
        shortlisted(submitted(call, "t3", ZHAO, ("v03",), category="disputes_petitions")),
        submitted(call, "t4", STATION_HEAD, ("v01",), category="collective_economy"),
    ]


def test_the_committee_selects_one_topic_and_disposes_of_the_rest() -> None:
    call = open_call()
    topics = shortlist_of_four(call)
    chosen, deferred, referred, declined = topics
    events = select_topic(
        call,
        chosen,
        topics,
        {"t2": Defer(), "t3": Refer("司法所"), "t4": Decline("村里自行解决")},
        COMMITTEE,
        AFTER_DEADLINE,
    )
    assert events["topic:t1"] == [
        ev.TopicSelected(
            topic_id="t1",
            township_id=TOWNSHIP,
            forum_id=FORUM,
            village_ids=["v01"],
            submitter_ids=["p-wang"],
            title="特殊党员管理办法",
            description="流动党员长期不参加组织生活",
            category="member_management",
            selected_by=COMMITTEE,
            selected_at=AFTER_DEADLINE,
        )
    ]
    # The closing timer had not run yet: selecting closes the call first.
    assert [type(e) for e in events[call.id]] == [
        ev.CallForTopicsClosed,
        ev.CallForTopicsDecided,
    ]
    decided = events[call.id][1]
    assert isinstance(decided, ev.CallForTopicsDecided)
    assert decided.selected_topic_id == "t1"
    assert (decided.deferred_topic_ids, decided.referred_topic_ids, decided.declined_topic_ids) == (
        ["t2"],
        ["t3"],
        ["t4"],
    )
    fold_all(events, call, *topics)
    assert call.state is CallState.DECIDED
    assert call.selected_topic_id == "t1"
    assert [t.state for t in topics] == [
        TopicState.SELECTED,
        TopicState.DEFERRED,
        TopicState.REFERRED,
        TopicState.DECLINED,
    ]
    assert referred.department == "司法所"
    assert declined.decline_reason == "村里自行解决"
    assert deferred.forum_id == FORUM
    with pytest.raises(InvalidTransition, match=r"cannot re-categorise topic t1 .* selected"):
        chosen.recategorise("five_reforms", OFFICE, AFTER_DEADLINE)


def test_selecting_a_second_topic_for_a_forum_is_refused() -> None:
    call = open_call()
    topics = shortlist_of_four(call)
    closed(call)
    dispositions = {"t2": Defer(), "t3": Defer(), "t4": Defer()}
    events = select_topic(call, topics[0], topics, dispositions, COMMITTEE, AFTER_DEADLINE)
    assert [type(e) for e in events[call.id]] == [ev.CallForTopicsDecided]
    fold_all(events, call, *topics)
    with pytest.raises(InvalidTransition, match=r"already has its topic \(t1\)") as refused:
        select_topic(call, topics[1], topics, {}, COMMITTEE, AFTER_DEADLINE)
    assert refused.value.status == 409


def test_selecting_a_withdrawn_topic_is_refused() -> None:
    call = open_call()
    topic = submitted(call, "t1")
    folded(topic, topic.withdraw(call, "p-wang", IN_CALL))
    with pytest.raises(InvalidTransition, match=r"cannot select topic t1 .* withdrawn"):
        select_topic(call, topic, [], {}, COMMITTEE, AFTER_DEADLINE)


def test_selecting_a_merged_or_unshortlisted_topic_is_refused() -> None:
    call = open_call()
    survivor = shortlisted(submitted(call, "t1"))
    duplicate = shortlisted(submitted(call, "t2", LI, ("v02",)))
    fold_all(merge_topics(survivor, [duplicate], OFFICE, AFTER_DEADLINE), survivor, duplicate)
    with pytest.raises(InvalidTransition, match="merged into topic t1"):
        select_topic(call, duplicate, [survivor], {"t1": Defer()}, COMMITTEE, AFTER_DEADLINE)
    fresh = submitted(call, "t3")
    with pytest.raises(InvalidTransition, match="not shortlisted; the party-building office"):
        select_topic(call, fresh, [survivor], {"t1": Defer()}, COMMITTEE, AFTER_DEADLINE)


def test_selection_without_a_disposition_for_every_other_topic_is_refused() -> None:
    call = open_call()
    topics = shortlist_of_four(call)
    with pytest.raises(DomainError, match="disposition") as refused:
        select_topic(call, topics[0], topics, {"t3": Defer()}, COMMITTEE, AFTER_DEADLINE)
    assert refused.value.status == 422
    assert refused.value.field == "dispositions"
    # Both the shortlisted t2 and the never-shortlisted t4 need an answer.
    assert "t2 «特殊党员管理»" in refused.value.message
    assert "t4" in refused.value.message
    assert "t3" not in refused.value.message


def test_dispositions_for_topics_not_undecided_in_the_call_are_refused() -> None:
    call = open_call()
    chosen = shortlisted(submitted(call, "t1"))
    with pytest.raises(DomainError, match="no disposition is needed for t1, t9"):
        select_topic(
            call, chosen, [chosen], {"t1": Defer(), "t9": Defer()}, COMMITTEE, AFTER_DEADLINE
        )


@pytest.mark.parametrize(
    ("disposition", "field"),
    [(Refer("  "), "dispositions.t2.department"), (Decline(""), "dispositions.t2.reason")],
)
def test_referral_needs_a_department_and_declining_a_reason(
    disposition: Refer | Decline, field: str
) -> None:
    call = open_call()
    chosen, other = shortlisted(submitted(call, "t1")), shortlisted(submitted(call, "t2"))
    with pytest.raises(DomainError) as refused:
        select_topic(call, chosen, [other], {"t2": disposition}, COMMITTEE, AFTER_DEADLINE)
    assert refused.value.field == field


def test_the_committee_selects_only_after_the_deadline() -> None:
    call = open_call()
    chosen = shortlisted(submitted(call, "t1"))
    with pytest.raises(InvalidTransition, match="open until 2026-10-23 17:30; select the topic"):
        select_topic(call, chosen, [], {}, COMMITTEE, IN_CALL)


def test_a_topic_of_another_call_cannot_be_selected() -> None:
    call = open_call()
    elsewhere = shortlisted(submitted(open_call(township="dazhangjia"), "t1"))
    with pytest.raises(DomainError, match="not in the call for topics of forum") as refused:
        select_topic(call, elsewhere, [], {}, COMMITTEE, AFTER_DEADLINE)
    assert refused.value.field == "topic_id"


# -- carry-over and resolution -------------------------------------------------------------------


def decided_call_with_deferred_topic() -> tuple[CallForTopics, Topic, Topic]:
    call = open_call()
    chosen = shortlisted(submitted(call, "t1"))
    deferred = shortlisted(submitted(call, "t2", LI, ("v02",)))
    fold_all(
        select_topic(call, chosen, [deferred], {"t2": Defer()}, COMMITTEE, AFTER_DEADLINE),
        call,
        chosen,
        deferred,
    )
    return call, chosen, deferred


def test_a_deferred_topic_is_carried_into_the_next_call_and_can_be_selected_there() -> None:
    _, _, deferred = decided_call_with_deferred_topic()
    next_call = open_call(NEXT_FORUM, NEXT_FORUM_DATE)
    opened = at(dt.date(2026, 11, 17), 0)
    events = deferred.carry_over(next_call, opened)
    assert events == [
        ev.TopicCarriedOver(
            topic_id="t2",
            township_id=TOWNSHIP,
            forum_id=NEXT_FORUM,
            village_ids=["v02"],
            submitter_ids=["p-li"],
            from_forum_id=FORUM,
            carried_at=opened,
        )
    ]
    folded(deferred, events)
    assert deferred.state is TopicState.SUBMITTED
    assert deferred.forum_id == NEXT_FORUM
    assert deferred.carried_over_from == [FORUM]
    # Submitted again: its submitter may revise it while the new call is open.
    folded(deferred, deferred.revise(next_call, LI, opened, title="征地拆迁补偿"))
    shortlisted(deferred)
    events_next = select_topic(next_call, deferred, [], {}, COMMITTEE, at(dt.date(2026, 11, 25)))
    selected = events_next["topic:t2"][0]
    assert isinstance(selected, ev.TopicSelected)
    assert (selected.forum_id, selected.title) == (NEXT_FORUM, "征地拆迁补偿")


def test_carry_over_needs_a_deferred_topic_and_the_townships_next_open_call() -> None:
    call, chosen, deferred = decided_call_with_deferred_topic()
    next_call = open_call(NEXT_FORUM, NEXT_FORUM_DATE)
    with pytest.raises(InvalidTransition, match="cannot carry over topic t1"):
        chosen.carry_over(next_call, AFTER_DEADLINE)
    with pytest.raises(DomainError, match="carry it into the township's next call"):
        deferred.carry_over(call, AFTER_DEADLINE)
    with pytest.raises(DomainError, match="belongs to township guandi"):
        deferred.carry_over(
            open_call(NEXT_FORUM, NEXT_FORUM_DATE, township="dazhangjia"), AFTER_DEADLINE
        )
    scheduled = CallForTopics(call_stream_id(TOWNSHIP, NEXT_FORUM))
    folded(scheduled, scheduled.schedule(NEXT_FORUM_DATE, AFTER_DEADLINE))
    with pytest.raises(InvalidTransition, match=r"once it has opened .* is scheduled"):
        deferred.carry_over(scheduled, AFTER_DEADLINE)


# -- referred topics ------------------------------------------------------------------------


def referred_topic() -> Topic:
    call = open_call()
    chosen, other = shortlisted(submitted(call, "t1")), submitted(call, "t2", LI, ("v02",))
    closed(call)
    events = select_topic(
        call, chosen, [other], {"t2": Refer("县信访局")}, COMMITTEE, AFTER_DEADLINE
    )
    fold_all(events, call, chosen, other)
    return other


def test_the_department_accepts_then_reports_a_referred_topic_done() -> None:
    topic = referred_topic()
    with pytest.raises(Forbidden, match="only that department answers it"):
        topic.answer_referral({"县民政局"}, "accepted", "", "p-min", AFTER_DEADLINE)
    folded(topic, topic.answer_referral({"县信访局"}, "accepted", "", "p-xin", AFTER_DEADLINE))
    assert (topic.state, topic.referral_answer) == (TopicState.REFERRED, "accepted")
    with pytest.raises(InvalidTransition, match="already answered"):
        topic.answer_referral({"县信访局"}, "accepted", "", "p-xin", AFTER_DEADLINE)
    with pytest.raises(DomainError) as refused:
        topic.answer_referral({"县信访局"}, "done", "  ", "p-xin", AFTER_DEADLINE)
    assert refused.value.field == "note"
    done = topic.answer_referral({"县信访局"}, "done", "已答复当事人", "p-xin", AFTER_DEADLINE)
    assert isinstance(done[0], ev.TopicReferralAnswered) and done[0].department == "县信访局"


def test_a_returned_referral_goes_to_the_townships_next_call() -> None:
    topic = referred_topic()
    folded(
        topic, topic.answer_referral({"县信访局"}, "returned", "属村务", "p-xin", AFTER_DEADLINE)
    )
    assert topic.state is TopicState.DEFERRED
    next_call = open_call(NEXT_FORUM, NEXT_FORUM_DATE)
    folded(topic, topic.carry_over(next_call, at(dt.date(2026, 11, 17))))
    assert topic.state is TopicState.SUBMITTED
    with pytest.raises(InvalidTransition, match="cannot answer the referral of topic t2"):
        topic.answer_referral({"县信访局"}, "done", "x", "p-xin", AFTER_DEADLINE)


# -- postponed and cancelled forums -------------------------------------------------------------


def test_a_postponed_forum_moves_its_scheduled_call() -> None:
    call = CallForTopics(call_stream_id(TOWNSHIP, FORUM))
    folded(call, call.schedule(FORUM_DATE, at(dt.date(2026, 9, 28))))
    moved = call.reschedule(NEXT_FORUM_DATE, "县委巡察", at(dt.date(2026, 10, 15)))
    assert [type(e) for e in moved] == [ev.CallForTopicsRescheduled]
    folded(call, moved)
    assert call.times == CallTimes.for_forum(NEXT_FORUM_DATE)
    assert call.state is CallState.SCHEDULED
    # the old opening time no longer opens it
    with pytest.raises(InvalidTransition, match="opens at 2026-11-17 00:00"):
        call.open(at(dt.date(2026, 10, 20), 0))
    # the same postponement delivered again changes nothing
    assert call.reschedule(NEXT_FORUM_DATE, "县委巡察", at(dt.date(2026, 10, 16))) == []


def test_a_closed_call_opens_again_when_its_forum_is_postponed_past_a_new_deadline() -> None:
    call = closed(open_call())
    later = dt.date(2026, 11, 6)  # deadline moves to Fri 30 Oct 17:30, still ahead on the 27th
    moved = call.reschedule(later, "乡党委书记出差", at(dt.date(2026, 10, 27)))
    assert [type(e) for e in moved] == [ev.CallForTopicsRescheduled, ev.CallForTopicsOpened]
    assert isinstance(moved[0], ev.CallForTopicsRescheduled) and moved[0].reopens
    folded(call, moved)
    assert call.state is CallState.OPEN
    topic = submitted(call, "t9", now=at(dt.date(2026, 10, 28)))
    assert topic.state is TopicState.SUBMITTED


def test_an_open_call_brought_forward_keeps_open_until_its_new_deadline() -> None:
    call = open_call()
    earlier = dt.date(2026, 10, 28)
    moved = call.reschedule(earlier, "提前召开", IN_CALL)
    assert [type(e) for e in moved] == [ev.CallForTopicsRescheduled]
    folded(call, moved)
    assert call.state is CallState.OPEN
    assert call.times is not None
    assert call.times.closes_at == at(working_days_before(earlier, 5), 17, 30)


def test_a_cancelled_forum_returns_its_topics_to_the_next_call_with_their_history() -> None:
    call, chosen, deferred = decided_call_with_deferred_topic()
    assert chosen.state is TopicState.SELECTED
    cancelled_at = at(dt.date(2026, 10, 28))
    events = cancel_forum_call(call, [chosen, deferred], "疫情防控", cancelled_at)
    assert set(events) == {call.id, chosen.id}  # the deferred topic already waits elsewhere
    assert [type(e) for e in events[call.id]] == [ev.CallForTopicsCancelled]
    assert events[chosen.id] == [
        ev.TopicReturned(
            topic_id="t1",
            township_id=TOWNSHIP,
            forum_id=FORUM,
            village_ids=["v01"],
            submitter_ids=["p-wang"],
            reason="疫情防控",
            returned_at=cancelled_at,
        )
    ]
    fold_all(events, call, chosen)
    assert call.state is CallState.CANCELLED
    assert chosen.state is TopicState.DEFERRED
    # a second delivery returns nothing again
    assert cancel_forum_call(call, [chosen, deferred], "疫情防控", cancelled_at) == {}
    # the cancelled call takes nothing more, and the topic goes on to the next call
    with pytest.raises(InvalidTransition, match="was cancelled"):
        call.reschedule(NEXT_FORUM_DATE, "改期", cancelled_at)
    with pytest.raises(DomainError, match="carry it into the township's next call"):
        chosen.carry_over(call, cancelled_at)
    next_call = open_call(NEXT_FORUM, NEXT_FORUM_DATE)
    folded(chosen, chosen.carry_over(next_call, at(dt.date(2026, 11, 17))))
    assert (chosen.state, chosen.carried_over_from) == (TopicState.SUBMITTED, [FORUM])


def test_a_cancelled_open_call_refuses_submissions_and_returns_undecided_topics() -> None:
    call = open_call()
    topic = submitted(call, "t5")
    withdrawn = submitted(call, "t6", LI, ("v02",))
    folded(withdrawn, withdrawn.withdraw(call, LI.person_id, IN_CALL))
    events = cancel_forum_call(call, [topic, withdrawn], "暴雨", IN_CALL)
    assert set(events) == {call.id, topic.id}
    fold_all(events, call, topic)
    with pytest.raises(InvalidTransition, match="was cancelled"):
        submitted(call, "t7")


def test_the_selected_topic_is_resolved_for_its_forum_only() -> None:
    _, chosen, deferred = decided_call_with_deferred_topic()
    done = at(dt.date(2026, 12, 10))
    with pytest.raises(InvalidTransition, match="topic of forum guandi-2026-10, not of f-x"):
        chosen.resolve("f-x", done)
    with pytest.raises(InvalidTransition, match=r"cannot resolve topic t2 .* deferred"):
        deferred.resolve(FORUM, done)
    events = chosen.resolve(FORUM, done)
    assert isinstance(events[0], ev.TopicResolved)
    folded(chosen, events)
    assert chosen.state is TopicState.RESOLVED
    with pytest.raises(InvalidTransition, match="is resolved"):
        chosen.resolve(FORUM, done)


def test_a_topic_is_rebuilt_from_its_events() -> None:
    call = open_call()
    topic = Topic(topic_stream_id("t1"))
    commands: list[Callable[[], list[Event]]] = [
        lambda: topic.submit(call, WANG, "t", "d", "member_management", ["v01"], IN_CALL),
        lambda: topic.support("p-li", "v02", IN_CALL),
        lambda: topic.shortlist(OFFICE, AFTER_DEADLINE),
        lambda: topic.recategorise("five_reforms", OFFICE, AFTER_DEADLINE),
    ]
    history: list[Event] = []
    for command in commands:
        events = command()
        folded(topic, events)
        history += events
    rebuilt = Topic.fold(topic.id, history)
    assert vars(rebuilt) == vars(topic)
    assert rebuilt.version == 4


# -- a forum's work ----------------------------------------------------------------------------


def test_a_forum_is_done_when_every_expected_task_is_completed_in_any_order() -> None:
    ledger = ForumTaskLedger()
    ledger.complete(FORUM, "task-1")  # rectification reported before meetings told us
    assert not ledger.is_done(FORUM)
    ledger.expect(FORUM, ["task-1", "task-2"])
    assert ledger.outstanding(FORUM) == {"task-2"}
    assert not ledger.is_done(FORUM)
    ledger.complete(FORUM, "task-2")
    ledger.complete(FORUM, "task-2")  # delivered again
    assert ledger.is_done(FORUM)
    assert not ledger.is_done(NEXT_FORUM)


def test_a_forum_whose_resolutions_assign_no_task_is_done_once_they_are_known() -> None:
    ledger = ForumTaskLedger()
    ledger.expect(FORUM, [])
    assert ledger.is_done(FORUM)


# -- events ------------------------------------------------------------------------------------


def test_every_event_is_registered_under_the_topics_namespace() -> None:
    required = {
        "CallForTopicsOpened",
        "CallForTopicsClosed",
        "TopicSubmitted",
        "TopicRevised",
        "TopicWithdrawn",
        "TopicsMerged",
        "TopicShortlisted",
        "TopicRecategorised",
        "TopicSelected",
        "TopicDeferred",
        "TopicCarriedOver",
        "TopicReferred",
        "TopicDeclined",
        "TopicResolved",
        "IssueRaised",
        "IssueClaimed",
        "IssueProgressReported",
        "IssueClosed",
        "IssuePromoted",
        "CategoryAdded",
    }
    names = ev.registry.names()
    assert {f"cunzhi.topics.{name}" for name in required} <= set(names)
    assert all(name.startswith("cunzhi.topics.") for name in names)
    assert ev.SERVICE == "topics"
    assert {"forum_id", "township_id", "topic_id", "title", "category"} <= set(
        ev.TopicSelected.model_fields
    )


def test_events_survive_the_round_trip_through_their_payload() -> None:
    call = open_call()
    survivor, duplicate = submitted(call, "t1"), submitted(call, "t2", LI, ("v02",))
    merged = merge_topics(survivor, [duplicate], OFFICE, AFTER_DEADLINE)["topic:t1"][0]
    decoded = ev.registry.decode(merged.event_type, merged.schema_version, merged.to_payload())
    assert decoded == merged
