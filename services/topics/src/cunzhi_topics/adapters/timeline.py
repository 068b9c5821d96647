"""What the topics service keeps of other services' steps: a topic's timeline, and the
speak-up session each issue was raised at.

A topic's timeline (议题全过程): every step in words, with who took it and when.

From submission to resolution, across services: the topic's own events, the forum that met
on it and its resolutions (meetings), and the tasks those resolutions assigned (rectification).
A task event names its forum, not the topic: it is kept under the forum and shown on the
timeline of the topic that forum was held on. People asked for this on civic platforms and
rarely got it: a submitter sees what became of their problem.

Not rebuildable from the topics event store, since half of it comes from other services:
rebuilding it means reading their topics again (a new consumer group).
"""

from __future__ import annotations

from typing import Any, ClassVar

from cunzhi_platform.consumer import Consumer, Tx
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ..events import (
    SERVICE,
    TopicCarriedOver,
    TopicDeclined,
    TopicDeferred,
    TopicMergedInto,
    TopicRecategorised,
    TopicReferralAnswered,
    TopicReferred,
    TopicResolved,
    TopicReturned,
    TopicRevised,
    TopicSelected,
    TopicShortlisted,
    TopicsMerged,
    TopicSubmitted,
    TopicSupported,
    TopicWithdrawn,
)
from ..inbound import (
    ForumHeld,
    ResolutionAdopted,
    SpeakUpSessionHeld,
    TaskCompleted,
    TaskProgressReported,
)


def step(event: Event) -> tuple[str, str] | None:
    """(step, the step in words) of an event on a topic's timeline; None if it is not one."""
    match event:
        case TopicSubmitted():
            return "submitted", f"提交议题《{event.title}》"
        case TopicRevised():
            return "revised", f"修改议题为《{event.title}》"
        case TopicWithdrawn():
            return "withdrawn", "撤回议题" + (f"：{event.reason}" if event.reason else "")
        case TopicSupported():
            return "supported", f"村 {event.supporter_village_id} 附议"
        case TopicsMerged():
            return "merged", f"合并同类议题 {'、'.join(event.merged_topic_ids)}"
        case TopicMergedInto():
            return "merged_into", f"并入议题 {event.merged_into}"
        case TopicShortlisted():
            return "shortlisted", "党建办列入候选议题"
        case TopicRecategorised():
            return "recategorised", f"议题类别由 {event.previous_category} 改为 {event.category}"
        case TopicSelected():
            return "selected", f"乡党委选定为论坛 {event.forum_id} 的议题"
        case TopicDeferred():
            return "deferred", "暂缓研究，转入下一期议题征集"
        case TopicReturned():
            return "returned", f"论坛取消（{event.reason}），议题转入下一期议题征集"
        case TopicCarriedOver():
            return "carried_over", f"转入论坛 {event.forum_id} 的议题征集"
        case TopicReferred():
            return "referred", f"转交{event.department}办理"
        case TopicReferralAnswered():
            said = {"accepted": "已受理", "done": "已办结", "returned": "退回，转入下一期议题征集"}
            answer = f"{event.department}答复：{said[event.answer]}"
            return "referral_answered", answer + (f"（{event.note}）" if event.note else "")
        case TopicDeclined():
            return "declined", f"不予采纳：{event.reason}"
        case TopicResolved():
            return "resolved", "论坛部署的工作全部完成，问题解决"
        case ForumHeld():
            return "forum_held", f"第{event.number}期乡村干部论坛于{event.date}召开，研究本议题"
        case ResolutionAdopted():
            return "resolution_adopted", f"论坛通过《{event.title}》，部署任务{len(event.tasks)}项"
        case TaskProgressReported():
            progress = f"任务 {event.task_id} 进度 {event.percent}%"
            return "task_progress", progress + (f"：{event.note}" if event.note else "")
        case TaskCompleted():
            done = f"任务 {event.task_id} 完成"
            return "task_completed", done + (f"：{event.summary}" if event.summary else "")
        case _:
            return None


class Timeline(Consumer):
    name = "timeline"
    topics: ClassVar = [topic_for(SERVICE), topic_for("meetings"), topic_for("rectification")]
    tables: ClassVar = {
        "topic_timeline": """CREATE TABLE IF NOT EXISTS {table} (
            event_id uuid PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            topic_id text,
            forum_id text,
            task_id text,
            occurred_at timestamptz NOT NULL,
            step text NOT NULL,
            description text NOT NULL,
            actor text)""",
        # A task's progress names the task only: its forum comes from the resolution.
        "timeline_tasks": """CREATE TABLE IF NOT EXISTS {table} (
            task_id text PRIMARY KEY,
            forum_id text NOT NULL)""",
    }
    indexes: ClassVar = {"topic_timeline": ["topic_id", "forum_id", "task_id"]}

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        found = step(event)
        if found is None:
            return
        if isinstance(event, TaskCompleted) and event.forum_id is None:
            return  # a campaign's task, on no topic's timeline
        if isinstance(event, ResolutionAdopted):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('timeline_tasks')} SELECT unnest($1::text[]), $2 "
                "ON CONFLICT DO NOTHING",
                [task.task_id for task in event.tasks],
                event.forum_id,
            )
        topic_id: Any = getattr(event, "topic_id", None)
        await tx.conn.execute(
            f"INSERT INTO {tx.t('topic_timeline')} (event_id, topic_id, forum_id, task_id, "
            "occurred_at, step, description, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING",
            envelope.id,
            topic_id,
            getattr(event, "forum_id", None),
            getattr(event, "task_id", None),
            envelope.time,
            *found,
            envelope.actor,
        )


class SpeakUpLinks(Consumer):
    """Which speak-up session (逢五说事) each issue was raised at, from meetings' record of it.

    Its own table, beside the issues read model: it comes from another service's events, so a
    rebuild of the issues from the topics store must not lose it.
    """

    name = "speak_up_links"
    topics: ClassVar = [topic_for("meetings")]
    tables: ClassVar = {
        "issue_sessions": """CREATE TABLE IF NOT EXISTS {table} (
            issue_id text PRIMARY KEY,
            session_id text NOT NULL,
            session_date date NOT NULL)""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, SpeakUpSessionHeld) and event.issue_ids:
            await tx.conn.execute(
                f"INSERT INTO {tx.t('issue_sessions')} "
                "SELECT unnest($1::text[]), $2, $3 ON CONFLICT DO NOTHING",
                list(event.issue_ids),
                event.session_id,
                event.date,
            )
