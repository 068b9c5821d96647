"""Events the meetings service publishes on ``cunzhi.meetings.events``.

The monthly village cadre forum (乡村干部论坛) from plan to close, the township roster of its
default attendees, and the other recurring meetings: speak-up sessions (逢五说事) and the
quarterly contest of village heads (擂台比武).

Every event carries what its consumers need without looking anything up: the topics service
opens the call for topics on ``ForumPlanned`` and resolves the topic on ``ForumClosed``;
notifications tell attendees from ``ForumNoticeIssued``; rectification tracks the tasks of
``ResolutionAdopted``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from cunzhi_platform.events import Event, EventRegistry
from pydantic import BaseModel, ConfigDict, Field

SERVICE = "meetings"
registry = EventRegistry()

RosterRole = Literal["leadership", "middle_cadre", "village_secretary"]
"""领导班子 (township leadership team), 中层干部 (middle-level cadres), 村党支部书记."""

ForumMode = Literal["at_township", "field_visit"]
"""Held at the township, or a field visit to an advanced unit (外出参观)."""

AttendanceStatus = Literal["present", "absent", "late"]


class ValueObject(BaseModel):
    """A value nested in an event: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ExpertLecture(ValueObject):
    """专家讲课: an invited expert lectures on a subject."""

    kind: Literal["expert_lecture"] = "expert_lecture"
    expert_name: str
    affiliation: str
    subject: str


class ExchangeSpeaker(ValueObject):
    """A village party secretary who shares experience at the forum."""

    person_id: str
    name: str
    village_id: str


class GuestSpeaker(ValueObject):
    """An excellent party secretary from outside the township's roster who shares experience.

    优秀乡村两级党组织书记: the seed's come from other villages and counties (获嘉县,
    新乡县东大阳村), so they are named with their affiliation, not by a roster person id.
    """

    name: str
    affiliation: str


class ExperienceExchange(ValueObject):
    """交流经验: excellent village secretaries share their experience — the township's own
    (``speakers``, from its roster) and invited guests (``guests``)."""

    kind: Literal["experience_exchange"] = "experience_exchange"
    speakers: tuple[ExchangeSpeaker, ...]
    guests: tuple[GuestSpeaker, ...] = ()


class Discussion(ValueObject):
    """Face-to-face discussion of the forum's topic (座谈讨论)."""

    kind: Literal["discussion"] = "discussion"


Activity = Annotated[ExpertLecture | ExperienceExchange | Discussion, Field(discriminator="kind")]


class Attendee(ValueObject):
    """A person asked to attend: a roster member or an extra invitee of the forum.

    ``role`` is a roster role, or the free-text role an invitee was added with.
    """

    person_id: str
    name: str
    role: str
    village_id: str | None = None


class Attendance(ValueObject):
    """How one attendee attended; ``reason`` is required for ``absent``."""

    person_id: str
    name: str
    role: str
    village_id: str | None = None
    status: AttendanceStatus
    reason: str | None = None


class Policy(ValueObject):
    """A policy document issued by a resolution, e.g. 《关堤乡特殊党员管理办法》."""

    title: str
    document_number: str


class ForumTask(ValueObject):
    """Work a resolution assigns to a village or a person, tracked by rectification."""

    task_id: str
    assignee_village_id: str | None = None
    assignee_person_id: str | None = None
    description: str
    due_date: dt.date


class ContestParticipant(ValueObject):
    """A village and its head competing in the quarterly contest."""

    village_id: str
    head_name: str
    head_person_id: str | None = None


# --- roster -------------------------------------------------------------------------------


@registry.register("cunzhi.meetings.RosterMemberAdded", version=1)
class RosterMemberAdded(Event):
    """A person joins the township roster of default forum attendees."""

    township_id: str
    person_id: str
    name: str
    role: RosterRole
    village_id: str | None = None
    phone: str | None = None


@registry.register("cunzhi.meetings.RosterMemberUpdated", version=1)
class RosterMemberUpdated(Event):
    """A roster member's data changed; carries the whole new state."""

    township_id: str
    person_id: str
    name: str
    role: RosterRole
    village_id: str | None = None
    phone: str | None = None


@registry.register("cunzhi.meetings.RosterMemberRemoved", version=1)
class RosterMemberRemoved(Event):
    """A person leaves the roster (transferred, retired…)."""

    township_id: str
    person_id: str
    name: str
    reason: str


# --- forum --------------------------------------------------------------------------------


@registry.register("cunzhi.meetings.ForumPlanned", version=1)
class ForumPlanned(Event):
    """The township plans its n-th village cadre forum (乡村干部论坛); opens the call for topics."""

    forum_id: str
    township_id: str
    number: int
    date: dt.date
    place: str
    mode: ForumMode
    host_unit: str | None = None
    activities: tuple[Activity, ...]


@registry.register("cunzhi.meetings.ForumInviteeAdded", version=1)
class ForumInviteeAdded(Event):
    """Someone beyond the roster is invited to this forum (a work-team cadre, a guest…)."""

    forum_id: str
    township_id: str
    person_id: str
    name: str
    role: str
    village_id: str | None = None


@registry.register("cunzhi.meetings.ForumTopicSet", version=1)
class ForumTopicSet(Event):
    """The committee's selected topic (议题) became the forum's topic."""

    forum_id: str
    township_id: str
    topic_id: str
    title: str
    category: str


@registry.register("cunzhi.meetings.ForumNoticeIssued", version=1)
class ForumNoticeIssued(Event):
    """Every attendee is told date, place and topic, and asked to prepare remarks."""

    forum_id: str
    township_id: str
    number: int
    date: dt.date
    place: str
    mode: ForumMode
    host_unit: str | None = None
    topic_id: str
    topic_title: str
    attendees: tuple[Attendee, ...]
    prepare_remarks: Literal[True] = True
    automatic: bool
    issued_at: dt.datetime


@registry.register("cunzhi.meetings.RemarksPrepared", version=1)
class RemarksPrepared(Event):
    """An attendee handed in the remarks the notice asked for (做好发言准备); again replaces."""

    forum_id: str
    township_id: str
    person_id: str
    name: str
    summary: str
    prepared_at: dt.datetime


@registry.register("cunzhi.meetings.ForumPostponed", version=1)
class ForumPostponed(Event):
    """Moved to a new date; a notice already issued is void and will be issued again.

    ``attendees_to_inform`` are those told by the void notice (empty if none was issued).
    """

    forum_id: str
    township_id: str
    previous_date: dt.date
    date: dt.date
    reason: str
    attendees_to_inform: tuple[Attendee, ...] = ()


@registry.register("cunzhi.meetings.ForumCancelled", version=1)
class ForumCancelled(Event):
    """The forum will not take place; its number stays used.

    ``attendees_to_inform`` are those told by a notice (empty if none was issued).
    """

    forum_id: str
    township_id: str
    topic_id: str | None = None
    reason: str
    attendees_to_inform: tuple[Attendee, ...] = ()


@registry.register("cunzhi.meetings.ForumHeld", version=1)
class ForumHeld(Event):
    """The forum took place: who attended, who spoke, the minutes, the activities held."""

    forum_id: str
    township_id: str
    number: int
    date: dt.date
    mode: ForumMode
    host_unit: str | None = None
    topic_id: str
    topic_title: str
    activities: tuple[Activity, ...]
    attendance: tuple[Attendance, ...]
    speakers: tuple[str, ...]
    minutes: str


@registry.register("cunzhi.meetings.ResolutionAdopted", version=1)
class ResolutionAdopted(Event):
    """A decision of the forum: policies issued and tasks assigned with due dates."""

    resolution_id: str
    forum_id: str
    township_id: str
    topic_id: str
    title: str
    policies: tuple[Policy, ...]
    tasks: tuple[ForumTask, ...]


@registry.register("cunzhi.meetings.ForumTaskCompleted", version=1)
class ForumTaskCompleted(Event):
    """Rectification reported a task of this forum done.

    ``known`` is false for a task id no resolution of this forum names; it is kept for the
    record but does not count towards closing the forum.
    """

    forum_id: str
    township_id: str
    task_id: str
    completed_on: dt.date
    known: bool


@registry.register("cunzhi.meetings.ForumClosed", version=1)
class ForumClosed(Event):
    """Every task of every resolution is done: the forum's problem is solved."""

    forum_id: str
    township_id: str
    topic_id: str
    closed_on: dt.date


# --- other meetings -----------------------------------------------------------------------


@registry.register("cunzhi.meetings.PastForumRecorded", version=1)
class PastForumRecorded(Event):
    """A forum held before cunzhi, entered from the township's paper ledger (历史台账).

    Not a plan: no call for topics, notice or tasks follow. It counts in the township's record
    (forums held, problems solved, experts, experience sharers, field visits).
    """

    forum_id: str
    township_id: str
    number: int
    date: dt.date
    place: str
    mode: ForumMode
    host_unit: str | None = None
    topic_title: str
    category: str | None = None
    activities: tuple[Activity, ...]
    policies: tuple[Policy, ...]
    problem_solved: bool


@registry.register("cunzhi.meetings.SpeakUpSessionHeld", version=1)
class SpeakUpSessionHeld(Event):
    """逢五说事: villagers spoke up on a lunar 5th, 15th or 25th; the issues they raised."""

    session_id: str
    village_id: str
    township_id: str
    date: dt.date
    lunar_day: int
    attendance_count: int
    issues_raised: tuple[str, ...]
    """The titles of the issues raised, as the claim list has them."""
    hosted_by: str
    issue_ids: tuple[str, ...] = ()
    """The speak-up issues (topics service) raised at the session; empty in sessions recorded
    before issues were named by id."""


@registry.register("cunzhi.meetings.ContestHeld", version=1)
class ContestHeld(Event):
    """擂台比武: the quarterly contest of a township's village heads; ranking best first."""

    contest_id: str
    township_id: str
    year: int
    quarter: int
    date: dt.date
    participants: tuple[ContestParticipant, ...]
    ranking: tuple[str, ...]
