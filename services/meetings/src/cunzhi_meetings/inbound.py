"""What the meetings service reads of other services' events: tolerant readers.

Only the fields meetings uses, under the producers' type names and schema versions. Meetings
never imports topics or rectification: the suite checks these readers against the schemas
those services publish (docs/events), so either side can be upgraded on its own.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import EventRegistry, Reader

readers = EventRegistry()


@readers.register("cunzhi.topics.TopicSelected", version=1)
class TopicSelected(Reader):
    """The committee picked the forum's topic (议题)."""

    forum_id: str
    topic_id: str
    title: str
    category: str


@readers.register("cunzhi.topics.IssueRaised", version=1)
class IssueRaised(Reader):
    """A villager's problem on a village's claim list: a speak-up session names it."""

    issue_id: str
    township_id: str
    village_id: str
    title: str


@readers.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(Reader):
    """A tracked task was done; ``forum_id`` is None for a campaign's own tasks."""

    task_id: str
    forum_id: str | None = None
    completed_on: dt.date
