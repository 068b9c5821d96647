"""The campaign's automatic decisions: lights on every relevant event, reports chased by time.

``LightsPolicy`` keeps its own small tables of what a light depends on (each target's weight,
progress, due date; each report's state) and, in the transaction that updates them, appends
``LightChanged`` when the rule gives another light — so a redelivered event appends nothing
twice. ``campaign_timer`` runs in one instance of the service: it says a report is owed once
its period ends and marks it late once its due time passes, and recomputes lights that time
alone changes (the plan moves every day; a target falls overdue at midnight).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import asyncpg
import structlog
from cunzhi_platform.aggregate import DomainError, NotFound
from cunzhi_platform.clock import SHANGHAI, today
from cunzhi_platform.consumer import Consumer, Tx, caused_by, table_names
from cunzhi_platform.envelope import CommandContext, Envelope, topic_for
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import ConcurrencyError, EventStore
from cunzhi_platform.runtime import Runtime

from ...application import campaign as app
from ...domain.campaign import CampaignHeader
from ...domain.campaign_cadence import VILLAGE_KINDS, Period, periods_due, periods_ended
from ...domain.campaign_progress import LightInputs, light_for, planned
from ...events import SERVICE, TaskCompleted, TaskProgressReported, TaskRescheduled
from ...events.campaign import (
    LightChanged,
    ReportDue,
    ReportKind,
    ReportLate,
    ReportSubmitted,
    TargetSet,
    TownLevelVillageRemoved,
    VillageCarriedOver,
    VillageGraduated,
    VillageTiered,
    WorkTeamFormed,
)

_log = structlog.get_logger(__name__)
SCHEDULER = "rectification-scheduler"


class LightsPolicy(Consumer):
    name = "campaign_lights"
    topics: ClassVar = [topic_for(SERVICE)]
    tables: ClassVar = {
        "watch_villages": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                village_id text NOT NULL,
                township_id text NOT NULL,
                active boolean NOT NULL,
                light text,
                PRIMARY KEY (campaign_id, village_id)
            )""",
        # upserted from both sides: see ``campaign_targets`` in the projections
        "watch_targets": """
            CREATE TABLE IF NOT EXISTS {table} (
                target_id text PRIMARY KEY,
                campaign_id text,
                village_id text,
                weight double precision,
                due_date date,
                progress double precision NOT NULL DEFAULT 0,
                completed boolean NOT NULL DEFAULT false,
                rescheduled_to date
            )""",
        "watch_teams": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                team_id text NOT NULL,
                PRIMARY KEY (campaign_id, team_id)
            )""",
        "watch_reports": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                subject_id text NOT NULL,
                kind text NOT NULL,
                period integer NOT NULL,
                village_ids text[] NOT NULL,
                late boolean NOT NULL DEFAULT false,
                submitted boolean NOT NULL DEFAULT false,
                reminded boolean NOT NULL DEFAULT false,
                PRIMARY KEY (campaign_id, subject_id, kind, period)
            );
            -- a table created before reports were said due (ReportDue) gains the column
            ALTER TABLE {table} ADD COLUMN IF NOT EXISTS reminded boolean NOT NULL DEFAULT false""",
    }
    indexes: ClassVar = {"watch_targets": ["campaign_id, village_id"]}

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        named = getattr(event, "campaign_id", None)
        if named is not None:
            try:
                await app.header(tx.store, named)  # cached: a round never changes its header
            except NotFound:
                # Not a round of this store: written here it would be swept for ever, and
                # retried it would hold up every event behind it. Our own events always come
                # after their round's opening, which is in the store before they are sent.
                _log.warning("campaign_event_of_unknown_round", campaign_id=named, id=envelope.id)
                return
        touched = await self._record(tx, event)
        if touched is None:
            return
        campaign_id, villages = touched
        h = await app.header(tx.store, campaign_id)
        day = today(tx.store.clock)
        for watched in await light_inputs(tx.conn, tx.t, h, day, villages):
            await _relight(tx.store, h, watched, caused_by(envelope), tx.conn)

    async def _record(self, tx: Tx, event: Event) -> tuple[str, list[str]] | None:
        """Update the inputs; the campaign and villages whose light may have changed."""
        w = tx.t("watch_villages")
        match event:
            case VillageTiered():
                await tx.conn.execute(
                    f"INSERT INTO {w} VALUES ($1, $2, $3, true, NULL) ON CONFLICT "
                    "(campaign_id, village_id) DO UPDATE SET active = true",
                    event.campaign_id,
                    event.village_id,
                    event.township_id,
                )
                return event.campaign_id, [event.village_id]
            case TownLevelVillageRemoved() | VillageGraduated() | VillageCarriedOver():
                await tx.conn.execute(
                    f"UPDATE {w} SET active = false WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                )
            case LightChanged():
                await tx.conn.execute(
                    f"UPDATE {w} SET light = $3 WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    event.light,
                )
            case TargetSet():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('watch_targets')} (target_id, campaign_id, village_id, "
                    "weight, due_date) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_id) "
                    "DO UPDATE SET campaign_id = $2, village_id = $3, weight = $4, due_date = $5",
                    event.target_id,
                    event.campaign_id,
                    event.village_id,
                    event.weight,
                    event.due_date,
                )
                return event.campaign_id, [event.village_id]
            case TaskProgressReported() | TaskCompleted() | TaskRescheduled():
                # a forum's task matches no target: nothing to update, no light to recompute
                insert, change = _TARGET_CHANGE[type(event)]
                row = await tx.conn.fetchrow(
                    f"INSERT INTO {tx.t('watch_targets')} {insert} "
                    f"ON CONFLICT (target_id) DO UPDATE SET {change} "
                    "RETURNING campaign_id, village_id",
                    event.task_id,
                    _target_value(event),
                )
                if row["campaign_id"] is not None:
                    return row["campaign_id"], [row["village_id"]]
            case WorkTeamFormed():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('watch_teams')} VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    event.campaign_id,
                    event.team_id,
                )
            case ReportSubmitted() | ReportLate() | ReportDue():
                column = _REPORT_STATE[type(event)]
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('watch_reports')} AS r (campaign_id, subject_id, kind, "
                    f"period, village_ids, {column}) VALUES ($1, $2, $3, $4, $5, true) "
                    f"ON CONFLICT (campaign_id, subject_id, kind, period) DO UPDATE SET {column} "
                    "= true",
                    event.campaign_id,
                    event.subject_id,
                    event.kind,
                    event.period,
                    list(event.village_ids),
                )
                if not isinstance(event, ReportDue):  # a reminder changes no light
                    return event.campaign_id, list(event.village_ids)
        return None


_REPORT_STATE: dict[type[Event], str] = {
    ReportSubmitted: "submitted",
    ReportLate: "late",
    ReportDue: "reminded",
}


_TARGET_CHANGE: dict[type[Event], tuple[str, str]] = {
    TaskProgressReported: ("(target_id, progress) VALUES ($1, $2)", "progress = $2"),
    TaskCompleted: (
        "(target_id, progress, completed) VALUES ($1, 100, $2)",
        "progress = 100, completed = $2",
    ),
    TaskRescheduled: ("(target_id, rescheduled_to) VALUES ($1, $2)", "rescheduled_to = $2"),
}


def _target_value(event: Event) -> object:
    if isinstance(event, TaskProgressReported):
        return float(event.percent)
    if isinstance(event, TaskRescheduled):
        return event.due_on
    return True


@dataclass(frozen=True)
class Watched:
    village_id: str
    township_id: str
    light: str | None
    inputs: LightInputs


async def light_inputs(
    conn: asyncpg.Connection | asyncpg.Pool,
    t: Callable[[str], str],
    h: CampaignHeader,
    day: dt.date,
    village_ids: Iterable[str] | None = None,
) -> list[Watched]:
    """What the lights of the campaign's active villages (or of those given) depend on."""
    only = None if village_ids is None else list(village_ids)
    w, targets, r = t("watch_villages"), t("watch_targets"), t("watch_reports")
    # Targets always carry a positive weight (the domain refuses others), so ``roll_up`` of a
    # village's targets is their weighted mean: summed here rather than shipped to Python.
    mine = "campaign_id = $1 AND ($2::text[] IS NULL OR village_id = ANY($2::text[]))"
    rows = await conn.fetch(
        "SELECT w.village_id, w.township_id, w.light, g.progress, "
        "coalesce(g.overdue, 0) AS overdue, coalesce(l.late, 0) AS late "
        f"FROM {w} w LEFT JOIN (SELECT village_id, "
        "sum(weight * progress) / sum(weight) AS progress, "
        "count(*) FILTER (WHERE NOT completed AND coalesce(rescheduled_to, due_date) < $3) "
        "AS overdue "
        f"FROM {targets} WHERE {mine} GROUP BY village_id) g USING (village_id) "
        "LEFT JOIN (SELECT v AS village_id, count(*) AS late "
        f"FROM {r}, unnest(village_ids) AS v WHERE campaign_id = $1 AND late AND NOT submitted "
        "GROUP BY v) l USING (village_id) "
        "WHERE w.campaign_id = $1 AND w.active "
        "AND ($2::text[] IS NULL OR w.village_id = ANY($2::text[])) ORDER BY w.village_id",
        h.campaign_id,
        only,
        day,
    )
    plan = planned(h.start_date, h.end_date, day)
    return [
        Watched(
            row["village_id"],
            row["township_id"],
            row["light"],
            LightInputs(
                progress=None if row["progress"] is None else round(row["progress"], 4),
                planned=plan,
                overdue_tasks=row["overdue"],
                late_reports=row["late"],
            ),
        )
        for row in rows
    ]


async def _relight(
    store: EventStore,
    h: CampaignHeader,
    w: Watched,
    ctx: CommandContext,
    conn: asyncpg.Connection | None = None,
) -> None:
    if light_for(w.inputs, h.settings)[0] == w.light:
        return  # the rule gives the light it has: no need to load its stream
    await app.recompute_light(
        store, h.campaign_id, w.village_id, w.township_id, w.inputs, ctx, conn=conn
    )


LIGHTS = LightsPolicy()
CAMPAIGN_POLICIES: tuple[Consumer, ...] = (LIGHTS,)


async def campaign_timer(rt: Runtime) -> None:
    """Reports owed, due or late, and time-driven lights, each ``scheduler_interval_s``.

    Only time changes what events do not: a due time passing, the day turning (a period ends,
    the plan moves, targets fall overdue). So a campaign is swept when its date or its count of
    due periods changed since its last complete sweep — a province's lights take seconds to
    recompute (benchmarks/bench_rectification.py). Candidates come from the policy's tables;
    the loaded aggregate decides, so a row not yet updated (a report marked late a moment ago)
    does nothing twice.
    """
    ctx = CommandContext(actor=SCHEDULER)
    names = table_names(rt.store.schema, LIGHTS)
    swept: dict[str, tuple[object, ...]] = {}
    while True:
        now = rt.clock.now()
        campaigns = await rt.pool.fetch(
            f"SELECT DISTINCT campaign_id FROM {names['watch_villages']} WHERE active"
        )
        for row in campaigns:
            campaign_id = row["campaign_id"]
            h = await app.header(rt.store, campaign_id)
            moment = (
                now.astimezone(SHANGHAI).date(),
                *(len(_due(h, kind, now)) for kind in KINDS),
            )
            if swept.get(campaign_id) == moment:
                continue
            try:
                await _sweep(rt, names, h, now, ctx)
                swept[campaign_id] = moment
            except (DomainError, ConcurrencyError) as exc:
                _log.info("campaign_timer_skipped", campaign_id=campaign_id, reason=str(exc))
        await asyncio.sleep(rt.settings.scheduler_interval_s)


KINDS: tuple[ReportKind, ...] = (*sorted(VILLAGE_KINDS), "weekly_on_duty")


def _due(h: CampaignHeader, kind: ReportKind, now: dt.datetime) -> list[Period]:
    due_days = h.settings.report_due_working_days[kind]
    return periods_due(kind, h.start_date, h.end_date, due_days, now)


def _ended(h: CampaignHeader, kind: ReportKind, now: dt.datetime) -> list[Period]:
    due_days = h.settings.report_due_working_days[kind]
    return periods_ended(kind, h.start_date, h.end_date, due_days, now)


async def _sweep(
    rt: Runtime, names: dict[str, str], h: CampaignHeader, now: dt.datetime, ctx: CommandContext
) -> None:
    campaign_id = h.campaign_id
    # (subject, kind, period) → nothing more to say about it (late or in), or only once late
    seen = {
        (r["subject_id"], r["kind"], r["period"]): r["finished"]
        for r in await rt.pool.fetch(
            f"SELECT subject_id, kind, period, late OR submitted AS finished "
            f"FROM {names['watch_reports']} WHERE campaign_id = $1 AND (late OR submitted "
            "OR reminded)",
            campaign_id,
        )
    }
    villages = [
        r["village_id"]
        for r in await rt.pool.fetch(
            f"SELECT village_id FROM {names['watch_villages']} WHERE campaign_id = $1 AND active",
            campaign_id,
        )
    ]
    teams = [
        r["team_id"]
        for r in await rt.pool.fetch(
            f"SELECT team_id FROM {names['watch_teams']} WHERE campaign_id = $1", campaign_id
        )
    ]
    for report_kind in KINDS:
        subjects = teams if report_kind == "weekly_on_duty" else villages
        for p in _ended(h, report_kind, now):
            for subject in subjects:
                finished = seen.get((subject, report_kind, p.index))
                if finished or (finished is not None and now <= p.due_at):
                    continue
                if report_kind == "weekly_on_duty":
                    await app.chase_team_report(
                        rt.store, campaign_id, subject, period=p.index, now=now, ctx=ctx
                    )
                else:
                    await app.chase_village_report(
                        rt.store,
                        campaign_id,
                        subject,
                        kind=report_kind,
                        period=p.index,
                        now=now,
                        ctx=ctx,
                    )
    for watched in await light_inputs(rt.pool, names.__getitem__, h, now.date()):
        await _relight(rt.store, h, watched, ctx)
