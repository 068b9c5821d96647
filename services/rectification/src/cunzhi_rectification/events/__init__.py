"""Events the rectification service publishes on ``cunzhi.rectification.events``.

Grouped by subject: ``tasks``, every tracked work item (forum resolution tasks and campaign
targets); ``campaign``, the weak-village campaign (薄弱村整顿攻坚).
"""

from __future__ import annotations

from . import campaign
from .base import SERVICE, registry
from .tasks import (
    Assignee,
    AssigneeKind,
    EscalationLevel,
    Evidence,
    EvidenceKind,
    TaskAssigned,
    TaskCompleted,
    TaskDeadlineRecomputed,
    TaskEscalated,
    TaskOverdue,
    TaskProgressReported,
    TaskRescheduled,
    TaskSource,
)

__all__ = [
    "SERVICE",
    "Assignee",
    "AssigneeKind",
    "EscalationLevel",
    "Evidence",
    "EvidenceKind",
    "TaskAssigned",
    "TaskCompleted",
    "TaskDeadlineRecomputed",
    "TaskEscalated",
    "TaskOverdue",
    "TaskProgressReported",
    "TaskRescheduled",
    "TaskSource",
    "campaign",
    "registry",
]
