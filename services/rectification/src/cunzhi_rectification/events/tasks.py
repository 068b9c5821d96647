"""Events of tracked work items: forum resolution tasks and campaign targets (任务)."""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import Event

from .base import registry


@registry.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(Event):
    """A task assigned by a forum resolution (or a campaign) was done (任务完成)."""

    task_id: str
    forum_id: str | None = None
    township_id: str
    completed_on: dt.date
    summary: str = ""
