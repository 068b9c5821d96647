"""meetings ``ResolutionAdopted`` → the resolution's tasks are tracked here.

The tasks are assigned in the consumer's transaction (``conn=tx.conn``), so they commit with the
processed mark, and a redelivery (the same event id) is skipped; a copy under another id finds
the tasks already assigned exactly so and appends nothing. A refusal by the domain (a task id
already tracked for another forum) is logged and the message skipped: a dead letter would only
page someone for a decision the domain already made.
"""

from __future__ import annotations

from typing import ClassVar

from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.consumer import Consumer, Tx, caused_by, skipping_refusals
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ...application.tasks import assign_tasks
from ...domain.tasks import TaskDraft
from ...events import Assignee
from ...inbound import ResolutionAdopted

MEETINGS_TOPIC = topic_for("meetings")


def drafts_of(resolution: ResolutionAdopted, envelope: Envelope) -> list[TaskDraft]:
    adopted_on = envelope.time.astimezone(SHANGHAI).date()
    return [
        TaskDraft(
            task_id=task.task_id,
            source="forum_resolution",
            township_id=resolution.township_id,
            assignee=(
                Assignee(kind="village", id=task.assignee_village_id)
                if task.assignee_village_id is not None
                else Assignee(kind="person", id=task.assignee_person_id or "")
            ),
            title=task.description,
            # A resolution may be recorded after the forum, and meetings accepts due dates from
            # the forum day on: a task must not start after it is due, or it would be refused
            # and the forum could never close.
            starts_on=min(adopted_on, task.due_date),
            due_on=task.due_date,
            forum_id=resolution.forum_id,
            resolution_id=resolution.resolution_id,
            topic_id=resolution.topic_id,
        )
        for task in resolution.tasks
    ]


class ResolutionTasksPolicy(Consumer):
    name = "resolution_tasks"
    topics: ClassVar = [MEETINGS_TOPIC]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if not isinstance(event, ResolutionAdopted) or not event.tasks:
            return  # a policy document alone tracks nothing
        drafts = drafts_of(event, envelope)
        await skipping_refusals(
            lambda: assign_tasks(tx.store, drafts, caused_by(envelope), conn=tx.conn), envelope
        )
