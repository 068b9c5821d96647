"""What notifications reads of the other services' events: tolerant readers, fields it uses.

Registered under the producers' type names and schema versions; ``reader_breaks`` checks them
against ``docs/events/<producer>/`` so a producer's change that would break us fails the suite.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import EventRegistry, Reader

topics = EventRegistry()
meetings = EventRegistry()


# -- topics ---------------------------------------------------------------------------------


@topics.register("cunzhi.topics.CallForTopicsOpened", version=1)
class CallForTopicsOpened(Reader):
    township_id: str
    forum_id: str
    forum_date: dt.date
    closes_at: dt.datetime


class TopicChange(Reader):
    topic_id: str
    township_id: str
    forum_id: str
    submitter_ids: list[str]


@topics.register("cunzhi.topics.TopicSubmitted", version=1)
class TopicSubmitted(TopicChange):
    title: str
    submitted_by: str
    submitter_village_id: str | None = None
    submitter_station_id: str | None = None


@topics.register("cunzhi.topics.TopicMergedInto", version=1)
class TopicMergedInto(TopicChange):
    merged_into: str


@topics.register("cunzhi.topics.TopicSelected", version=1)
class TopicSelected(TopicChange):
    title: str


@topics.register("cunzhi.topics.TopicDeferred", version=1)
class TopicDeferred(TopicChange):
    pass


@topics.register("cunzhi.topics.TopicReferred", version=1)
class TopicReferred(TopicChange):
    department: str


@topics.register("cunzhi.topics.TopicDeclined", version=1)
class TopicDeclined(TopicChange):
    reason: str


@topics.register("cunzhi.topics.TopicResolved", version=1)
class TopicResolved(TopicChange):
    pass


# -- meetings -------------------------------------------------------------------------------


class RosterMember(Reader):
    township_id: str
    person_id: str
    name: str


@meetings.register("cunzhi.meetings.RosterMemberAdded", version=1)
class RosterMemberAdded(RosterMember):
    role: str
    village_id: str | None = None
    phone: str | None = None


@meetings.register("cunzhi.meetings.RosterMemberUpdated", version=1)
class RosterMemberUpdated(RosterMember):
    role: str
    village_id: str | None = None
    phone: str | None = None


@meetings.register("cunzhi.meetings.RosterMemberRemoved", version=1)
class RosterMemberRemoved(RosterMember):
    pass


class Attendee(Reader):
    person_id: str
    name: str
    role: str
    village_id: str | None = None


@meetings.register("cunzhi.meetings.ForumNoticeIssued", version=1)
class ForumNoticeIssued(Reader):
    forum_id: str
    township_id: str
    number: int
    date: dt.date
    place: str
    topic_title: str
    attendees: tuple[Attendee, ...]


@meetings.register("cunzhi.meetings.ForumPostponed", version=1)
class ForumPostponed(Reader):
    forum_id: str
    township_id: str
    previous_date: dt.date
    date: dt.date
    reason: str
    attendees_to_inform: tuple[Attendee, ...] = ()


@meetings.register("cunzhi.meetings.ForumCancelled", version=1)
class ForumCancelled(Reader):
    forum_id: str
    township_id: str
    reason: str
    attendees_to_inform: tuple[Attendee, ...] = ()
