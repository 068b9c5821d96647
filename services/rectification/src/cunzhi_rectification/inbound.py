"""What rectification reads of other services' events: tolerant readers, only the fields used.

Registered under the producer's type name and schema version; ``reader_breaks`` checks them
against ``docs/events/<producer>/`` in the suite. Rectification imports no other service.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import EventRegistry, Reader
from pydantic import BaseModel, ConfigDict

readers = EventRegistry()


class ForumTask(BaseModel):
    """A task a resolution assigns: to a village or a person, with a due date."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    task_id: str
    assignee_village_id: str | None = None
    assignee_person_id: str | None = None
    description: str
    due_date: dt.date


@readers.register("cunzhi.meetings.ResolutionAdopted", version=1)
class ResolutionAdopted(Reader):
    """meetings: a forum adopted a resolution; its tasks are tracked here."""

    resolution_id: str
    forum_id: str
    township_id: str
    topic_id: str
    tasks: tuple[ForumTask, ...]
