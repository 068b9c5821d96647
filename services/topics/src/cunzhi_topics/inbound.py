"""What the topics service reads of other services' events: tolerant readers.

Only the fields topics uses, under the producers' type names and schema versions. Topics
never imports meetings or rectification: the suite checks these readers against the schemas
those services publish (docs/events), so either side can be upgraded on its own.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import EventRegistry, Reader

readers = EventRegistry()


@readers.register("cunzhi.meetings.ForumPlanned", version=1)
class ForumPlanned(Reader):
    """A township planned a forum: its call for topics is scheduled from the date."""

    forum_id: str
    township_id: str
    date: dt.date


@readers.register("cunzhi.meetings.ForumPostponed", version=1)
class ForumPostponed(Reader):
    """The forum moved to ``date``: its call for topics moves with it."""

    forum_id: str
    township_id: str
    date: dt.date
    reason: str


@readers.register("cunzhi.meetings.ForumCancelled", version=1)
class ForumCancelled(Reader):
    """The forum will not take place: its call is cancelled, its topics go to the next one."""

    forum_id: str
    township_id: str
    reason: str


@readers.register("cunzhi.meetings.ForumHeld", version=1)
class ForumHeld(Reader):
    """The forum met on its topic (a step of the topic's timeline)."""

    forum_id: str
    topic_id: str
    number: int
    date: dt.date


class ForumTask(Reader):
    task_id: str


@readers.register("cunzhi.meetings.ResolutionAdopted", version=1)
class ResolutionAdopted(Reader):
    """A forum's resolution: the tasks whose completion resolves the forum's topic."""

    forum_id: str
    township_id: str
    topic_id: str
    title: str
    tasks: tuple[ForumTask, ...]


@readers.register("cunzhi.meetings.ForumClosed", version=1)
class ForumClosed(Reader):
    """Every task of the forum is done (or it assigned none)."""

    forum_id: str
    topic_id: str


@readers.register("cunzhi.rectification.TaskProgressReported", version=1)
class TaskProgressReported(Reader):
    """How far a task has gone (a step of its forum's topic's timeline)."""

    task_id: str
    percent: int
    note: str = ""


@readers.register("cunzhi.meetings.SpeakUpSessionHeld", version=1)
class SpeakUpSessionHeld(Reader):
    """A village's speak-up session (逢五说事) and the issues raised at it, by id."""

    session_id: str
    village_id: str
    date: dt.date
    issue_ids: tuple[str, ...] = ()


@readers.register("cunzhi.rectification.TaskCompleted", version=1)
class TaskCompleted(Reader):
    """A tracked task was done; ``forum_id`` is None for a campaign's own tasks."""

    task_id: str
    forum_id: str | None = None
    township_id: str
    summary: str = ""
