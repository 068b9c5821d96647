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
    opened_at: dt.datetime
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


class IssueEvent(Reader):
    issue_id: str
    township_id: str
    village_id: str


@topics.register("cunzhi.topics.IssueRaised", version=1)
class IssueRaised(IssueEvent):
    title: str
    raised_on: dt.date


@topics.register("cunzhi.topics.IssueClaimed", version=1)
class IssueClaimed(IssueEvent):
    claimant_id: str


@topics.register("cunzhi.topics.IssueProgressReported", version=1)
class IssueProgressReported(IssueEvent):
    claimant_id: str
    note: str


@topics.register("cunzhi.topics.IssueClosed", version=1)
class IssueClosed(IssueEvent):
    claimant_id: str
    outcome: str


@topics.register("cunzhi.topics.IssuePromoted", version=1)
class IssuePromoted(IssueEvent):
    topic_id: str


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


# -- rectification --------------------------------------------------------------------------

rectification = EventRegistry()


class CampaignTownship(Reader):
    township_id: str


@rectification.register("cunzhi.rectification.CampaignOpened", version=1)
class CampaignOpened(Reader):
    """Which county a campaign and its townships belong to: the county its red lights and
    escalations are told to."""

    campaign_id: str
    county_id: str
    townships: list[CampaignTownship]


class Assignee(Reader):
    kind: str
    """``village`` (its secretary is told) or ``person``."""
    id: str
    name: str = ""


class TaskEvent(Reader):
    task_id: str
    township_id: str


@rectification.register("cunzhi.rectification.TaskAssigned", version=1)
class TaskAssigned(TaskEvent):
    assignee: Assignee
    title: str
    due_on: dt.date
    topic_id: str | None = None
    village_id: str | None = None


@rectification.register("cunzhi.rectification.TaskRescheduled", version=1)
class TaskRescheduled(TaskEvent):
    due_on: dt.date
    reason: str


@rectification.register("cunzhi.rectification.TaskProgressReported", version=1)
class TaskProgressReported(TaskEvent):
    percent: int
    note: str = ""


@rectification.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(TaskEvent):
    completed_on: dt.date


@rectification.register("cunzhi.rectification.TaskOverdue", version=1)
class TaskOverdue(TaskEvent):
    assignee: Assignee
    due_on: dt.date


@rectification.register("cunzhi.rectification.TaskEscalated", version=1)
class TaskEscalated(TaskEvent):
    level: str
    """``township`` or ``county``: whose desk the overdue task is now on (逐级督办)."""
    working_days_overdue: int
    due_on: dt.date
    campaign_id: str | None = None
    """A campaign's task: its county is the campaign's."""


@rectification.register("cunzhi.rectification.LightChanged", version=1)
class LightChanged(Reader):
    campaign_id: str
    village_id: str
    township_id: str
    light: str
    reason: str


class TeamMember(Reader):
    person_id: str
    name: str


@rectification.register("cunzhi.rectification.WorkTeamFormed", version=1)
class WorkTeamFormed(Reader):
    campaign_id: str
    team_id: str
    township_id: str
    village_ids: list[str]
    members: list[TeamMember]


class ReportEvent(Reader):
    """A cadence report of a village, or of a team (``weekly_on_duty``), for one period."""

    campaign_id: str
    subject_id: str
    """The team (``weekly_on_duty``) or the village whose report it is."""
    township_id: str
    village_ids: list[str]
    kind: str
    period: int


@rectification.register("cunzhi.rectification.ReportDue", version=1)
class ReportDue(ReportEvent):
    period_start: dt.date
    period_end: dt.date
    due_at: dt.datetime


@rectification.register("cunzhi.rectification.ReportLate", version=1)
class ReportLate(ReportEvent):
    due_at: dt.datetime


@rectification.register("cunzhi.rectification.ReportSubmitted", version=1)
class ReportSubmitted(ReportEvent):
    pass


@rectification.register("cunzhi.rectification.VerificationRequested", version=1)
class VerificationRequested(Reader):
    campaign_id: str
    county_id: str
    sources: list[str]
    """Whose opinions are asked: ``discipline`` (纪委), ``political_legal`` (政法委),
    ``petitions`` (信访)…"""
    village_ids: list[str]
    respond_by: dt.date
