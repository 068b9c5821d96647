"""Events the rectification service publishes on ``cunzhi.rectification.events``.

The service itself is not built yet; this is its published contract, which topics and
meetings consume (a forum's tasks completing resolves its topic and closes the forum).
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import Event, EventRegistry

SERVICE = "rectification"
registry = EventRegistry()


@registry.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(Event):
    """A task assigned by a forum resolution (or a campaign) was done (任务完成)."""

    task_id: str
    forum_id: str | None = None
    township_id: str
    completed_on: dt.date
    summary: str = ""
