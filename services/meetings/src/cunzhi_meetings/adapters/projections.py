"""Read models of the meetings service, projected from its own events (all rebuildable).

- ``forums``: one row per forum, the calendar and the forum's full record at once (topic,
  notice, attendees and attendance, activities, minutes, resolutions, task progress), plus
  ``notice_due_at`` so the notice timer finds candidates with one indexed-range query.
- ``record_forums``/``record_experts``/``record_sharers`` and ``attendance``: a township's
  record and attendance rates, by the rules of ``domain.record``: activities count only for
  forums actually held, experts by name and sharing secretaries by person, once each.
- ``roster``: the township's default attendees.
- ``speak_up_sessions``/``contests``: the other recurring meetings, for the county overview.
"""

from __future__ import annotations

from typing import ClassVar

from cunzhi_platform.consumer import Consumer, Tx
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ..domain import ForumStatus, notice_due_at
from ..domain.record import guest_key
from ..events import (
    SERVICE,
    ContestHeld,
    ExperienceExchange,
    ExpertLecture,
    ForumCancelled,
    ForumClosed,
    ForumHeld,
    ForumInviteeAdded,
    ForumNoticeIssued,
    ForumPlanned,
    ForumPostponed,
    ForumTaskCompleted,
    ForumTopicSet,
    PastForumRecorded,
    RemarksPrepared,
    ResolutionAdopted,
    RosterMemberAdded,
    RosterMemberRemoved,
    RosterMemberUpdated,
    SpeakUpSessionHeld,
)
from ..inbound import IssueRaised

OWN_TOPIC = topic_for(SERVICE)
EARLIER_FORUM = "least(r.first_forum_id, excluded.first_forum_id)"
"""One forum's events may arrive before an earlier forum's (each forum is its own partition
key): the first forum is the earlier id (``<township>-F<nnn>``, numbers zero-padded), not the
first seen, so the record is the same however it was folded."""


def _json(values: object) -> object:
    """Value objects (tuples of pydantic models) as the JSON a jsonb column takes."""
    if isinstance(values, tuple):
        return [_json(v) for v in values]
    dump = getattr(values, "model_dump", None)
    return dump(mode="json") if dump else values


class ForumsProjection(Consumer):
    name = "forums"
    topics: ClassVar = [OWN_TOPIC]
    # The notice timer looks for forums whose notice is due.
    indexes: ClassVar = {"forums": ["notice_due_at"]}
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    tables: ClassVar = {
        "forums": """
            CREATE TABLE IF NOT EXISTS {table} (
                township_id text NOT NULL,
                number integer NOT NULL,
                forum_id text NOT NULL UNIQUE,
                status text NOT NULL,
                date date NOT NULL,
                place text NOT NULL,
                mode text NOT NULL,
                host_unit text,
                activities jsonb NOT NULL,
                topic jsonb,
                invitees jsonb NOT NULL DEFAULT '[]',
                notice_due_at timestamptz NOT NULL,
                notice jsonb,
                postponements jsonb NOT NULL DEFAULT '[]',
                cancel_reason text,
                attendance jsonb NOT NULL DEFAULT '[]',
                speakers jsonb NOT NULL DEFAULT '[]',
                minutes text,
                resolutions jsonb NOT NULL DEFAULT '[]',
                tasks jsonb NOT NULL DEFAULT '{{}}',
                unknown_task_completions jsonb NOT NULL DEFAULT '[]',
                remarks jsonb NOT NULL DEFAULT '{{}}',
                closed_on date,
                planned_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (township_id, number)
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        t = tx.t("forums")
        set_ = f"UPDATE {t} SET updated_at = $2, "
        match event:
            case ForumPlanned():
                await tx.conn.execute(
                    f"INSERT INTO {t} (township_id, number, forum_id, status, date, place, mode, "
                    "host_unit, activities, notice_due_at, planned_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                    event.township_id,
                    event.number,
                    event.forum_id,
                    ForumStatus.PLANNED,
                    event.date,
                    event.place,
                    event.mode,
                    event.host_unit,
                    _json(event.activities),
                    notice_due_at(event.date),
                    envelope.time,
                )
            case PastForumRecorded():
                resolution = {"title": None, "policies": _json(event.policies), "tasks": []}
                await tx.conn.execute(
                    f"INSERT INTO {t} (township_id, number, forum_id, status, date, place, mode, "
                    "host_unit, activities, topic, resolutions, notice_due_at, closed_on, "
                    "planned_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                    "jsonb_build_array($11::jsonb), $12, $13, $14, $14)",
                    event.township_id,
                    event.number,
                    event.forum_id,
                    ForumStatus.CLOSED if event.problem_solved else ForumStatus.HELD,
                    event.date,
                    event.place,
                    event.mode,
                    event.host_unit,
                    _json(event.activities),
                    {"topic_id": None, "title": event.topic_title, "category": event.category},
                    resolution,
                    notice_due_at(event.date),
                    event.date if event.problem_solved else None,
                    envelope.time,
                )
            case ForumInviteeAdded():
                invitee = event.model_dump(
                    mode="json", include={"person_id", "name", "role", "village_id"}
                )
                await tx.conn.execute(
                    set_
                    + "invitees = invitees || jsonb_build_array($3::jsonb) WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    invitee,
                )
            case ForumTopicSet():
                topic = event.model_dump(mode="json", include={"topic_id", "title", "category"})
                await tx.conn.execute(
                    set_ + "topic = $3 WHERE forum_id = $1", event.forum_id, envelope.time, topic
                )
            case ForumNoticeIssued():
                notice = {
                    "issued_at": event.issued_at.isoformat(),
                    "automatic": event.automatic,
                    "attendees": _json(event.attendees),
                }
                await tx.conn.execute(
                    set_ + "status = $3, notice = $4 WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    ForumStatus.NOTICED,
                    notice,
                )
            case RemarksPrepared():
                remark = event.model_dump(mode="json", include={"name", "summary", "prepared_at"})
                await tx.conn.execute(
                    set_ + "remarks = remarks || jsonb_build_object($3::text, $4::jsonb) "
                    "WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    event.person_id,
                    remark,
                )
            case ForumPostponed():
                postponement = event.model_dump(
                    mode="json", include={"previous_date", "date", "reason"}
                )
                await tx.conn.execute(
                    set_ + "status = $3, date = $4, notice_due_at = $5, notice = NULL, "
                    "postponements = postponements || jsonb_build_array($6::jsonb) "
                    "WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    ForumStatus.POSTPONED,
                    event.date,
                    notice_due_at(event.date),
                    postponement,
                )
            case ForumCancelled():
                await tx.conn.execute(
                    set_ + "status = $3, cancel_reason = $4 WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    ForumStatus.CANCELLED,
                    event.reason,
                )
            case ForumHeld():
                await tx.conn.execute(
                    set_ + "status = $3, attendance = $4, speakers = $5, minutes = $6 "
                    "WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    ForumStatus.HELD,
                    _json(event.attendance),
                    list(event.speakers),
                    event.minutes,
                )
            case ResolutionAdopted():
                resolution = event.model_dump(
                    mode="json", include={"resolution_id", "title", "policies", "tasks"}
                )
                tasks = {
                    t.task_id: {
                        **t.model_dump(mode="json"),
                        "resolution_id": event.resolution_id,
                        "completed_on": None,
                    }
                    for t in event.tasks
                }
                await tx.conn.execute(
                    set_ + "resolutions = resolutions || jsonb_build_array($3::jsonb), "
                    "tasks = tasks || $4::jsonb WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    resolution,
                    tasks,
                )
            case ForumTaskCompleted(known=True):
                await tx.conn.execute(
                    set_ + "tasks = jsonb_set(tasks, ARRAY[$3, 'completed_on'], to_jsonb($4::text))"
                    " WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    event.task_id,
                    event.completed_on.isoformat(),
                )
            case ForumTaskCompleted():
                completion = event.model_dump(mode="json", include={"task_id", "completed_on"})
                await tx.conn.execute(
                    set_ + "unknown_task_completions = unknown_task_completions "
                    "|| jsonb_build_array($3::jsonb) WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    completion,
                )
            case ForumClosed():
                await tx.conn.execute(
                    set_ + "status = $3, closed_on = $4 WHERE forum_id = $1",
                    event.forum_id,
                    envelope.time,
                    ForumStatus.CLOSED,
                    event.closed_on,
                )


class TownshipRecordProjection(Consumer):
    """What each township's forums achieved, and who attended them."""

    name = "township_record"
    topics: ClassVar = [OWN_TOPIC]
    indexes: ClassVar = {"record_forums": ["township_id"]}
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    tables: ClassVar = {
        "record_forums": """
            CREATE TABLE IF NOT EXISTS {table} (
                forum_id text PRIMARY KEY,
                township_id text NOT NULL,
                held boolean NOT NULL DEFAULT false,
                field_visit boolean NOT NULL DEFAULT false,
                closed boolean NOT NULL DEFAULT false
            )""",
        "record_experts": """
            CREATE TABLE IF NOT EXISTS {table} (
                township_id text NOT NULL,
                expert_name text NOT NULL,
                affiliation text NOT NULL,
                first_forum_id text NOT NULL,
                PRIMARY KEY (township_id, expert_name)
            )""",
        "record_sharers": """
            CREATE TABLE IF NOT EXISTS {table} (
                township_id text NOT NULL,
                person_id text NOT NULL,
                name text NOT NULL,
                village_id text,
                affiliation text,
                first_forum_id text NOT NULL,
                PRIMARY KEY (township_id, person_id)
            )""",
        "attendance": """
            CREATE TABLE IF NOT EXISTS {table} (
                forum_id text NOT NULL,
                person_id text NOT NULL,
                township_id text NOT NULL,
                name text NOT NULL,
                role text NOT NULL,
                village_id text,
                status text NOT NULL,
                reason text,
                PRIMARY KEY (township_id, forum_id, person_id)
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, ForumHeld | PastForumRecorded):
            await self._held(tx, event)
        if isinstance(event, ForumHeld):
            await self._attendance(tx, event)
        elif (isinstance(event, PastForumRecorded) and event.problem_solved) or isinstance(
            event, ForumClosed
        ):
            await self._closed(tx, event.forum_id, event.township_id)

    async def _closed(self, tx: Tx, forum_id: str, township_id: str) -> None:
        await tx.conn.execute(
            f"INSERT INTO {tx.t('record_forums')} AS r (forum_id, township_id, closed) "
            "VALUES ($1, $2, true) ON CONFLICT (forum_id) DO UPDATE SET closed = true",
            forum_id,
            township_id,
        )

    async def _held(self, tx: Tx, e: ForumHeld | PastForumRecorded) -> None:
        await tx.conn.execute(
            f"INSERT INTO {tx.t('record_forums')} (forum_id, township_id, held, field_visit) "
            "VALUES ($1, $2, true, $3) ON CONFLICT (forum_id) DO UPDATE "
            "SET held = true, field_visit = excluded.field_visit",
            e.forum_id,
            e.township_id,
            e.mode == "field_visit",
        )
        lectures = [a for a in e.activities if isinstance(a, ExpertLecture)]
        await tx.conn.execute(
            f"INSERT INTO {tx.t('record_experts')} AS r "
            "SELECT $1, name, affiliation, $2 FROM unnest($3::text[], $4::text[]) "
            "AS x(name, affiliation) ON CONFLICT (township_id, expert_name) DO UPDATE "
            f"SET first_forum_id = {EARLIER_FORUM}",
            e.township_id,
            e.forum_id,
            [a.expert_name.strip() for a in lectures],
            [a.affiliation for a in lectures],
        )
        exchanges = [a for a in e.activities if isinstance(a, ExperienceExchange)]
        # A guest has no person id: known by name and affiliation (see domain.record).
        sharers: list[tuple[str, str, str | None, str | None]] = [
            (s.person_id, s.name, s.village_id, None) for a in exchanges for s in a.speakers
        ]
        sharers += [
            (guest_key(g), g.name, None, g.affiliation) for a in exchanges for g in a.guests
        ]
        await tx.conn.executemany(
            f"INSERT INTO {tx.t('record_sharers')} AS r "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (township_id, person_id) DO UPDATE "
            f"SET first_forum_id = {EARLIER_FORUM}",
            [(e.township_id, *sharer, e.forum_id) for sharer in sharers],
        )

    async def _attendance(self, tx: Tx, e: ForumHeld) -> None:
        await tx.conn.executemany(
            f"INSERT INTO {tx.t('attendance')} VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING",
            [
                (
                    e.forum_id,
                    a.person_id,
                    e.township_id,
                    a.name,
                    a.role,
                    a.village_id,
                    a.status,
                    a.reason,
                )
                for a in e.attendance
            ],
        )


class RosterProjection(Consumer):
    name = "roster"
    topics: ClassVar = [OWN_TOPIC]
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    tables: ClassVar = {
        "roster": """
            CREATE TABLE IF NOT EXISTS {table} (
                township_id text NOT NULL,
                person_id text NOT NULL,
                name text NOT NULL,
                role text NOT NULL,
                village_id text,
                phone text,
                PRIMARY KEY (township_id, person_id)
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, RosterMemberAdded | RosterMemberUpdated):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('roster')} VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (township_id, person_id) DO UPDATE SET name = excluded.name, "
                "role = excluded.role, village_id = excluded.village_id, phone = excluded.phone",
                event.township_id,
                event.person_id,
                event.name,
                event.role,
                event.village_id,
                event.phone,
            )
        elif isinstance(event, RosterMemberRemoved):
            await tx.conn.execute(
                f"DELETE FROM {tx.t('roster')} WHERE township_id = $1 AND person_id = $2",
                event.township_id,
                event.person_id,
            )


class OtherMeetingsProjection(Consumer):
    """Speak-up sessions (逢五说事) and contests (擂台比武) as they were recorded."""

    name = "other_meetings"
    topics: ClassVar = [OWN_TOPIC]
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    tables: ClassVar = {
        "speak_up_sessions": """
            CREATE TABLE IF NOT EXISTS {table} (
                session_id text PRIMARY KEY,
                township_id text NOT NULL,
                village_id text NOT NULL,
                date date NOT NULL,
                lunar_day integer NOT NULL,
                attendance_count integer NOT NULL,
                issues_raised jsonb NOT NULL,
                hosted_by text NOT NULL
            )""",
        "contests": """
            CREATE TABLE IF NOT EXISTS {table} (
                contest_id text PRIMARY KEY,
                township_id text NOT NULL,
                year integer NOT NULL,
                quarter integer NOT NULL,
                date date NOT NULL,
                participants jsonb NOT NULL,
                ranking jsonb NOT NULL
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, SpeakUpSessionHeld):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('speak_up_sessions')} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                event.session_id,
                event.township_id,
                event.village_id,
                event.date,
                event.lunar_day,
                event.attendance_count,
                list(event.issues_raised),
                event.hosted_by,
            )
        elif isinstance(event, ContestHeld):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('contests')} VALUES ($1, $2, $3, $4, $5, $6, $7)",
                event.contest_id,
                event.township_id,
                event.year,
                event.quarter,
                event.date,
                _json(event.participants),
                list(event.ranking),
            )


class SpeakUpIssues(Consumer):
    """The speak-up issues the topics service raised, so a session names them by id.

    Fed by topics' events, so not rebuildable from the meetings store: a new consumer group
    reads the topics topic again.
    """

    name = "speak_up_issues"
    topics: ClassVar = [topic_for("topics")]
    tables: ClassVar = {
        "speak_up_issues": """
            CREATE TABLE IF NOT EXISTS {table} (
                issue_id text PRIMARY KEY,
                township_id text NOT NULL,
                village_id text NOT NULL,
                title text NOT NULL
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, IssueRaised):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('speak_up_issues')} VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                event.issue_id,
                event.township_id,
                event.village_id,
                event.title,
            )


PROJECTIONS: tuple[Consumer, ...] = (
    ForumsProjection(),
    TownshipRecordProjection(),
    RosterProjection(),
    OtherMeetingsProjection(),
    SpeakUpIssues(),
)
