"""Consumers: the directory fed by meetings' roster, and the notices other services' events ask for.

Everything a message causes is written in the consumer's transaction (``Tx``): directory rows,
ledger rows, reminders and our ``NotificationRequested``, with the processed mark. A redelivered
message is dropped by that mark; the ledger's unique key guards the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg
from cunzhi_platform.consumer import Consumer, Tx, caused_by
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from .. import readers as r
from ..domain.kinds import KINDS
from ..domain.reminders import (
    call_closing_due,
    day_text,
    forum_eve_due,
    issue_unclaimed_due,
    moment_text,
    report_due,
    task_due,
    waking,
)
from .ledger import Ledger, Notice, derived_id
from .roles import settle_roles

ROSTER_ROLES = {
    "leadership": "township_leadership",
    "middle_cadre": "middle_cadre",
    "village_secretary": "village_secretary",
}
"""meetings' roster roles as directory roles (领导班子, 中层干部, 村党支部书记)."""

CALL_RECIPIENT_ROLES = ["village_secretary", "station_head"]
COUNTY = "county_organisation_department"
TOWNSHIP_OFFICE = ["party_building_office", "township_committee"]
"""Who a township's red lights and escalations reach: its party-building office and committee."""
TASK_REMINDER_DAYS = (3, 1)
"""Working days before a task is due that its assignee is reminded."""
REPORTS = {
    "weekly_on_duty": "周驻村考勤",
    "monthly_progress": "月度进展报告",
    "quarterly_visit": "季度暗访",
    "half_year_review": "半年评估",
}
"""Who is asked for topics: every village secretary and station head (站所负责人)."""
TEAM_REPORTS = frozenset({"weekly_on_duty"})
"""Report kinds a work team owes (the report's subject is the team); a village owes the others."""
OPINION_ROLES = {
    "discipline": "discipline_commission",
    "political_legal": "political_legal_committee",
    "petitions": "petitions_bureau",
}
"""The departments whose verification opinions rectification asks for (纪委, 政法委, 信访), as
directory roles."""

TOPIC_STATES: dict[type[r.TopicChange], str] = {
    r.TopicMergedInto: "已与其他议题合并",
    r.TopicSelected: "已被选为本期论坛议题",
    r.TopicDeferred: "暂缓，转入下期征集",
    r.TopicReferred: "已转交相关部门办理",
    r.TopicDeclined: "未被采纳",
    r.TopicResolved: "已解决",
}


class RosterDirectory(Consumer):
    """meetings' roster → people in the directory, with their roster role.

    A roster gives a person one role in its township: an update replaces it, a removal takes it
    away (``roles.py``); roles given through our own API stay.
    """

    name = "roster_directory"
    topics: ClassVar = [topic_for("meetings")]

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        s = f'"{tx.store.schema}"'
        if isinstance(event, r.RosterMemberAdded | r.RosterMemberUpdated):
            # Our own API may have added e-mail and robot ids: the roster only updates its part.
            await tx.conn.execute(
                f"""INSERT INTO {s}.people (person_id, name, township_id, village_id, phone)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (person_id) DO UPDATE SET name = $2, township_id = $3,
                        village_id = $4, phone = coalesce($5, people.phone), active = true,
                        updated_at = now()""",
                event.person_id,
                event.name,
                event.township_id,
                event.village_id,
                event.phone,
            )
            await tx.conn.execute(
                f"""INSERT INTO {s}.roster_roles VALUES ($1, $2, $3)
                    ON CONFLICT (person_id, township_id) DO UPDATE SET role = $3""",
                event.person_id,
                event.township_id,
                ROSTER_ROLES.get(event.role, event.role),
            )
        elif isinstance(event, r.RosterMemberRemoved):
            await tx.conn.execute(
                f"UPDATE {s}.people SET active = false, updated_at = now() WHERE person_id = $1",
                event.person_id,
            )
            await tx.conn.execute(
                f"DELETE FROM {s}.roster_roles WHERE person_id = $1 AND township_id = $2",
                event.person_id,
                event.township_id,
            )
        else:
            return
        await settle_roles(tx.conn, s, event.person_id)


class Planner(Consumer):
    """Other services' events → notices in the ledger, reminders scheduled, moved, cancelled."""

    name = "planner"
    topics: ClassVar = [topic_for("topics"), topic_for("meetings"), topic_for("rectification")]

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
        elif isinstance(event, r.IssueEvent):
            await self.issue(event)
        elif isinstance(event, r.TaskEvent):
            await _Tasks(self).on(event)
        elif isinstance(event, r.WorkTeamFormed):
            await self.team_formed(event)
        elif isinstance(event, r.LightChanged) and event.light == "red":
            await self.red_light(event)
        elif isinstance(event, r.ReportEvent):
            await _Reports(self).on(event)
        elif isinstance(event, r.VerificationRequested):
            await self.verification_requested(event)
        elif isinstance(event, r.CampaignOpened):
            await self.campaign_opened(event)

    async def call_opened(self, e: r.CallForTopicsOpened) -> None:
        if e.closes_at <= e.opened_at:
            # A forum planned under five working days ahead opens its call past its deadline
            # (only deferred topics go into it): asking the villages for topics would tell them
            # to submit by a day already gone (ours). Judged when the call opened, not when we
            # read it: a planner behind its topic must still tell of a call that was open.
            return
        recipients = await self.with_roles(CALL_RECIPIENT_ROLES, e.township_id)
        context = {"forum_date": day_text(e.forum_date), "closes_at": moment_text(e.closes_at)}
        await self.notify("call_opened", e.township_id, f"call:{e.forum_id}", context, recipients)
        await self.schedule(
            "call_closing",
            f"forum:{e.forum_id}",
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
            f"""INSERT INTO {self.s}.topic_titles VALUES ($1, $2, $3)
                ON CONFLICT (topic_id) DO UPDATE SET title = $2, submitter_ids = $3""",
            e.topic_id,
            e.title,
            e.submitter_ids,
        )

    async def topic_changed(self, e: r.TopicChange) -> None:
        # Merges change who submitted a topic: keep the latest list for its tasks' progress.
        title = await self.conn.fetchval(
            f"""INSERT INTO {self.s}.topic_titles VALUES ($1, $2, $3)
                ON CONFLICT (topic_id) DO UPDATE
                    SET title = coalesce($2, topic_titles.title), submitter_ids = $3
                RETURNING title""",
            e.topic_id,
            getattr(e, "title", None),
            e.submitter_ids,
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
            "forum_eve",
            f"forum:{e.forum_id}",
            e.township_id,
            forum_eve_due(e.date),
            context,
            recipients,
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
        await self.move(
            "forum_eve", f"forum:{e.forum_id}", forum_eve_due(e.date), {"date": day_text(e.date)}
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
        await self.cancel(f"forum:{e.forum_id}")
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
            f"""INSERT INTO {self.s}.people (person_id, name, roles, manual_roles, township_id,
                    village_id)
                SELECT p, n, ARRAY[ro], ARRAY[ro], $4, v
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
        key: str,
        township_id: str,
        due_at: dt.datetime,
        context: dict[str, Any],
        recipients: Sequence[str],
        *,
        subject_ref: str | None = None,
        step: str = "",
    ) -> None:
        """A reminder under its cancellation key (``forum:{id}``, ``task:{id}``); scheduling it
        again (a new notice after a postponement, a rescheduled task) moves it, earlier or
        later, with its new words."""
        if due_at <= self.now:
            # A late reminder would only confuse: none is made, one already waiting is dropped.
            await self.move(kind, key, due_at, context, step=step, recipients=recipients)
            return
        await self.conn.execute(
            f"""INSERT INTO {self.s}.reminders (reminder_id, cancel_key, kind, step, due_at,
                    township_id, subject_ref, context, recipients)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (cancel_key, kind, step) DO UPDATE SET due_at = $5, context = $8,
                    recipients = $9, status = 'scheduled', fired_at = NULL, dropped_at = NULL""",
            derived_id(key, kind, step),
            key,
            kind,
            step,
            due_at,
            township_id,
            subject_ref or key,
            context,
            list(recipients),
        )

    async def move(
        self,
        kind: str,
        key: str,
        due_at: dt.datetime,
        words: dict[str, Any],
        *,
        step: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> None:
        """Move the reminders of ``kind`` under ``key`` (one ``step``, or every one) to
        ``due_at``, earlier or later, ``words`` replacing what their text says of the moment.

        Ours: one moved to a moment already passed is not sent late as if on time; it is
        dropped, and kept with its new time and words as the record of it (``dropped_at``).
        One moved ahead of a moment passed (fired, or dropped) is due again: a new notice."""
        await self.conn.execute(
            f"""UPDATE {self.s}.reminders SET due_at = $3, context = context || $4::jsonb,
                    recipients = coalesce($5::text[], recipients),
                    status = CASE WHEN $6 THEN 'dropped' ELSE 'scheduled' END,
                    fired_at = CASE WHEN $6 THEN fired_at END,
                    dropped_at = CASE WHEN $6 THEN $7::timestamptz END
                WHERE cancel_key = $1 AND kind = $2 AND ($8::text IS NULL OR step = $8)
                  AND (status = 'scheduled' OR (NOT $6 AND status IN ('fired', 'dropped')))""",
            key,
            kind,
            due_at,
            words,
            None if recipients is None else list(recipients),
            due_at <= self.now,
            self.now,
            step,
        )

    async def cancel(self, key: str) -> None:
        """Every reminder still scheduled under ``key``."""
        await self.conn.execute(
            f"""UPDATE {self.s}.reminders SET status = 'cancelled'
                WHERE cancel_key = $1 AND status = 'scheduled'""",
            key,
        )

    async def with_roles(self, roles: Sequence[str], township_id: str) -> list[str]:
        """People of the directory holding one of ``roles`` in the township."""
        rows = await self.conn.fetch(
            f"""SELECT person_id FROM {self.s}.people
                WHERE active AND roles && $1::text[] AND township_id = $2 ORDER BY person_id""",
            list(roles),
            township_id,
        )
        return [row["person_id"] for row in rows]

    async def of_county(self, roles: Sequence[str], county_id: str | None) -> list[str]:
        """People holding one of ``roles`` in the county; nobody when the county is unknown, and
        never one whose county the directory does not say (another county's, for all we know)."""
        rows = await self.conn.fetch(
            f"""SELECT person_id FROM {self.s}.people
                WHERE active AND roles && $1::text[] AND county_id = $2 ORDER BY person_id""",
            list(roles),
            county_id,
        )
        return [row["person_id"] for row in rows]

    async def county_of(self, campaign_id: str | None, township_id: str) -> str | None:
        """The county of the campaign, or else of the township, as CampaignOpened said."""
        county: str | None = await self.conn.fetchval(
            f"""SELECT coalesce(
                    (SELECT county_id FROM {self.s}.campaign_counties WHERE campaign_id = $1),
                    (SELECT county_id FROM {self.s}.township_counties WHERE township_id = $2))""",
            campaign_id,
            township_id,
        )
        return county

    async def campaign_opened(self, e: r.CampaignOpened) -> None:
        await self.conn.execute(
            f"""INSERT INTO {self.s}.campaign_counties VALUES ($1, $2)
                ON CONFLICT (campaign_id) DO UPDATE SET county_id = $2""",
            e.campaign_id,
            e.county_id,
        )
        await self.conn.executemany(
            f"""INSERT INTO {self.s}.township_counties VALUES ($1, $2)
                ON CONFLICT (township_id) DO UPDATE SET county_id = $2""",
            [(t.township_id, e.county_id) for t in e.townships],
        )

    async def secretaries(self, village_id: str) -> list[str]:
        rows = await self.conn.fetch(
            f"""SELECT person_id FROM {self.s}.people WHERE active AND village_id = $1
                AND 'village_secretary' = ANY(roles) ORDER BY person_id""",
            village_id,
        )
        return [row["person_id"] for row in rows]

    async def issue(self, e: r.IssueEvent) -> None:
        """Speak-up issues (逢五说事, 领办): the village secretary hears of one nobody claims,
        and of the claimant's progress."""
        key = f"issue:{e.issue_id}"
        if isinstance(e, r.IssueRaised):
            await self.conn.execute(
                f"INSERT INTO {self.s}.issues VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                e.issue_id,
                e.village_id,
                e.title,
            )
            await self.schedule(
                "issue_unclaimed",
                key,
                e.township_id,
                issue_unclaimed_due(e.raised_on),
                {"title": e.title, "raised_on": day_text(e.raised_on)},
                await self.secretaries(e.village_id),
            )
            return
        if isinstance(e, r.IssueClaimed | r.IssuePromoted | r.IssueClosed):
            await self.cancel(key)
        if isinstance(e, r.IssueProgressReported | r.IssueClosed):
            title = await self.conn.fetchval(
                f"SELECT title FROM {self.s}.issues WHERE issue_id = $1", e.issue_id
            )
            closed = isinstance(e, r.IssueClosed)
            context = {
                "title": title or e.issue_id,
                "progress": "已办结" if closed else "有新进展",
                "note": e.outcome if isinstance(e, r.IssueClosed) else e.note,
            }
            await self.notify(
                "issue_progress", e.township_id, key, context, await self.secretaries(e.village_id)
            )

    async def red_light(self, e: r.LightChanged) -> None:
        """A village turned red: the county organisation department of the campaign's county and
        the township, at once (an urgent kind: quiet hours do not hold it)."""
        recipients = await self.of_county(
            [COUNTY], await self.county_of(e.campaign_id, e.township_id)
        )
        recipients += await self.with_roles(TOWNSHIP_OFFICE, e.township_id)
        await self.notify(
            "red_light",
            e.township_id,
            f"village:{e.village_id}",
            {"village_id": e.village_id, "reason": e.reason},
            recipients,
        )

    async def team_formed(self, e: r.WorkTeamFormed) -> None:
        reports = _Reports(self)
        await reports.one_at_a_time(e.campaign_id)
        await self.conn.executemany(
            f"""INSERT INTO {self.s}.team_members (campaign_id, team_id, person_id)
                VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
            [(e.campaign_id, e.team_id, m.person_id) for m in e.members],
        )
        await self.conn.executemany(
            f"INSERT INTO {self.s}.team_villages VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            [(e.campaign_id, v, e.team_id) for v in e.village_ids],
        )
        await reports.told_to_the_team(e)

    async def verification_requested(self, e: r.VerificationRequested) -> None:
        """The departments asked for opinions on the candidates (纪委, 政法委, 信访) and the
        county organisation department that asks them: the campaign's county's, not another's."""
        asked = [OPINION_ROLES[s] for s in e.sources if s in OPINION_ROLES]
        context = {
            "villages": len(e.village_ids),
            "respond_by": day_text(e.respond_by),
            "campaign_id": e.campaign_id,
        }
        await self.notify(
            "verification_requested",
            None,
            f"campaign:{e.campaign_id}",
            context,
            await self.of_county([*asked, COUNTY], e.county_id),
        )


class _Reports:
    """Cadence reports of the weak-village campaign, told to the team that owes them.

    Due: at once (or at 09:00 when the period ended in the night), and again the working day
    before its due time (ours); both are reminders cancelled when the report comes in or is
    late. Late: also the township's office.
    """

    def __init__(self, planning: _Planning) -> None:
        self.p = planning
        self.s = planning.s

    async def on(self, e: r.ReportEvent) -> None:
        key = f"report:{e.campaign_id}:{e.subject_id}:{e.kind}:{e.period}"
        await self.one_at_a_time(e.campaign_id)
        if not isinstance(e, r.ReportDue):
            await self.p.cancel(key)
            await self.p.conn.execute(
                f"DELETE FROM {self.s}.reports_awaiting_team WHERE cancel_key = $1", key
            )
        if isinstance(e, r.ReportSubmitted):
            return
        if not await self.team_known(e):
            await self.await_team(e, key)
        elif isinstance(e, r.ReportDue):
            await self.due(e, key)
        elif isinstance(e, r.ReportLate):
            await self.late(e)

    async def one_at_a_time(self, campaign_id: str) -> None:
        """Hold the campaign's reports and teams until this transaction ends: a report read
        beside its team by another replica would otherwise miss the team's uncommitted rows
        while that replica missed the report's, and the report would wait for ever. Taken
        before either path reads; each statement after it sees what the other committed."""
        await self.p.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            f"{self.s}.reports_and_teams:{campaign_id}",
        )

    async def team_known(self, e: r.ReportEvent) -> bool:
        column = "team_id" if e.kind in TEAM_REPORTS else "village_id"
        return bool(
            await self.p.conn.fetchval(
                f"""SELECT true FROM {self.s}.team_villages
                    WHERE campaign_id = $1 AND {column} = $2 LIMIT 1""",
                e.campaign_id,
                e.subject_id,
            )
        )

    async def await_team(self, e: r.ReportEvent, key: str) -> None:
        """Hold the report until its team is formed: the team's events and the report's are
        keyed apart, so after a backlog the report may come first."""
        env = self.p.envelope
        await self.p.conn.execute(
            f"""INSERT INTO {self.s}.reports_awaiting_team VALUES
                ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb)
                ON CONFLICT (event_id) DO NOTHING""",
            env.id,
            env.type,
            e.campaign_id,
            e.subject_id,
            e.kind in TEAM_REPORTS,
            key,
            json.dumps({**dataclasses.asdict(env), "time": env.time.isoformat()}),
            e.model_dump_json(),
        )

    async def told_to_the_team(self, team: r.WorkTeamFormed) -> None:
        """The reports that waited for ``team``, told now under their own events."""
        rows = await self.p.conn.fetch(
            f"""DELETE FROM {self.s}.reports_awaiting_team
                WHERE campaign_id = $1 AND ((team_report AND subject_id = $2)
                    OR (NOT team_report AND subject_id = ANY($3::text[])))
                RETURNING *""",
            team.campaign_id,
            team.team_id,
            list(team.village_ids),
        )
        envelopes = [
            Envelope(**{**f, "time": dt.datetime.fromisoformat(f["time"])})
            for f in (row["envelope"] for row in rows)
        ]
        for envelope, row in sorted(zip(envelopes, rows, strict=True), key=lambda p: p[0].time):
            reader = r.ReportDue if row["event_type"].endswith(".ReportDue") else r.ReportLate
            waited = _Planning(self.p.tx, envelope, self.p.ledger)
            await _Reports(waited).on(reader.model_validate(row["payload"]))

    async def due(self, e: r.ReportDue, key: str) -> None:
        context = {
            **self.context(e),
            "period_start": day_text(e.period_start),
            "period_end": day_text(e.period_end),
            "due_at": moment_text(e.due_at),
        }
        team = await self.team(e)
        at_once = waking(self.p.now)
        if at_once <= self.p.now:
            await self.p.notify("report_due", e.township_id, self.ref(e), context, team)
        for step, when in (("ended", at_once), ("eve", report_due(e.due_at))):
            await self.p.schedule(
                "report_due",
                key,
                e.township_id,
                when,
                context,
                team,
                subject_ref=self.ref(e),
                step=step,
            )

    async def late(self, e: r.ReportLate) -> None:
        recipients = await self.team(e)
        recipients += await self.p.with_roles(TOWNSHIP_OFFICE, e.township_id)
        context = {**self.context(e), "due_at": moment_text(e.due_at)}
        await self.p.notify("report_late", e.township_id, self.ref(e), context, recipients)

    @staticmethod
    def context(e: r.ReportEvent) -> dict[str, Any]:
        mine = "本工作组" if e.kind in TEAM_REPORTS else f"薄弱村{e.subject_id}"
        return {"period": e.period, "report": REPORTS.get(e.kind, e.kind), "subject": mine}

    @staticmethod
    def ref(e: r.ReportEvent) -> str:
        return f"{'team' if e.kind in TEAM_REPORTS else 'village'}:{e.subject_id}"

    async def team(self, e: r.ReportEvent) -> list[str]:
        """The members of the team whose report it is, or of the teams working for the village."""
        if e.kind in TEAM_REPORTS:
            rows = await self.p.conn.fetch(
                f"""SELECT person_id FROM {self.s}.team_members
                    WHERE campaign_id = $1 AND team_id = $2 ORDER BY person_id""",
                e.campaign_id,
                e.subject_id,
            )
        else:
            rows = await self.p.conn.fetch(
                f"""SELECT DISTINCT m.person_id FROM {self.s}.team_villages v
                    JOIN {self.s}.team_members m USING (campaign_id, team_id)
                    WHERE v.campaign_id = $1 AND v.village_id = $2 ORDER BY m.person_id""",
                e.campaign_id,
                e.subject_id,
            )
        return [row["person_id"] for row in rows]


class _Tasks:
    """Tracked work items (rectification): due reminders, overdue, escalation, progress."""

    def __init__(self, planning: _Planning) -> None:
        self.p = planning
        self.s = planning.s

    async def on(self, e: r.TaskEvent) -> None:
        if isinstance(e, r.TaskAssigned):
            await self.p.conn.execute(
                f"""INSERT INTO {self.s}.tasks VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (task_id) DO UPDATE SET title = $3, assignee_kind = $5,
                        assignee_id = $6, due_on = $7""",
                e.task_id,
                e.township_id,
                e.title,
                e.topic_id,
                e.assignee.kind,
                e.assignee.id,
                e.due_on,
            )
            await self.remind(e.task_id)
            return
        task = await self.p.conn.fetchrow(
            f"SELECT * FROM {self.s}.tasks WHERE task_id = $1", e.task_id
        )
        if task is None:
            return  # assigned before we listened; nothing to say about it by name
        ref = f"task:{e.task_id}"
        context: dict[str, Any] = {"title": task["title"], "due_on": day_text(task["due_on"])}
        if isinstance(e, r.TaskRescheduled):
            await self.p.conn.execute(
                f"UPDATE {self.s}.tasks SET due_on = $2 WHERE task_id = $1", e.task_id, e.due_on
            )
            await self.remind(e.task_id)
        elif isinstance(e, r.TaskCompleted):
            await self.p.cancel(ref)
            await self.progress(task, "已完成")
        elif isinstance(e, r.TaskProgressReported):
            await self.progress(task, f"进展至{e.percent}%")
        elif isinstance(e, r.TaskOverdue):
            await self.p.notify(
                "task_overdue", e.township_id, ref, context, await self.assignees(task)
            )
        elif isinstance(e, r.TaskEscalated):
            level = "县级" if e.level == "county" else "乡镇"
            if e.level == "county":
                county = await self.p.county_of(e.campaign_id, e.township_id)
                recipients = await self.p.of_county([COUNTY], county)
            else:
                recipients = await self.p.with_roles(TOWNSHIP_OFFICE, e.township_id)
            await self.p.notify(
                "task_escalated",
                e.township_id,
                ref,
                {**context, "days": e.working_days_overdue, "level": level},
                [*await self.assignees(task), *recipients],
            )

    async def assignees(self, task: asyncpg.Record) -> list[str]:
        """A person, or the secretary of the village the task is assigned to."""
        if task["assignee_kind"] == "person":
            return [task["assignee_id"]]
        return await self.p.secretaries(task["assignee_id"])

    async def remind(self, task_id: str) -> None:
        task = await self.p.conn.fetchrow(
            f"SELECT * FROM {self.s}.tasks WHERE task_id = $1", task_id
        )
        assert task is not None
        recipients = await self.assignees(task)
        for days in TASK_REMINDER_DAYS:
            await self.p.schedule(
                "task_due",
                f"task:{task_id}",
                task["township_id"],
                task_due(task["due_on"], days),
                {"title": task["title"], "due_on": day_text(task["due_on"]), "days": days},
                recipients,
                step=str(days),
            )

    async def progress(self, task: asyncpg.Record, progress: str) -> None:
        """The submitters of the topic a forum task came from hear how it goes."""
        if task["topic_id"] is None:
            return
        submitters = await self.p.conn.fetchval(
            f"SELECT submitter_ids FROM {self.s}.topic_titles WHERE topic_id = $1",
            task["topic_id"],
        )
        await self.p.notify(
            "task_progress",
            task["township_id"],
            f"task:{task['task_id']}",
            {"title": task["title"], "progress": progress},
            list(submitters or []),
        )
