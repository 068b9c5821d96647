"""Events of tracked work items: forum resolution tasks and campaign targets (任务).

A task is assigned once (``TaskAssigned``), reported on by its assignee or the township office
(``TaskProgressReported``), completed with evidence or a summary (``TaskCompleted``), and when
its due day passes unfinished it becomes overdue (``TaskOverdue``) and then escalates from the
village to the township and to the county (``TaskEscalated``, one event per step). The
township office or the county may move its due date (``TaskRescheduled``); its deadline moves
by itself when the holiday calendar learns the year of its due day (``TaskDeadlineRecomputed``).

Every event carries the task id (the key on Kafka) and the township, so a consumer can route it
without folding; ``TaskAssigned`` carries everything else once.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from cunzhi_platform.events import Event
from pydantic import BaseModel, ConfigDict

from .base import registry

TaskSource = Literal["forum_resolution", "campaign_target"]
"""Where the task comes from: a forum's resolution (meetings) or a weak-village campaign."""

AssigneeKind = Literal["village", "person"]

EscalationLevel = Literal["village", "township", "county"]
"""Who is answerable for an overdue task: the village (or person) itself, then the township
party committee, then the county organisation department."""

EvidenceKind = Literal["text", "file"]


class ValueObject(BaseModel):
    """A value nested in an event: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Assignee(ValueObject):
    """Who does the task: a village (its two committees, led by the secretary) or a person."""

    kind: AssigneeKind
    id: str
    name: str = ""


class Evidence(ValueObject):
    """Proof of work: a text, or a file by reference (its id or URL in the document store)."""

    kind: EvidenceKind
    value: str
    title: str = ""


@registry.register("cunzhi.rectification.TaskAssigned", version=1)
class TaskAssigned(Event):
    """A tracked work item was assigned (任务下达): to a village or a person, with a due date.

    From a forum resolution: ``forum_id``, ``resolution_id``, ``topic_id`` are set (and
    ``task_id`` is the id the resolution gave the task). From a campaign target:
    ``campaign_id``, ``village_id``, ``area`` (and ``kind``) are set.
    """

    task_id: str
    source: TaskSource
    township_id: str
    village_id: str | None = None
    """The village the task concerns (a village assignee's own; a campaign target's village)."""
    assignee: Assignee
    title: str
    starts_on: dt.date
    due_on: dt.date
    deadline: dt.datetime
    """When it becomes overdue: the end of the due day in Asia/Shanghai, or of the next working
    day when the due day is a rest day."""
    weight: float = 1.0
    """Its share in a weighted roll-up of progress (campaign targets); 1 when unweighted."""
    forum_id: str | None = None
    resolution_id: str | None = None
    topic_id: str | None = None
    campaign_id: str | None = None
    area: str | None = None
    """The campaign's area of work (领域), e.g. 班子队伍建设."""
    kind: str | None = None
    """The campaign's task kind (具体工作任务), one of its catalogue."""


@registry.register("cunzhi.rectification.TaskProgressReported", version=1)
class TaskProgressReported(Event):
    """The assignee or the township office reported how far the task is (进展报告)."""

    task_id: str
    township_id: str
    percent: int
    previous_percent: int
    note: str = ""
    evidence: tuple[Evidence, ...] = ()
    reported_by: str
    reported_on: dt.date


@registry.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(Event):
    """A task assigned by a forum resolution (or a campaign) was done (任务完成)."""

    task_id: str
    forum_id: str | None = None
    township_id: str
    completed_on: dt.date
    summary: str = ""
    evidence: tuple[Evidence, ...] = ()
    completed_by: str | None = None
    campaign_id: str | None = None
    village_id: str | None = None


@registry.register("cunzhi.rectification.TaskOverdue", version=1)
class TaskOverdue(Event):
    """The task's due day ended unfinished (逾期): the village (or person) is answerable.

    ``deadline`` is the end of the due day in Asia/Shanghai; a due day that is not a working day
    runs to the end of the next working day.
    """

    task_id: str
    township_id: str
    village_id: str | None = None
    assignee: Assignee
    due_on: dt.date
    deadline: dt.datetime
    percent: int
    forum_id: str | None = None
    campaign_id: str | None = None


@registry.register("cunzhi.rectification.TaskEscalated", version=1)
class TaskEscalated(Event):
    """An overdue task is raised one level (逐级督办): village → township → county."""

    task_id: str
    township_id: str
    village_id: str | None = None
    level: Literal["township", "county"]
    previous_level: EscalationLevel
    working_days_overdue: int
    due_on: dt.date
    forum_id: str | None = None
    campaign_id: str | None = None


@registry.register("cunzhi.rectification.TaskRescheduled", version=1)
class TaskRescheduled(Event):
    """The due date moved (调整期限), with the reason; an overdue task may become due again."""

    task_id: str
    township_id: str
    previous_due_on: dt.date
    due_on: dt.date
    deadline: dt.datetime
    reason: str
    rescheduled_by: str


@registry.register("cunzhi.rectification.TaskDeadlineRecomputed", version=1)
class TaskDeadlineRecomputed(Event):
    """The task's deadline moved because the holiday calendar (``chinese-calendar``) learned
    the year of its due day: the deadline had been computed with the Monday–Friday fallback,
    and the State Council's arrangement for that year makes another day the last working day.
    The due date itself is unchanged."""

    task_id: str
    township_id: str
    village_id: str | None = None
    due_on: dt.date
    previous_deadline: dt.datetime
    deadline: dt.datetime
    calendar_years: tuple[int, ...]
    """The years the calendar newly knows that this recomputation was made for."""
    forum_id: str | None = None
    campaign_id: str | None = None
