"""The ``tasks`` read model: one row per tracked work item, from the service's own events.

Serves the lists by township, village, assignee, forum, campaign and status, the overdue list,
per-forum counts, and the deadline timer (``deadline_at`` and ``escalation_level`` find the
tasks the clock has reached with one indexed range query). Rebuildable from the event store.
"""

from __future__ import annotations

from typing import ClassVar

from cunzhi_platform.consumer import Consumer, Tx, table_names
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ...domain.tasks import TaskStatus
from ...events import (
    SERVICE,
    TaskAssigned,
    TaskCompleted,
    TaskDeadlineRecomputed,
    TaskEscalated,
    TaskOverdue,
    TaskProgressReported,
    TaskRescheduled,
)


class TasksProjection(Consumer):
    name = "tasks"
    topics: ClassVar = [topic_for(SERVICE)]
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    indexes: ClassVar = {
        "tasks": [
            "township_id, status, due_on",
            "village_id, status",
            "assignee_id, status",
            "forum_id",
            "campaign_id, status",
            "status, deadline_at",
        ]
    }
    tables: ClassVar = {
        "tasks": """
            CREATE TABLE IF NOT EXISTS {table} (
                task_id text PRIMARY KEY,
                source text NOT NULL,
                township_id text NOT NULL,
                village_id text,
                assignee_kind text NOT NULL,
                assignee_id text NOT NULL,
                assignee_name text NOT NULL,
                title text NOT NULL,
                starts_on date NOT NULL,
                due_on date NOT NULL,
                deadline_at timestamptz NOT NULL,
                weight double precision NOT NULL,
                forum_id text,
                resolution_id text,
                topic_id text,
                campaign_id text,
                area text,
                kind text,
                status text NOT NULL,
                percent integer NOT NULL DEFAULT 0,
                escalation_level text,
                reports integer NOT NULL DEFAULT 0,
                last_reported_on date,
                overdue_since timestamptz,
                completed_on date,
                completed_by text,
                summary text,
                assigned_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        t = tx.t("tasks")
        set_ = f"UPDATE {t} SET updated_at = $2, "
        match event:
            case TaskAssigned():
                await tx.conn.execute(
                    f"INSERT INTO {t} (task_id, source, township_id, village_id, assignee_kind, "
                    "assignee_id, assignee_name, title, starts_on, due_on, deadline_at, weight, "
                    "forum_id, resolution_id, topic_id, campaign_id, area, kind, status, "
                    "assigned_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                    "$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20) "
                    "ON CONFLICT (task_id) DO NOTHING",
                    event.task_id,
                    event.source,
                    event.township_id,
                    event.village_id,
                    event.assignee.kind,
                    event.assignee.id,
                    event.assignee.name,
                    event.title,
                    event.starts_on,
                    event.due_on,
                    event.deadline,
                    event.weight,
                    event.forum_id,
                    event.resolution_id,
                    event.topic_id,
                    event.campaign_id,
                    event.area,
                    event.kind,
                    TaskStatus.OPEN,
                    envelope.time,
                )
            case TaskProgressReported():
                await tx.conn.execute(
                    set_ + "percent = $3, reports = reports + 1, last_reported_on = $4 "
                    "WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    event.percent,
                    event.reported_on,
                )
            case TaskCompleted():
                await tx.conn.execute(
                    set_
                    + "status = $3, percent = 100, escalation_level = NULL, completed_on = $4, "
                    "completed_by = $5, summary = $6 WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    TaskStatus.COMPLETED,
                    event.completed_on,
                    event.completed_by,
                    event.summary,
                )
            case TaskOverdue():
                await tx.conn.execute(
                    set_ + "status = $3, escalation_level = 'village', overdue_since = $4 "
                    "WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    TaskStatus.OVERDUE,
                    event.deadline,
                )
            case TaskEscalated():
                await tx.conn.execute(
                    set_ + "escalation_level = $3 WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    event.level,
                )
            case TaskDeadlineRecomputed():
                await tx.conn.execute(
                    set_ + "deadline_at = $3 WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    event.deadline,
                )
            case TaskRescheduled():
                await tx.conn.execute(
                    set_ + "due_on = $3, deadline_at = $4, status = $5, escalation_level = NULL, "
                    "overdue_since = NULL WHERE task_id = $1",
                    event.task_id,
                    envelope.time,
                    event.due_on,
                    event.deadline,
                    TaskStatus.OPEN,
                )


def tasks_table(schema: str) -> str:
    return table_names(schema, TasksProjection())["tasks"]
