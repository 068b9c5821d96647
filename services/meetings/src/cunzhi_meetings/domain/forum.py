"""The village cadre forum (乡村干部论坛) from plan to close.

    planned ──topic set, notice──▶ noticed ──▶ held ──resolutions, every task done──▶ closed
    postpone: planned | noticed ──▶ postponed (a notice already out is void: notice again)
    cancel:   any state before held ──▶ cancelled

The notice goes out automatically at 09:00 Asia/Shanghai three *working* days before the
forum (``notice_due_at``): attendees must prepare remarks, and a holiday in between would
otherwise eat their preparation time. It may be issued by hand earlier.

A forum closes when it is held, has resolutions, and no task of them is open. A forum whose
resolutions carry no tasks (only policies) is closed when they are adopted: issuing the policy
was the work. That is why ``adopt_resolutions`` takes every resolution of a sitting at once;
a closed forum adopts nothing more, so nobody ever closes a forum by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from cunzhi_platform.aggregate import Aggregate, DomainError, Forbidden, InvalidTransition
from cunzhi_platform.clock import SHANGHAI, last_working_day_of_month, working_days_before
from cunzhi_platform.events import Event

from ..events import (
    Activity,
    Attendance,
    AttendanceStatus,
    Attendee,
    Discussion,
    ExchangeSpeaker,
    ExperienceExchange,
    ExpertLecture,
    ForumCancelled,
    ForumClosed,
    ForumHeld,
    ForumInviteeAdded,
    ForumMode,
    ForumNoticeIssued,
    ForumPlanned,
    ForumPostponed,
    ForumTask,
    ForumTaskCompleted,
    ForumTopicSet,
    GuestSpeaker,
    PastForumRecorded,
    Policy,
    RemarksPrepared,
    ResolutionAdopted,
)
from .ids import MAX_ID_LENGTH, forum_id, parse_forum_stream_id, task_id
from .roster import Roster

NOTICE_WORKING_DAYS = 3
NOTICE_TIME = dt.time(9, 0)


class ForumStatus(StrEnum):
    PLANNED = "planned"
    POSTPONED = "postponed"
    NOTICED = "noticed"
    HELD = "held"
    CLOSED = "closed"
    CANCELLED = "cancelled"


AWAITING_NOTICE = frozenset({ForumStatus.PLANNED, ForumStatus.POSTPONED})
NOT_YET_HELD = AWAITING_NOTICE | {ForumStatus.NOTICED}


def default_forum_date(year: int, month: int) -> dt.date:
    """Forums are held at month end: the last Chinese working day of the month."""
    return last_working_day_of_month(year, month)


def next_forum_date(today: dt.date) -> dt.date:
    """The month-end date a forum planned today takes by default: this month's, or next
    month's once this month's has passed."""
    date = default_forum_date(today.year, today.month)
    if date < today:
        next_month = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        date = default_forum_date(next_month.year, next_month.month)
    return date


def months_to_plan(year: int, today: dt.date, planned_months: set[int]) -> list[dt.date]:
    """The month-end dates of ``year`` still to plan: not past, not already planned.

    A township plans its year's forums at once ("每月一次"), each on the last working day of
    its month; the office moves any of them afterwards.
    """
    if year < today.year:
        raise DomainError(f"{year} is over; plan this year or a later one", field="year")
    if year > today.year + 1:
        raise DomainError("plan this year's forums or next year's", field="year")
    dates = (default_forum_date(year, month) for month in range(1, 13))
    return [d for d in dates if d >= today and d.month not in planned_months]


def notice_due_at(forum_date: dt.date) -> dt.datetime:
    """09:00 Asia/Shanghai, three working days before the forum date."""
    day = working_days_before(forum_date, NOTICE_WORKING_DAYS)
    return dt.datetime.combine(day, NOTICE_TIME, tzinfo=SHANGHAI)


@dataclass(frozen=True)
class Topic:
    topic_id: str
    title: str
    category: str


@dataclass(frozen=True)
class AttendanceMark:
    """How one invited person attended, as the office records it."""

    person_id: str
    status: AttendanceStatus
    reason: str | None = None


@dataclass(frozen=True)
class ResolutionDraft:
    title: str
    policies: Sequence[Policy] = ()
    tasks: Sequence[ForumTask] = ()


class Forum(Aggregate):
    """Stream ``forum:{township_id}:{number}``; ``forum_id`` is ``{township_id}-F{number:03d}``."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.township_id, self.number = parse_forum_stream_id(aggregate_id)
        self.forum_id = forum_id(self.township_id, self.number)
        self.status: ForumStatus | None = None
        self.date = dt.date.min
        self.place = ""
        self.mode: ForumMode = "at_township"
        self.host_unit: str | None = None
        self.activities: tuple[Activity, ...] = ()
        self.topic: Topic | None = None
        self.invitees: dict[str, Attendee] = {}
        self.attendees: tuple[Attendee, ...] = ()
        """Those told by the current notice: the only people attendance may name."""
        self.cancel_reason = ""
        self.attendance: tuple[Attendance, ...] = ()
        self.speakers: tuple[str, ...] = ()
        self.minutes = ""
        self.resolutions: list[ResolutionAdopted] = []
        self.tasks: dict[str, ForumTask] = {}
        self.completed_task_ids: set[str] = set()
        self.closed_on: dt.date | None = None

    @property
    def open_task_ids(self) -> set[str]:
        return set(self.tasks) - self.completed_task_ids

    @property
    def notice_due_at(self) -> dt.datetime:
        return notice_due_at(self.date)

    def is_notice_due(self, now: dt.datetime) -> bool:
        """Whether the automatic notice should go out now.

        Not after the forum day: a forum whose day passed without notice must be postponed.
        """
        now = _in_shanghai(now)
        return (
            self.status in AWAITING_NOTICE
            and self.topic is not None
            and self.notice_due_at <= now
            and now.date() <= self.date
        )

    # --- commands ---

    def plan(
        self,
        *,
        place: str,
        roster: Roster,
        today: dt.date,
        date: dt.date | None = None,
        mode: ForumMode = "at_township",
        host_unit: str | None = None,
        expert_lectures: Sequence[ExpertLecture] = (),
        exchange_speaker_ids: Sequence[str] = (),
        guest_speakers: Sequence[GuestSpeaker] = (),
        discussion: bool = True,
    ) -> list[Event]:
        """Plan this forum; ``date`` defaults to the month end (next month's if that passed).

        Experience is shared by the township's own village secretaries (``exchange_speaker_ids``,
        from the roster) and by invited guests from elsewhere (``guest_speakers``)."""
        if self.exists:
            raise InvalidTransition(
                f"forum {self.forum_id} is already planned; plan the next number"
            )
        if roster.township_id != self.township_id:
            raise ValueError(f"roster of {roster.township_id} given for forum {self.forum_id}")
        if date is None:
            date = next_forum_date(today)
        elif date < today:
            raise DomainError(f"{date} is in the past; choose today or a later day", field="date")
        place, host_unit = _venue(place, mode, host_unit)
        activities = _activities(
            expert_lectures,
            _exchange_speakers(roster, exchange_speaker_ids),
            guest_speakers,
            discussion,
        )
        return [
            ForumPlanned(
                forum_id=self.forum_id,
                township_id=self.township_id,
                number=self.number,
                date=date,
                place=place,
                mode=mode,
                host_unit=host_unit,
                activities=activities,
            )
        ]

    def record_past(
        self,
        *,
        date: dt.date,
        today: dt.date,
        place: str,
        topic_title: str,
        problem_solved: bool,
        category: str | None = None,
        mode: ForumMode = "at_township",
        host_unit: str | None = None,
        expert_lectures: Sequence[ExpertLecture] = (),
        guest_speakers: Sequence[GuestSpeaker] = (),
        policies: Sequence[Policy] = (),
        discussion: bool = True,
    ) -> list[Event]:
        """Enter a forum held before cunzhi from the township's paper ledger (历史台账).

        Its number is the ledger's: the township's later forums are planned after it. Sharers
        of experience are entered by name and affiliation, like guests: the ledger does not
        say who on today's roster they were.
        """
        if self.exists:
            raise InvalidTransition(
                f"forum {self.forum_id} is already recorded; enter the ledger's forums under "
                "their own numbers"
            )
        if date >= today:
            raise DomainError(
                f"a forum from the ledger was held before today, not on {date}; plan forums to "
                "come instead",
                field="date",
            )
        if not topic_title.strip():
            raise DomainError("say which problem the forum took up", field="topic_title")
        place, host_unit = _venue(place, mode, host_unit)
        for policy in policies:
            if not (policy.title.strip() and policy.document_number.strip()):
                raise DomainError("a policy needs its title and document number", field="policies")
        return [
            PastForumRecorded(
                forum_id=self.forum_id,
                township_id=self.township_id,
                number=self.number,
                date=date,
                place=place,
                mode=mode,
                host_unit=host_unit,
                topic_title=topic_title.strip(),
                category=category,
                activities=_activities(expert_lectures, (), guest_speakers, discussion),
                policies=tuple(policies),
                problem_solved=problem_solved,
            )
        ]

    def add_invitee(
        self,
        *,
        name: str,
        role: str,
        village_id: str | None = None,
        person_id: str | None = None,
    ) -> list[Event]:
        """Invite someone beyond the roster; before the notice, so the notice names them.

        Without ``person_id`` the invitee gets ``{forum_id}-G{n:02d}``.
        """
        self._require_planned()
        if self.status == ForumStatus.NOTICED:
            raise InvalidTransition(
                f"the notice of {self.forum_id} is out; invite people before the notice, "
                "or postpone the forum so the notice is issued again"
            )
        if self.status not in AWAITING_NOTICE:
            raise InvalidTransition(f"forum {self.forum_id} is {self.status}; nobody can join")
        if not name.strip():
            raise DomainError("an invitee needs a name", field="name")
        if not role.strip():
            raise DomainError(f"say in what role {name} attends", field="role")
        invitee = Attendee(
            person_id=person_id or self._next_guest_id(),
            name=name.strip(),
            role=role.strip(),
            village_id=village_id or None,
        )
        known = self.invitees.get(invitee.person_id)
        if known == invitee:
            return []
        if known is not None:
            raise DomainError(
                f"{invitee.person_id} is already invited as {known.name} ({known.role})",
                field="person_id",
            )
        return [
            ForumInviteeAdded(
                forum_id=self.forum_id,
                township_id=self.township_id,
                person_id=invitee.person_id,
                name=invitee.name,
                role=invitee.role,
                village_id=invitee.village_id,
            )
        ]

    def set_topic(self, *, topic_id: str, title: str, category: str) -> list[Event]:
        """The committee selected the topic (topics' ``TopicSelected``); redelivery is a no-op."""
        self._require_planned()
        if self.topic is not None:
            if self.topic.topic_id == topic_id:
                return []
            raise InvalidTransition(
                f"forum {self.forum_id} already has the topic {self.topic.title!r} "
                f"({self.topic.topic_id}); one forum solves one problem"
            )
        if self.status not in AWAITING_NOTICE:
            raise InvalidTransition(f"forum {self.forum_id} is {self.status}; no topic can be set")
        if not topic_id.strip() or not title.strip():
            raise DomainError("a topic needs its id and title", field="topic_id")
        return [
            ForumTopicSet(
                forum_id=self.forum_id,
                township_id=self.township_id,
                topic_id=topic_id,
                title=title,
                category=category,
            )
        ]

    def prepare_remarks(self, person_id: str, summary: str, *, now: dt.datetime) -> list[Event]:
        """An attendee of the notice hands in their prepared remarks, until the forum is held."""
        if self.status != ForumStatus.NOTICED:
            raise InvalidTransition(
                f"remarks are prepared between the notice and the forum; forum {self.forum_id} "
                f"is {self.status}"
            )
        attendee = next((a for a in self.attendees if a.person_id == person_id), None)
        if attendee is None:
            raise Forbidden(
                f"{person_id} was not asked to attend forum {self.forum_id}; only the people the "
                "notice named prepare remarks"
            )
        if not summary.strip():
            raise DomainError("say what you will speak about", field="summary")
        return [
            RemarksPrepared(
                forum_id=self.forum_id,
                township_id=self.township_id,
                person_id=person_id,
                name=attendee.name,
                summary=summary.strip(),
                prepared_at=now,
            )
        ]

    def issue_notice(
        self, roster: Roster, *, now: dt.datetime, automatic: bool = False
    ) -> list[Event]:
        """Tell the roster (as it is now) and the invitees; each must prepare remarks."""
        self._require_planned()
        if roster.township_id != self.township_id:
            raise ValueError(f"roster of {roster.township_id} given for forum {self.forum_id}")
        now = _in_shanghai(now)
        if self.status == ForumStatus.NOTICED:
            raise InvalidTransition(f"the notice of {self.forum_id} for {self.date} is already out")
        if self.status not in AWAITING_NOTICE:
            raise InvalidTransition(f"forum {self.forum_id} is {self.status}; it cannot be noticed")
        if self.topic is None:
            raise InvalidTransition(
                f"forum {self.forum_id} has no topic yet: the committee must select a topic first"
            )
        if now.date() > self.date:
            raise InvalidTransition(
                f"forum {self.forum_id} was due on {self.date}; postpone it to a new date"
            )
        if automatic and now < self.notice_due_at:
            raise InvalidTransition(
                f"the automatic notice of {self.forum_id} is due at "
                f"{self.notice_due_at.isoformat()}"
            )
        attendees = {
            m.person_id: Attendee(
                person_id=m.person_id, name=m.name, role=m.role, village_id=m.village_id
            )
            for m in roster.members
        }
        for invitee in self.invitees.values():
            attendees.setdefault(invitee.person_id, invitee)
        if not attendees:
            raise InvalidTransition(
                f"nobody to notify: the roster of {self.township_id} is empty; import it first"
            )
        return [
            ForumNoticeIssued(
                forum_id=self.forum_id,
                township_id=self.township_id,
                number=self.number,
                date=self.date,
                place=self.place,
                mode=self.mode,
                host_unit=self.host_unit,
                topic_id=self.topic.topic_id,
                topic_title=self.topic.title,
                attendees=tuple(attendees.values()),
                automatic=automatic,
                issued_at=now,
            )
        ]

    def postpone(self, new_date: dt.date, reason: str, *, today: dt.date) -> list[Event]:
        """Move to ``new_date``; a notice already out is void and is issued again."""
        self._require_not_held("postponed")
        if not reason.strip():
            raise DomainError("say why the forum is postponed", field="reason")
        if new_date <= today:
            raise DomainError(f"the new date must be after today ({today})", field="date")
        if new_date == self.date:
            raise DomainError(f"forum {self.forum_id} is already on {new_date}", field="date")
        return [
            ForumPostponed(
                forum_id=self.forum_id,
                township_id=self.township_id,
                previous_date=self.date,
                date=new_date,
                reason=reason.strip(),
                attendees_to_inform=self.attendees,
            )
        ]

    def cancel(self, reason: str) -> list[Event]:
        self._require_not_held("cancelled")
        if not reason.strip():
            raise DomainError("say why the forum is cancelled", field="reason")
        return [
            ForumCancelled(
                forum_id=self.forum_id,
                township_id=self.township_id,
                topic_id=self.topic.topic_id if self.topic else None,
                reason=reason.strip(),
                attendees_to_inform=self.attendees,
            )
        ]

    def hold(
        self,
        attendance: Sequence[AttendanceMark],
        *,
        speakers: Sequence[str],
        minutes: str,
        today: dt.date,
    ) -> list[Event]:
        """Record the forum as held: every person told by the notice, who spoke, the minutes."""
        self._require_planned()
        if self.status == ForumStatus.CANCELLED:
            raise InvalidTransition(
                f"forum {self.forum_id} was cancelled ({self.cancel_reason}); it cannot be held"
            )
        if self.status in AWAITING_NOTICE:
            raise InvalidTransition(
                f"forum {self.forum_id} has not been noticed; issue the notice before "
                "recording it as held"
            )
        if self.status != ForumStatus.NOTICED:
            raise InvalidTransition(f"forum {self.forum_id} is already recorded as held")
        if today < self.date:
            raise InvalidTransition(
                f"forum {self.forum_id} takes place on {self.date}; record it on or after that day"
            )
        if not minutes.strip():
            raise DomainError("the minutes are required", field="minutes")
        recorded = _attendance(self.forum_id, self.attendees, attendance)
        spoke: dict[str, None] = {}
        for person_id in speakers:
            entry = recorded.get(person_id)
            if entry is None or entry.status == "absent":
                who = entry.name if entry else person_id
                raise DomainError(
                    f"{who} is not recorded as present or late, so cannot have spoken",
                    field="speakers",
                )
            spoke[person_id] = None
        return [
            ForumHeld(
                forum_id=self.forum_id,
                township_id=self.township_id,
                number=self.number,
                date=self.date,
                mode=self.mode,
                host_unit=self.host_unit,
                topic_id=self._selected_topic.topic_id,
                topic_title=self._selected_topic.title,
                activities=self.activities,
                attendance=tuple(recorded.values()),
                speakers=tuple(spoke),
                minutes=minutes.strip(),
            )
        ]

    def adopt_resolutions(
        self, resolutions: Sequence[ResolutionDraft], *, today: dt.date
    ) -> list[Event]:
        """Adopt the resolutions of one sitting; closes the forum if no task is left open."""
        self._require_planned()
        if self.status == ForumStatus.CLOSED:
            raise InvalidTransition(
                f"forum {self.forum_id} is closed, its work done; adopt new decisions at a "
                "later forum"
            )
        if self.status != ForumStatus.HELD:
            raise InvalidTransition(
                f"forum {self.forum_id} has not been held; resolutions are adopted once it is"
            )
        if not resolutions:
            raise DomainError("give at least one resolution", field="resolutions")
        task_ids = set(self.tasks)
        events: list[Event] = []
        for draft in resolutions:
            draft = self._with_task_ids(draft)
            self._check_resolution(draft, task_ids)
            task_ids |= {t.task_id for t in draft.tasks}
            events.append(
                ResolutionAdopted(
                    resolution_id=f"{self.forum_id}-R{len(self.resolutions) + len(events) + 1}",
                    forum_id=self.forum_id,
                    township_id=self.township_id,
                    topic_id=self._selected_topic.topic_id,
                    title=draft.title.strip(),
                    policies=tuple(draft.policies),
                    tasks=tuple(draft.tasks),
                )
            )
        if task_ids <= self.completed_task_ids:
            events.append(self._closed(today))
        return events

    def complete_task(self, task_id: str, *, completed_on: dt.date) -> list[Event]:
        """Rectification's ``TaskCompleted`` named a task of this forum; redelivery is a no-op."""
        self._require_planned()
        if task_id in self.completed_task_ids:
            return []
        known = task_id in self.tasks
        events: list[Event] = [
            ForumTaskCompleted(
                forum_id=self.forum_id,
                township_id=self.township_id,
                task_id=task_id,
                completed_on=completed_on,
                known=known,
            )
        ]
        if self.status == ForumStatus.HELD and known and self.open_task_ids == {task_id}:
            events.append(self._closed(completed_on))
        return events

    # --- helpers ---

    @property
    def _selected_topic(self) -> Topic:
        # only a forum with a topic is noticed, and holding and outcomes follow the notice
        if self.topic is None:
            raise InvalidTransition(f"forum {self.forum_id} has no topic")
        return self.topic

    def _require_planned(self) -> None:
        if self.status is None:
            raise InvalidTransition(f"forum {self.forum_id} has not been planned")

    def _require_not_held(self, verb: str) -> None:
        self._require_planned()
        if self.status not in NOT_YET_HELD:
            raise InvalidTransition(f"forum {self.forum_id} is {self.status}; it cannot be {verb}")

    def _next_guest_id(self) -> str:
        n = len(self.invitees) + 1
        while f"{self.forum_id}-G{n:02d}" in self.invitees:
            n += 1
        return f"{self.forum_id}-G{n:02d}"

    def _with_task_ids(self, draft: ResolutionDraft) -> ResolutionDraft:
        tasks = []
        for task in draft.tasks:
            if not task.task_id.strip():
                raise DomainError("every task needs a task_id", field="tasks")
            qualified = task_id(self.forum_id, task.task_id)
            if len(qualified) > MAX_ID_LENGTH:
                raise DomainError(
                    f"task id {qualified} is longer than {MAX_ID_LENGTH} characters with the "
                    "forum's id in front: give a shorter one",
                    field="tasks",
                )
            tasks.append(task.model_copy(update={"task_id": qualified}))
        return replace(draft, tasks=tuple(tasks))

    def _check_resolution(self, draft: ResolutionDraft, task_ids: set[str]) -> None:
        if not draft.title.strip():
            raise DomainError("a resolution needs a title", field="title")
        if not draft.policies and not draft.tasks:
            raise DomainError(
                f"resolution {draft.title!r} issues no policy and assigns no task",
                field="resolutions",
            )
        for policy in draft.policies:
            if not policy.title.strip() or not policy.document_number.strip():
                raise DomainError(
                    f"policy {policy.title!r} needs a title and a document number",
                    field="policies",
                )
        seen: set[str] = set()
        for task in draft.tasks:
            if task.task_id in task_ids or task.task_id in seen:
                raise DomainError(
                    f"task {task.task_id} is already a task of forum {self.forum_id}",
                    field="tasks",
                )
            seen.add(task.task_id)
            if (task.assignee_village_id is None) == (task.assignee_person_id is None):
                raise DomainError(
                    f"task {task.task_id} needs exactly one assignee: a village or a person",
                    field="tasks",
                )
            if not task.description.strip():
                raise DomainError(f"say what task {task.task_id} is", field="tasks")
            if task.due_date < self.date:
                raise DomainError(
                    f"task {task.task_id} is due {task.due_date}, before the forum date "
                    f"{self.date}",
                    field="tasks",
                )

    def _closed(self, on: dt.date) -> ForumClosed:
        return ForumClosed(
            forum_id=self.forum_id,
            township_id=self.township_id,
            topic_id=self._selected_topic.topic_id,
            closed_on=on,
        )

    # --- fold ---

    def _on_ForumPlanned(self, e: ForumPlanned) -> None:
        self.status = ForumStatus.PLANNED
        self.date = e.date
        self.place = e.place
        self.mode = e.mode
        self.host_unit = e.host_unit
        self.activities = e.activities

    def _on_PastForumRecorded(self, e: PastForumRecorded) -> None:
        self.status = ForumStatus.CLOSED if e.problem_solved else ForumStatus.HELD
        self.date = e.date
        self.place = e.place
        self.mode = e.mode
        self.host_unit = e.host_unit
        self.activities = e.activities

    def _on_ForumInviteeAdded(self, e: ForumInviteeAdded) -> None:
        self.invitees[e.person_id] = Attendee(
            person_id=e.person_id, name=e.name, role=e.role, village_id=e.village_id
        )

    def _on_ForumTopicSet(self, e: ForumTopicSet) -> None:
        self.topic = Topic(topic_id=e.topic_id, title=e.title, category=e.category)

    def _on_ForumNoticeIssued(self, e: ForumNoticeIssued) -> None:
        self.status = ForumStatus.NOTICED
        self.attendees = e.attendees

    def _on_RemarksPrepared(self, e: RemarksPrepared) -> None:
        pass  # remarks change nothing the forum decides on

    def _on_ForumPostponed(self, e: ForumPostponed) -> None:
        self.status = ForumStatus.POSTPONED
        self.date = e.date
        self.attendees = ()

    def _on_ForumCancelled(self, e: ForumCancelled) -> None:
        self.status = ForumStatus.CANCELLED
        self.cancel_reason = e.reason

    def _on_ForumHeld(self, e: ForumHeld) -> None:
        self.status = ForumStatus.HELD
        self.attendance = e.attendance
        self.speakers = e.speakers
        self.minutes = e.minutes

    def _on_ResolutionAdopted(self, e: ResolutionAdopted) -> None:
        self.resolutions.append(e)
        self.tasks.update((t.task_id, t) for t in e.tasks)

    def _on_ForumTaskCompleted(self, e: ForumTaskCompleted) -> None:
        self.completed_task_ids.add(e.task_id)

    def _on_ForumClosed(self, e: ForumClosed) -> None:
        self.status = ForumStatus.CLOSED
        self.closed_on = e.closed_on


def _in_shanghai(now: dt.datetime) -> dt.datetime:
    """A naive time is taken as Shanghai time, like ``ManualClock`` does."""
    return (now if now.tzinfo else now.replace(tzinfo=SHANGHAI)).astimezone(SHANGHAI)


def _venue(place: str, mode: ForumMode, host_unit: str | None) -> tuple[str, str | None]:
    """The place and host unit, checked against the mode (a field visit has a host)."""
    if not place.strip():
        raise DomainError("say where the forum takes place", field="place")
    if mode == "field_visit" and not (host_unit and host_unit.strip()):
        raise DomainError("a field visit needs the host unit to visit", field="host_unit")
    if mode == "at_township" and host_unit:
        raise DomainError(
            "only a field visit has a host unit; set mode to field_visit or leave it out",
            field="host_unit",
        )
    return place.strip(), host_unit.strip() if host_unit else None


def _activities(
    expert_lectures: Sequence[ExpertLecture],
    speakers: tuple[ExchangeSpeaker, ...],
    guests: Sequence[GuestSpeaker],
    discussion: bool,
) -> tuple[Activity, ...]:
    activities: list[Activity] = []
    for lecture in expert_lectures:
        if not (lecture.expert_name.strip() and lecture.affiliation.strip()):
            raise DomainError(
                "an expert lecture needs the expert's name and affiliation",
                field="expert_lectures",
            )
        if not lecture.subject.strip():
            raise DomainError(
                f"say what {lecture.expert_name} lectures on", field="expert_lectures"
            )
        activities.append(lecture)
    for guest in guests:
        if not (guest.name.strip() and guest.affiliation.strip()):
            raise DomainError(
                "a guest who shares experience needs a name and an affiliation",
                field="guest_speakers",
            )
    if speakers or guests:
        activities.append(ExperienceExchange(speakers=speakers, guests=tuple(guests)))
    if discussion:
        activities.append(Discussion())
    if not activities:
        raise DomainError(
            "plan at least one activity: a lecture, an experience exchange or a discussion",
            field="activities",
        )
    return tuple(activities)


def _exchange_speakers(roster: Roster, person_ids: Sequence[str]) -> tuple[ExchangeSpeaker, ...]:
    speakers: dict[str, ExchangeSpeaker] = {}
    for person_id in person_ids:
        member = roster.member(person_id)
        if member is None:
            raise DomainError(
                f"{person_id} is not on the roster of {roster.township_id}; only its village "
                "secretaries share experience",
                field="exchange_speaker_ids",
            )
        if member.role != "village_secretary" or member.village_id is None:
            raise DomainError(
                f"{member.name} is {member.role}, not a village secretary; only village "
                "secretaries share experience",
                field="exchange_speaker_ids",
            )
        speakers[person_id] = ExchangeSpeaker(
            person_id=person_id, name=member.name, village_id=member.village_id
        )
    return tuple(speakers.values())


def _attendance(
    forum: str, invited: Sequence[Attendee], marks: Sequence[AttendanceMark]
) -> dict[str, Attendance]:
    """Attendance in notice order; every invited person exactly once, nobody else."""
    by_id = {a.person_id: a for a in invited}
    marked: dict[str, AttendanceMark] = {}
    for mark in marks:
        attendee = by_id.get(mark.person_id)
        if attendee is None:
            raise DomainError(
                f"{mark.person_id} was not invited to {forum}: only the roster at notice time "
                "and the forum's invitees can be recorded",
                field="attendance",
            )
        if mark.person_id in marked:
            raise DomainError(f"{attendee.name} is recorded twice", field="attendance")
        if mark.status == "absent" and not (mark.reason and mark.reason.strip()):
            raise DomainError(f"say why {attendee.name} was absent", field="attendance")
        marked[mark.person_id] = mark
    missing = [a.name for a in invited if a.person_id not in marked]
    if missing:
        raise DomainError(
            f"attendance of {', '.join(missing)} is missing; record every invited person as "
            "present, late, or absent with a reason",
            field="attendance",
        )
    return {
        a.person_id: Attendance(
            person_id=a.person_id,
            name=a.name,
            role=a.role,
            village_id=a.village_id,
            status=marked[a.person_id].status,
            reason=(marked[a.person_id].reason or "").strip() or None,
        )
        for a in invited
    }
