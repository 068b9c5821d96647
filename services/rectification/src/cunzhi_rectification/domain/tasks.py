"""A tracked work item (任务): a forum resolution's task or a campaign target.

    assigned ──progress…──▶ completed
        └─ due day ends unfinished ─▶ overdue (village) ─▶ township ─▶ county
                                        └─ rescheduled to a later day ─▶ open again

Rules (the seeds only say tasks have owners and deadlines; the rest is ours):

- a task has exactly one assignee, a village or a person, and a due date on or after its
  start and at most five years after it; its weight is positive;
- only the assignee (the village's secretary, or the person), the office of the task's
  township (党建办, 乡党委), or — for a campaign target — the village's work team reports on
  it or completes it;
- progress is a whole percentage within 0–100 and never below the last report;
- completion needs evidence or a summary, and happens once; a completed task is 100% done;
- a task is overdue once its due day has ended in Asia/Shanghai unfinished; a due day that is
  not a working day runs to the end of the next working day (as a period ending on a holiday
  does in Chinese law, 民法典 第二百零三条);
- overdue, it escalates from the village to the township and then to the county after
  working days set by ``EscalationPolicy``, each step once and in order;
- the township office or the county may move the due date to a day not yet ended and not
  before the start; an overdue task is then open again;
- a deadline is computed with the holiday calendar of the day; when the calendar learns the
  year of a due day (it falls back to Monday–Friday before), the deadline is computed again
  and moves by an event of its own if it changed;
- evidence of the kind ``file`` is a link a browser will open: an ``http(s)://`` address or a
  file uploaded to the platform (``evidence://…``), nothing else (``javascript:``, ``data:``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cunzhi_platform.aggregate import (
    Aggregate,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
)
from cunzhi_platform.clock import SHANGHAI, is_working_day
from cunzhi_platform.events import Event

from ..events.tasks import (
    Assignee,
    EscalationLevel,
    Evidence,
    TaskAssigned,
    TaskCompleted,
    TaskDeadlineRecomputed,
    TaskEscalated,
    TaskOverdue,
    TaskProgressReported,
    TaskRescheduled,
    TaskSource,
)

MAX_WEIGHT = 1000.0
MAX_SPAN = dt.timedelta(days=5 * 366)
"""Longest a task may run (ours): a campaign round is two years; five leave room for a term."""
MAX_REPORTS = 1000
"""Reports kept per task: a task reported on daily for almost three years. More is a loop."""


EVIDENCE_LINK = re.compile(r"(https?|evidence)://\S+")
"""What a file's evidence may be (ours): a web address, or a file uploaded to the platform."""


def evidence_link_problem(value: str) -> str | None:
    """Why ``value`` may not stand as a file's link, in words; None when it may."""
    if EVIDENCE_LINK.fullmatch(value):
        return None
    return f"文件证据须为 http(s):// 网址或平台上传文件的引用（evidence://…），不能是“{value[:40]}”"


def check_evidence(evidence: Sequence[Evidence]) -> None:
    for n, e in enumerate(evidence):
        problem = evidence_link_problem(e.value) if e.kind == "file" else None
        if problem:
            raise DomainError(problem, field=f"evidence.{n}.value")


def task_stream_id(task_id: str) -> str:
    return f"task:{task_id}"


class TaskStatus(StrEnum):
    OPEN = "open"
    OVERDUE = "overdue"
    COMPLETED = "completed"


@dataclass(frozen=True)
class EscalationPolicy:
    """Working days after the deadline at which an overdue task goes up a level (ours)."""

    township_after: int = 3
    county_after: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.township_after < self.county_after <= 250:
            raise ValueError(
                "escalation needs 1 ≤ working days to the township < working days to the county "
                f"≤ 250; got {self.township_after} and {self.county_after}"
            )

    def level(self, working_days_overdue: int) -> EscalationLevel:
        if working_days_overdue >= self.county_after:
            return "county"
        if working_days_overdue >= self.township_after:
            return "township"
        return "village"


LEVELS: tuple[EscalationLevel, ...] = ("village", "township", "county")


def effective_due_day(due_on: dt.date) -> dt.date:
    """The due day, moved on to the next working day when it is a rest day."""
    day = due_on
    while not is_working_day(day):
        day += dt.timedelta(days=1)
    return day


def deadline(due_on: dt.date) -> dt.datetime:
    """The moment a task due on ``due_on`` becomes overdue: the end of its effective due day."""
    return dt.datetime.combine(
        effective_due_day(due_on) + dt.timedelta(days=1), dt.time(), tzinfo=SHANGHAI
    )


def working_days_overdue(due_on: dt.date, today: dt.date) -> int:
    """Working days after the effective due day, up to and including ``today``."""
    day, count = effective_due_day(due_on) + dt.timedelta(days=1), 0
    while day <= today:
        count += is_working_day(day)
        day += dt.timedelta(days=1)
    return count


def escalation_cutoff(today: dt.date, working_days: int) -> dt.datetime:
    """Tasks whose deadline is at or before this moment are ``working_days`` overdue today.

    The ``working_days``-th working day counting back from ``today`` (itself included): a task
    whose effective due day ended before it has had that many working days since.
    """
    day, seen = today, 0
    while True:
        seen += is_working_day(day)
        if seen >= working_days:
            return dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI)
        day -= dt.timedelta(days=1)


@dataclass(frozen=True)
class Actor:
    """Who acts on a task: their person id, the villages they are secretary of, the villages
    whose campaign work team (驻村工作专班) they are on as ``(campaign_id, village_id)`` — a
    village carried over into the next round has another team there —, the townships whose
    office (党建办/乡党委) they act for, and whether they are the county organisation department."""

    person_id: str
    secretary_of: frozenset[str] = frozenset()
    office_of: frozenset[str] = frozenset()
    county: bool = False
    team_of: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class TaskDraft:
    """What assigning a task needs; ``TaskAssigned`` is made from it once it is valid."""

    task_id: str
    source: TaskSource
    township_id: str
    assignee: Assignee
    title: str
    starts_on: dt.date
    due_on: dt.date
    village_id: str | None = None
    weight: float = 1.0
    forum_id: str | None = None
    resolution_id: str | None = None
    topic_id: str | None = None
    campaign_id: str | None = None
    area: str | None = None
    kind: str | None = None

    def event(self) -> TaskAssigned:
        village = self.village_id
        if village is None and self.assignee.kind == "village":
            village = self.assignee.id
        return TaskAssigned(
            task_id=self.task_id,
            source=self.source,
            township_id=self.township_id,
            village_id=village,
            assignee=self.assignee,
            title=self.title,
            starts_on=self.starts_on,
            due_on=self.due_on,
            deadline=deadline(self.due_on),
            weight=self.weight,
            forum_id=self.forum_id,
            resolution_id=self.resolution_id,
            topic_id=self.topic_id,
            campaign_id=self.campaign_id,
            area=self.area,
            kind=self.kind,
        )


def check_due_date(starts_on: dt.date, due_on: dt.date) -> None:
    if due_on < starts_on:
        raise DomainError(
            f"the due date {due_on} is before the task starts ({starts_on})", field="due_on"
        )
    if due_on > starts_on + MAX_SPAN:
        raise DomainError(
            f"the due date {due_on} is more than {MAX_SPAN.days} days after the task starts "
            f"({starts_on}); a task runs at most as long as a campaign round may",
            field="due_on",
        )


@dataclass
class Report:
    percent: int
    note: str
    evidence: tuple[Evidence, ...]
    reported_by: str
    reported_on: dt.date


class Task(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.assigned: TaskAssigned | None = None
        self.due_on: dt.date = dt.date.min
        self.recorded_deadline: dt.datetime | None = None
        """The deadline as the events last stated it (computed with the calendar of then)."""
        self.percent = 0
        self.status = TaskStatus.OPEN
        self.level: EscalationLevel | None = None
        self.completed: TaskCompleted | None = None
        self.reports: list[Report] = []

    @property
    def task_id(self) -> str:
        return self._assignment.task_id

    @property
    def deadline(self) -> dt.datetime:
        return deadline(self.due_on)

    @property
    def _assignment(self) -> TaskAssigned:
        if self.assigned is None:
            raise DomainError(f"there is no task {self.id.removeprefix('task:')}")
        return self.assigned

    # --- decisions ---------------------------------------------------------------------------

    def assign(self, draft: TaskDraft) -> list[Event]:
        """Assign the task; assigning exactly the same again (a redelivery) does nothing."""
        event = _valid(draft)
        if self.assigned is not None:
            if self.assigned == event:
                return []
            raise InvalidTransition(
                f"task {draft.task_id} is already assigned ({_origin(self.assigned)}); "
                "task ids are unique across forums and campaigns",
                field="task_id",
            )
        return [event]

    def report_progress(
        self,
        actor: Actor,
        *,
        percent: int,
        note: str = "",
        evidence: Sequence[Evidence] = (),
        today: dt.date,
    ) -> list[Event]:
        a = self._assignment
        self.require_reporter(actor)
        self._require_not_completed("report on")
        if not 0 <= percent <= 100:
            raise DomainError(
                f"progress is a percentage from 0 to 100, not {percent}", field="percent"
            )
        if percent < self.percent:
            raise DomainError(
                f"progress {percent}% is below the last report ({self.percent}%); "
                "progress never goes back",
                field="percent",
            )
        if not note.strip() and not evidence and percent == self.percent:
            raise DomainError(
                "a report with no new progress needs a note or evidence", field="note"
            )
        check_evidence(evidence)
        if len(self.reports) >= MAX_REPORTS:
            raise InvalidTransition(f"task {a.task_id} already has {MAX_REPORTS} reports")
        return [
            TaskProgressReported(
                task_id=a.task_id,
                township_id=a.township_id,
                percent=percent,
                previous_percent=self.percent,
                note=note.strip(),
                evidence=tuple(evidence),
                reported_by=actor.person_id,
                reported_on=today,
            )
        ]

    def complete(
        self, actor: Actor, *, summary: str = "", evidence: Sequence[Evidence] = (), today: dt.date
    ) -> list[Event]:
        a = self._assignment
        self.require_reporter(actor)
        self._require_not_completed("complete")
        if not summary.strip() and not evidence:
            raise DomainError(
                "completing a task needs evidence or a summary of what was done", field="evidence"
            )
        check_evidence(evidence)
        return [
            TaskCompleted(
                task_id=a.task_id,
                forum_id=a.forum_id,
                township_id=a.township_id,
                completed_on=today,
                summary=summary.strip(),
                evidence=tuple(evidence),
                completed_by=actor.person_id,
                campaign_id=a.campaign_id,
                village_id=a.village_id,
            )
        ]

    def reschedule(
        self, actor: Actor, *, due_on: dt.date, reason: str, now: dt.datetime
    ) -> list[Event]:
        """Move the due date; an overdue task whose new due day has not ended is open again."""
        a = self._assignment
        self.require_scheduler(actor)
        self._require_not_completed("reschedule")
        check_due_date(a.starts_on, due_on)
        if due_on == self.due_on:
            raise DomainError(f"task {a.task_id} is already due on {due_on}", field="due_on")
        if deadline(due_on) <= now:
            raise DomainError(
                f"the new due date {due_on} has already ended; give a day still ahead",
                field="due_on",
            )
        if not reason.strip():
            raise DomainError("say why the due date moves", field="reason")
        return [
            TaskRescheduled(
                task_id=a.task_id,
                township_id=a.township_id,
                previous_due_on=self.due_on,
                due_on=due_on,
                deadline=deadline(due_on),
                reason=reason.strip(),
                rescheduled_by=actor.person_id,
            )
        ]

    def check_deadline(self, now: dt.datetime, policy: EscalationPolicy) -> list[Event]:
        """What the clock makes of the task now: overdue, then each escalation step due.

        A timer that was down catches up with every step at once, each still its own event.
        """
        if self.assigned is None or self.status == TaskStatus.COMPLETED:
            return []
        a = self.assigned
        events: list[Event] = []
        if now < self.deadline:
            return []
        if self.status == TaskStatus.OPEN:
            events.append(
                TaskOverdue(
                    task_id=a.task_id,
                    township_id=a.township_id,
                    village_id=a.village_id,
                    assignee=a.assignee,
                    due_on=self.due_on,
                    deadline=self.deadline,
                    percent=self.percent,
                    forum_id=a.forum_id,
                    campaign_id=a.campaign_id,
                )
            )
        days = working_days_overdue(self.due_on, now.astimezone(SHANGHAI).date())
        reached = LEVELS.index(policy.level(days))
        current = LEVELS.index(self.level or "village")
        for step in range(current + 1, reached + 1):
            events.append(
                TaskEscalated(
                    task_id=a.task_id,
                    township_id=a.township_id,
                    village_id=a.village_id,
                    level=LEVELS[step],
                    previous_level=LEVELS[step - 1],
                    working_days_overdue=days,
                    due_on=self.due_on,
                    forum_id=a.forum_id,
                    campaign_id=a.campaign_id,
                )
            )
        return events

    def recompute_deadline(self, calendar_years: Sequence[int]) -> list[Event]:
        """The deadline as today's holiday calendar, which newly knows ``calendar_years``,
        computes it, if that differs from the one recorded; nothing for a completed task."""
        if self.assigned is None or self.status == TaskStatus.COMPLETED:
            return []
        a = self.assigned
        fresh = deadline(self.due_on)
        if self.recorded_deadline is None or fresh == self.recorded_deadline:
            return []
        return [
            TaskDeadlineRecomputed(
                task_id=a.task_id,
                township_id=a.township_id,
                village_id=a.village_id,
                due_on=self.due_on,
                previous_deadline=self.recorded_deadline,
                deadline=fresh,
                calendar_years=tuple(sorted(calendar_years)),
                forum_id=a.forum_id,
                campaign_id=a.campaign_id,
            )
        ]

    def require_target_of(self, campaign_id: str) -> None:
        """The task is a target of ``campaign_id``: another round's is not reached through
        this round's routes."""
        a = self._assignment
        if a.source != "campaign_target" or a.campaign_id != campaign_id:
            raise NotFound(f"campaign {campaign_id} has no target {a.task_id}", field="target_id")

    def require_scheduler(self, actor: Actor) -> None:
        """Only the office of the task's township or the county moves its due date."""
        township = self._assignment.township_id
        if not actor.county and township not in actor.office_of:
            raise Forbidden(
                f"only the office of township {township} or the county organisation "
                "department moves a task's due date"
            )

    def require_reporter(self, actor: Actor) -> None:
        """Only the assignee, the township's office or (targets) the village's team reports."""
        a = self._assignment
        if a.township_id in actor.office_of:
            return
        if a.assignee.kind == "person" and a.assignee.id == actor.person_id:
            return
        if a.assignee.kind == "village" and a.assignee.id in actor.secretary_of:
            return
        if a.source == "campaign_target" and (a.campaign_id, a.village_id) in actor.team_of:
            return  # the village's work team in the target's round reports on its targets
        whose = "village " if a.assignee.kind == "village" else ""
        team = (
            f" or the work team of village {a.village_id} in {a.campaign_id}"
            if a.source == "campaign_target"
            else ""
        )
        raise Forbidden(
            f"task {a.task_id} is assigned to {whose}{a.assignee.id}: only its assignee or the "
            f"office of township {a.township_id}{team} reports on it"
        )

    def _require_not_completed(self, verb: str) -> None:
        if self.completed is not None:
            raise InvalidTransition(
                f"task {self.task_id} was completed on {self.completed.completed_on}; "
                f"there is nothing left to {verb}"
            )

    # --- fold --------------------------------------------------------------------------------

    def _on_TaskAssigned(self, e: TaskAssigned) -> None:
        self.assigned = e
        self.due_on = e.due_on
        self.recorded_deadline = e.deadline

    def _on_TaskDeadlineRecomputed(self, e: TaskDeadlineRecomputed) -> None:
        self.recorded_deadline = e.deadline

    def _on_TaskProgressReported(self, e: TaskProgressReported) -> None:
        self.percent = e.percent
        self.reports.append(Report(e.percent, e.note, e.evidence, e.reported_by, e.reported_on))

    def _on_TaskCompleted(self, e: TaskCompleted) -> None:
        self.completed = e
        self.percent = 100
        self.status = TaskStatus.COMPLETED
        self.level = None

    def _on_TaskOverdue(self, e: TaskOverdue) -> None:
        self.status = TaskStatus.OVERDUE
        self.level = "village"

    def _on_TaskEscalated(self, e: TaskEscalated) -> None:
        self.level = e.level

    def _on_TaskRescheduled(self, e: TaskRescheduled) -> None:
        self.due_on = e.due_on
        self.recorded_deadline = e.deadline
        # The new due day is still ahead (``reschedule`` checks it): the task is open again.
        self.status = TaskStatus.OPEN
        self.level = None


def _valid(draft: TaskDraft) -> TaskAssigned:
    if not draft.task_id.strip():
        raise DomainError("a task needs an id", field="task_id")
    if not draft.title.strip():
        raise DomainError(f"say what task {draft.task_id} is", field="title")
    if not draft.assignee.id.strip():
        raise DomainError(f"task {draft.task_id} needs an assignee", field="assignee")
    check_due_date(draft.starts_on, draft.due_on)
    if not 0 < draft.weight <= MAX_WEIGHT:
        raise DomainError(
            f"a task's weight is above 0 and at most {MAX_WEIGHT:g}, not {draft.weight}",
            field="weight",
        )
    if draft.source == "forum_resolution" and not (draft.forum_id and draft.resolution_id):
        raise DomainError(
            "a forum resolution's task names its forum and resolution", field="forum_id"
        )
    if draft.source == "campaign_target" and not (draft.campaign_id and draft.village_id):
        raise DomainError("a campaign target names its campaign and village", field="campaign_id")
    return draft.event()


def _origin(e: TaskAssigned) -> str:
    if e.source == "forum_resolution":
        return f"by resolution {e.resolution_id} of forum {e.forum_id}"
    return f"as a target of campaign {e.campaign_id} for village {e.village_id}"
