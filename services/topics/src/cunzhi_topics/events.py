"""Events the topics service publishes on ``cunzhi.topics.events``.

Four kinds of stream feed them: a township's call for topics for one forum (征集议题), each
topic from submission to resolution, each villager's speak-up issue (逢五说事) with its
claim (领办), and a township's own topic categories. Every event carries the ids its consumers
need (township, forum, topic, villages, submitters, village of an issue) so read models and
notifications never look anything up.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from cunzhi_platform.events import Event, EventRegistry
from pydantic import BaseModel, ConfigDict

SERVICE = "topics"
registry = EventRegistry()

SubmitterRole = Literal["village_secretary", "station_head"]
"""支部书记 for their own village, or 党建工作站 head for the villages of their station."""


class TopicSource(BaseModel):
    """One submission behind a topic (议题来源); a survivor of a merge keeps all of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic_id: str
    """The topic it was submitted as (after a merge, one of the merged topics)."""
    submitted_by: str
    submitter_role: SubmitterRole
    village_id: str | None = None
    station_id: str | None = None
    issue_id: str | None = None
    """The speak-up issue it was promoted from, if any."""


class TopicSupporter(BaseModel):
    """A cadre who backs a topic someone else submitted (附议)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    person_id: str
    village_id: str


# -- the call for topics (征集议题), stream ``call:{township_id}:{forum_id}`` -------------------


@registry.register("cunzhi.topics.CallForTopicsScheduled", version=1)
class CallForTopicsScheduled(Event):
    """A forum was planned; its call for topics will open at ``opens_at``."""

    township_id: str
    forum_id: str
    forum_date: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime


@registry.register("cunzhi.topics.CallForTopicsOpened", version=1)
class CallForTopicsOpened(Event):
    """The party-building office asks every station and village for topics (征集议题)."""

    township_id: str
    forum_id: str
    forum_date: dt.date
    opened_at: dt.datetime
    closes_at: dt.datetime


@registry.register("cunzhi.topics.CallForTopicsClosed", version=1)
class CallForTopicsClosed(Event):
    """The submission deadline passed; consolidation and selection follow."""

    township_id: str
    forum_id: str
    forum_date: dt.date
    closed_at: dt.datetime


@registry.register("cunzhi.topics.CallForTopicsDecided", version=1)
class CallForTopicsDecided(Event):
    """The township committee chose the forum's topic and disposed of the rest of the call."""

    township_id: str
    forum_id: str
    forum_date: dt.date
    selected_topic_id: str
    deferred_topic_ids: list[str]
    referred_topic_ids: list[str]
    declined_topic_ids: list[str]
    decided_by: str
    decided_at: dt.datetime


@registry.register("cunzhi.topics.CallForTopicsRescheduled", version=1)
class CallForTopicsRescheduled(Event):
    """The forum was postponed (or brought forward): the call's opening and deadline move with
    it. A call already closed whose new deadline is still ahead opens again."""

    township_id: str
    forum_id: str
    previous_forum_date: dt.date
    forum_date: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime
    reopens: bool
    """The call had closed and its new deadline is ahead: it is scheduled (or open) again."""
    reason: str
    rescheduled_at: dt.datetime


@registry.register("cunzhi.topics.CallForTopicsCancelled", version=1)
class CallForTopicsCancelled(Event):
    """The forum was cancelled: the call takes nothing more, and its topics go back to the
    township's next call (``TopicReturned``)."""

    township_id: str
    forum_id: str
    forum_date: dt.date
    reason: str
    cancelled_at: dt.datetime


# -- topics (议题), stream ``topic:{topic_id}`` ---------------------------------------------------


class TopicEvent(Event):
    """What every topic event carries: where the topic stands and whom it concerns."""

    topic_id: str
    township_id: str
    forum_id: str
    """The forum whose call the topic is in (changes when it is carried over)."""
    village_ids: list[str]
    submitter_ids: list[str]
    """Everyone who submitted it, merged submissions included: they are told of each change."""


@registry.register("cunzhi.topics.TopicSubmitted", version=1)
class TopicSubmitted(TopicEvent):
    """A village or station submitted a topic to the open call (报送议题)."""

    title: str
    description: str
    category: str
    submitted_by: str
    submitter_role: SubmitterRole
    submitter_village_id: str | None = None
    submitter_station_id: str | None = None
    source_issue_id: str | None = None
    submitted_at: dt.datetime


@registry.register("cunzhi.topics.TopicRevised", version=1)
class TopicRevised(TopicEvent):
    """The submitter changed the topic while the call was open; fields hold the new values."""

    title: str
    description: str
    category: str
    revised_by: str
    revised_at: dt.datetime


@registry.register("cunzhi.topics.TopicWithdrawn", version=1)
class TopicWithdrawn(TopicEvent):
    """The submitter took the topic back while the call was open."""

    withdrawn_by: str
    withdrawn_at: dt.datetime
    reason: str = ""


@registry.register("cunzhi.topics.TopicSupported", version=1)
class TopicSupported(TopicEvent):
    """Another cadre backs the topic (附议)."""

    supporter_id: str
    supporter_village_id: str
    supported_at: dt.datetime


@registry.register("cunzhi.topics.TopicsMerged", version=1)
class TopicsMerged(TopicEvent):
    """Duplicates were merged into this topic (合并议题); it now holds all their sources.

    ``village_ids``, ``submitter_ids``, ``sources`` and ``supporters`` are the unions after the
    merge.
    """

    merged_topic_ids: list[str]
    sources: list[TopicSource]
    supporters: list[TopicSupporter]
    merged_by: str
    merged_at: dt.datetime


@registry.register("cunzhi.topics.TopicMergedInto", version=1)
class TopicMergedInto(TopicEvent):
    """This topic was a duplicate; it lives on in ``merged_into``."""

    merged_into: str
    merged_by: str
    merged_at: dt.datetime


@registry.register("cunzhi.topics.TopicShortlisted", version=1)
class TopicShortlisted(TopicEvent):
    """The party-building office put the topic on the shortlist for the committee."""

    shortlisted_by: str
    shortlisted_at: dt.datetime


@registry.register("cunzhi.topics.TopicRecategorised", version=1)
class TopicRecategorised(TopicEvent):
    """The party-building office moved the topic to another category."""

    category: str
    previous_category: str
    recategorised_by: str
    recategorised_at: dt.datetime


@registry.register("cunzhi.topics.TopicSelected", version=1)
class TopicSelected(TopicEvent):
    """The township committee chose this topic for the forum (一次论坛解决一个问题)."""

    title: str
    description: str
    category: str
    selected_by: str
    selected_at: dt.datetime


@registry.register("cunzhi.topics.TopicDeferred", version=1)
class TopicDeferred(TopicEvent):
    """Not chosen this time; the topic goes into the township's next call."""

    deferred_by: str
    deferred_at: dt.datetime


@registry.register("cunzhi.topics.TopicReturned", version=1)
class TopicReturned(TopicEvent):
    """Its forum was cancelled: the topic (selected or still undecided) waits for the
    township's next call, where it is carried over with its history."""

    reason: str
    returned_at: dt.datetime


@registry.register("cunzhi.topics.TopicCarriedOver", version=1)
class TopicCarriedOver(TopicEvent):
    """A deferred topic entered the next call (``forum_id``) as submitted again."""

    from_forum_id: str
    carried_at: dt.datetime


@registry.register("cunzhi.topics.TopicReferred", version=1)
class TopicReferred(TopicEvent):
    """Handed to a department to deal with outside the forum."""

    department: str
    referred_by: str
    referred_at: dt.datetime


ReferralAnswer = Literal["accepted", "done", "returned"]


@registry.register("cunzhi.topics.TopicReferralAnswered", version=1)
class TopicReferralAnswered(TopicEvent):
    """The department a topic was referred to answers: it took the topic on (``accepted``),
    dealt with it (``done``), or gave it back (``returned``, to the township's next call)."""

    department: str
    answer: ReferralAnswer
    note: str
    answered_by: str
    answered_at: dt.datetime


@registry.register("cunzhi.topics.TopicDeclined", version=1)
class TopicDeclined(TopicEvent):
    """Not taken up, with the reason the submitter is given."""

    reason: str
    declined_by: str
    declined_at: dt.datetime


@registry.register("cunzhi.topics.TopicResolved", version=1)
class TopicResolved(TopicEvent):
    """The forum was held and every task its resolutions started is done (问题解决)."""

    resolved_at: dt.datetime


# -- speak-up issues (逢五说事) and their claims (领办), stream ``issue:{issue_id}`` ------------


class IssueEvent(Event):
    """What every issue event carries."""

    issue_id: str
    township_id: str
    village_id: str


@registry.register("cunzhi.topics.IssueRaised", version=1)
class IssueRaised(IssueEvent):
    """A village cadre recorded a villager's problem (有困难找组织) on the village's claim list.

    ``speak_up_day`` is the speak-up session that hears it: ``raised_on`` itself when that is a
    lunar 5th/15th/25th, otherwise the next one.
    """

    title: str
    description: str
    villager_name: str | None = None
    raised_by: str
    raised_on: dt.date
    speak_up_day: dt.date
    on_speak_up_day: bool


@registry.register("cunzhi.topics.IssueClaimed", version=1)
class IssueClaimed(IssueEvent):
    """A party member or cadre took the issue on (党员干部领办)."""

    claimant_id: str
    claimed_at: dt.datetime


@registry.register("cunzhi.topics.IssueProgressReported", version=1)
class IssueProgressReported(IssueEvent):
    """The claimant said how far the work has gone."""

    claimant_id: str
    note: str
    reported_at: dt.datetime


@registry.register("cunzhi.topics.IssueClosed", version=1)
class IssueClosed(IssueEvent):
    """The claimant finished the work (办结) and said what was done."""

    claimant_id: str
    outcome: str
    closed_at: dt.datetime


@registry.register("cunzhi.topics.IssuePromoted", version=1)
class IssuePromoted(IssueEvent):
    """The issue was too big for the village and became a topic of the open call."""

    topic_id: str
    forum_id: str
    claimant_id: str | None = None
    promoted_by: str
    promoted_at: dt.datetime


# -- a township's own topic categories (议题类别), stream ``categories:{township_id}`` -------


@registry.register("cunzhi.topics.CategoryAdded", version=1)
class CategoryAdded(Event):
    """The party-building office added a topic category (议题类别) of the township's own.

    From then on the township's topics may use ``code`` besides the built-in categories.
    """

    township_id: str
    code: str
    label: str
    """What people read, e.g. 流动党员活动证."""
    added_by: str
    added_at: dt.datetime
