"""Consumers: the directory fed by meetings' roster, and the notices other services' events ask for.

Everything a message causes is written in the consumer's transaction (``Tx``): directory rows,
ledger rows, reminders and our ``NotificationRequested``, with the processed mark. A redelivered
message is dropped by that mark; the ledger's unique key guards the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg
from cunzhi_platform.consumer import Consumer, Tx, caused_by
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from .. import readers as r
from ..domain.kinds import KINDS
from ..domain.reminders import call_closing_due, day_text, forum_eve_due, moment_text
from .ledger import Ledger, Notice, derived_id

ROSTER_ROLES = {
    "leadership": "township_leadership",
    "middle_cadre": "middle_cadre",
    "village_secretary": "village_secretary",
}
"""meetings' roster roles as directory roles (领导班子, 中层干部, 村党支部书记)."""

CALL_RECIPIENT_ROLES = ["village_secretary", "station_head"]
"""Who is asked for topics: every village secretary and station head (站所负责人)."""

TOPIC_STATES: dict[type[r.TopicChange], str] = {
    r.TopicMergedInto: "已与其他议题合并",
    r.TopicSelected: "已被选为本期论坛议题",
    r.TopicDeferred: "暂缓，转入下期征集",
    r.TopicReferred: "已转交相关部门办理",
    r.TopicDeclined: "未被采纳",
    r.TopicResolved: "已解决",
}


class RosterDirectory(Consumer):
    """meetings' roster → people in the directory, with their roster role."""

    name = "roster_directory"
    topics: ClassVar = [topic_for("meetings")]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        s = f'"{tx.store.schema}"'
        if isinstance(event, r.RosterMemberAdded | r.RosterMemberUpdated):
            role = ROSTER_ROLES.get(event.role, event.role)
            # Our own API may have added e-mail and robot ids: the roster only updates its part.
            await tx.conn.execute(
                f"""INSERT INTO {s}.people (person_id, name, roles, township_id, village_id, phone)
                    VALUES ($1, $2, ARRAY[$3], $4, $5, $6)
                    ON CONFLICT (person_id) DO UPDATE SET name = $2,
                        roles = (SELECT array_agg(DISTINCT x) FROM unnest(
                            people.roles || ARRAY[$3]) x),
                        township_id = $4, village_id = $5,
                        phone = coalesce($6, people.phone), active = true, updated_at = now()""",
                event.person_id,
                event.name,
                role,
                event.township_id,
                event.village_id,
                event.phone,
            )
        elif isinstance(event, r.RosterMemberRemoved):
            await tx.conn.execute(
                f"UPDATE {s}.people SET active = false, updated_at = now() WHERE person_id = $1",
                event.person_id,
            )


class Planner(Consumer):
    """Other services' events → notices in the ledger, reminders scheduled, moved, cancelled."""

    name = "planner"
    topics: ClassVar = [topic_for("topics"), topic_for("meetings")]

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = channels

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        planner = _Planning(tx, envelope, Ledger(tx.store.schema, self.channels))
        await planner.on(event)


class _Planning:
    def __init__(self, tx: Tx, envelope: Envelope, ledger: Ledger) -> None:
        self.tx, self.envelope, self.ledger = tx, envelope, ledger
        self.conn: asyncpg.Connection = tx.conn
        self.s = f'"{tx.store.schema}"'
        self.now = tx.store.clock.now()

    async def notify(
        self,
        kind: str,
        township_id: str | None,
        subject_ref: str,
        context: dict[str, Any],
        recipients: Sequence[str],
    ) -> None:
        notice = Notice(
            self.envelope.id,
            self.envelope.type,
            KINDS[kind],
            township_id,
            subject_ref,
            context,
            recipients,
        )
        await self.ledger.plan(self.conn, self.tx.store, notice, self.now, caused_by(self.envelope))

    async def on(self, event: Event) -> None:
        if isinstance(event, r.CallForTopicsOpened):
            await self.call_opened(event)
        elif isinstance(event, r.TopicSubmitted):
            await self.submitted(event)
        elif isinstance(event, r.TopicChange) and type(event) in TOPIC_STATES:
            await self.topic_changed(event)
        elif isinstance(event, r.ForumNoticeIssued):
            await self.forum_notice(event)
        elif isinstance(event, r.ForumPostponed):
            await self.forum_postponed(event)
        elif isinstance(event, r.ForumCancelled):
            await self.forum_cancelled(event)

    async def call_opened(self, e: r.CallForTopicsOpened) -> None:
        recipients = [
            row["person_id"]
            for row in await self.conn.fetch(
                f"""SELECT person_id FROM {self.s}.people
                    WHERE township_id = $1 AND active AND roles && $2::text[]
                    ORDER BY person_id""",
                e.township_id,
                CALL_RECIPIENT_ROLES,
            )
        ]
        context = {"forum_date": day_text(e.forum_date), "closes_at": moment_text(e.closes_at)}
        await self.notify("call_opened", e.township_id, f"call:{e.forum_id}", context, recipients)
        await self.schedule(
            "call_closing",
            e.forum_id,
            e.township_id,
            call_closing_due(e.closes_at),
            context,
            recipients,
            subject_ref=f"call:{e.forum_id}",
        )

    async def submitted(self, e: r.TopicSubmitted) -> None:
        await self.conn.execute(
            f"""INSERT INTO {self.s}.submissions (forum_id, topic_id, person_id, village_id,
                    station_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            e.forum_id,
            e.topic_id,
            e.submitted_by,
            e.submitter_village_id,
            e.submitter_station_id,
        )
        await self.conn.execute(
            f"""INSERT INTO {self.s}.topic_titles VALUES ($1, $2)
                ON CONFLICT (topic_id) DO UPDATE SET title = $2""",
            e.topic_id,
            e.title,
        )

    async def topic_changed(self, e: r.TopicChange) -> None:
        title = getattr(e, "title", None) or await self.conn.fetchval(
            f"SELECT title FROM {self.s}.topic_titles WHERE topic_id = $1", e.topic_id
        )
        reason = None
        if isinstance(e, r.TopicDeclined):
            reason = e.reason
        elif isinstance(e, r.TopicReferred):
            reason = f"转交{e.department}"
        elif isinstance(e, r.TopicMergedInto):
            reason = f"并入议题{e.merged_into}"
        context = {"title": title or e.topic_id, "state": TOPIC_STATES[type(e)], "reason": reason}
        await self.notify(
            "topic_progress", e.township_id, f"topic:{e.topic_id}", context, e.submitter_ids
        )

    async def forum_notice(self, e: r.ForumNoticeIssued) -> None:
        await self.known(e.township_id, e.attendees)
        context = {
            "number": e.number,
            "date": day_text(e.date),
            "place": e.place,
            "topic_title": e.topic_title,
        }
        recipients = [a.person_id for a in e.attendees]
        await self.notify("forum_notice", e.township_id, f"forum:{e.forum_id}", context, recipients)
        await self.schedule(
            "forum_eve", e.forum_id, e.township_id, forum_eve_due(e.date), context, recipients
        )

    async def forum_postponed(self, e: r.ForumPostponed) -> None:
        context = {
            "previous_date": day_text(e.previous_date),
            "date": day_text(e.date),
            "reason": e.reason,
        }
        recipients = [a.person_id for a in e.attendees_to_inform]
        await self.notify(
            "forum_postponed", e.township_id, f"forum:{e.forum_id}", context, recipients
        )
        await self.conn.execute(
            f"""UPDATE {self.s}.reminders SET due_at = $3,
                    context = context || jsonb_build_object('date', $4::text)
                WHERE cancel_key = $1 AND kind = $2 AND status = 'scheduled'""",
            f"forum:{e.forum_id}",
            "forum_eve",
            forum_eve_due(e.date),
            day_text(e.date),
        )

    async def forum_cancelled(self, e: r.ForumCancelled) -> None:
        recipients = [a.person_id for a in e.attendees_to_inform]
        await self.notify(
            "forum_cancelled",
            e.township_id,
            f"forum:{e.forum_id}",
            {"reason": e.reason},
            recipients,
        )
        await self.conn.execute(
            f"""UPDATE {self.s}.reminders SET status = 'cancelled'
                WHERE cancel_key = $1 AND status = 'scheduled'""",
            f"forum:{e.forum_id}",
        )
        # A notice of the forum still held for quiet hours would now only mislead.
        await self.conn.execute(
            f"""UPDATE {self.s}.deliveries d SET status = 'cancelled'
                FROM {self.s}.notices n
                WHERE n.subject_ref = $1 AND n.kind IN ('forum_notice', 'forum_eve')
                  AND d.source_event_id = n.source_event_id AND d.kind = n.kind
                  AND d.status = 'pending'""",
            f"forum:{e.forum_id}",
        )

    async def known(self, township_id: str, attendees: Sequence[r.Attendee]) -> None:
        """Attendees the directory does not know yet (invited guests): inbox only for now."""
        await self.conn.execute(
            f"""INSERT INTO {self.s}.people (person_id, name, roles, township_id, village_id)
                SELECT p, n, ARRAY[ro], $4, v
                FROM unnest($1::text[], $2::text[], $3::text[], $5::text[]) AS t(p, n, ro, v)
                ON CONFLICT (person_id) DO NOTHING""",
            [a.person_id for a in attendees],
            [a.name for a in attendees],
            [a.role for a in attendees],
            township_id,
            [a.village_id for a in attendees],
        )

    async def schedule(
        self,
        kind: str,
        forum_id: str,
        township_id: str,
        due_at: dt.datetime,
        context: dict[str, Any],
        recipients: Sequence[str],
        *,
        subject_ref: str | None = None,
    ) -> None:
        """A reminder keyed by its forum; a second notice (after a postponement) replaces it."""
        if due_at <= self.now:
            return  # the moment has passed: a late reminder would only confuse
        key = f"forum:{forum_id}"
        await self.conn.execute(
            f"""INSERT INTO {self.s}.reminders (reminder_id, cancel_key, kind, due_at,
                    township_id, subject_ref, context, recipients)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (cancel_key, kind) DO UPDATE SET due_at = $4, context = $7,
                    recipients = $8, status = 'scheduled', fired_at = NULL""",
            derived_id(key, kind),
            key,
            kind,
            due_at,
            township_id,
            subject_ref or key,
            context,
            list(recipients),
        )
