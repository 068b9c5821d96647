"""Read models of the campaign, projected from the service's own events (all rebuildable).

- ``campaigns``: one row per round, its settings and townships;
- ``campaign_villages``: every registered village with its assessment, rank, candidacy,
  verdict, tier, light, outcome and counters — the ranking, the dashboard and the township view
  read it;
- ``campaign_ledger``: the village's ledger (整顿台账), one entry per event that concerns it;
- ``campaign_problems``, ``campaign_targets``, ``campaign_teams``, ``campaign_reports``,
  ``campaign_units``: the details the cards show.

Targets are tracked work items: their progress and completion come from the task events of
this service (``TaskCompleted`` and the others), matched by ``target_id`` = ``task_id``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cunzhi_platform.consumer import Consumer, Tx
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ...events import SERVICE, TaskCompleted, TaskProgressReported, TaskRescheduled
from ...events.campaign import (
    CampaignOpened,
    CandidateConfirmed,
    CandidateRemoved,
    CandidatesSelected,
    LightChanged,
    ProblemListed,
    ReportLate,
    ReportSubmitted,
    SendingUnitRecorded,
    TargetSet,
    TeamAssessed,
    TownLevelVillageRemoved,
    VerificationOpinionGiven,
    VillageAssessed,
    VillageCarriedOver,
    VillageGraduated,
    VillagesRegistered,
    VillageTiered,
    WorkTeamFormed,
)

OWN_TOPIC = topic_for(SERVICE)


def _json(value: object) -> Any:
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if dump else value


class CampaignReadModel(Consumer):
    name = "campaign"
    topics: ClassVar = [OWN_TOPIC]
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    indexes: ClassVar = {
        "campaign_villages": ["campaign_id, rank", "campaign_id, township_id", "campaign_id, tier"],
        "campaign_ledger": ["campaign_id, village_id, at"],
        "campaign_targets": ["campaign_id, village_id"],
        "campaign_reports": ["campaign_id, due_at"],
    }
    tables: ClassVar = {
        "campaigns": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text PRIMARY KEY,
                county_id text NOT NULL,
                name text NOT NULL,
                round_number integer NOT NULL,
                start_date date NOT NULL,
                end_date date NOT NULL,
                period_years integer NOT NULL,
                budget_per_year_yuan bigint NOT NULL,
                townships jsonb NOT NULL,
                settings jsonb NOT NULL,
                candidate_share double precision,
                candidate_rounding text,
                opened_at timestamptz NOT NULL
            )""",
        "campaign_villages": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                village_id text NOT NULL,
                -- from VillagesRegistered; a village's own events may come first (see apply)
                name text,
                kind text,
                township_id text NOT NULL,
                township_name text,
                symptoms jsonb,
                symptom_score double precision,
                last_year_score double precision,
                score double precision,
                rank integer,
                candidate boolean NOT NULL DEFAULT false,
                verdict text,
                verdict_reason text,
                opinions integer NOT NULL DEFAULT 0,
                tier text,
                tier_reason text,
                light text,
                light_reason text,
                light_since timestamptz,
                outcome text,
                final_score double precision,
                dissatisfaction double precision,
                follow_up_review_on date,
                PRIMARY KEY (campaign_id, village_id)
            )""",
        "campaign_ledger": """
            CREATE TABLE IF NOT EXISTS {table} (
                event_id uuid PRIMARY KEY,
                campaign_id text NOT NULL,
                village_id text NOT NULL,
                at timestamptz NOT NULL,
                kind text NOT NULL,
                summary text NOT NULL,
                detail jsonb NOT NULL,
                -- entries of one instant (a batch, a fixed clock) keep the order they came in
                noted_at timestamptz NOT NULL DEFAULT clock_timestamp()
            )""",
        "campaign_problems": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                village_id text NOT NULL,
                problem_id text NOT NULL,
                township_id text NOT NULL,
                kind text NOT NULL,
                description text NOT NULL,
                PRIMARY KEY (campaign_id, village_id, problem_id)
            )""",
        # A target's task events travel on the task's partition, its TargetSet on the
        # village's: either may come first, so both sides upsert and the definition columns
        # stay empty until TargetSet (a forum task leaves a row with no campaign, never read).
        "campaign_targets": """
            CREATE TABLE IF NOT EXISTS {table} (
                target_id text PRIMARY KEY,
                campaign_id text,
                village_id text,
                township_id text,
                title text,
                area text,
                task_kind text,
                common boolean,
                weight double precision,
                due_date date,
                owner text,
                progress double precision NOT NULL DEFAULT 0,
                completed_on date,
                rescheduled_to date
            )""",
        "campaign_teams": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                team_id text NOT NULL,
                level text NOT NULL,
                township_id text NOT NULL,
                village_ids text[] NOT NULL,
                departments jsonb NOT NULL,
                members jsonb NOT NULL,
                patrons jsonb NOT NULL,
                township_assistant text,
                warnings jsonb NOT NULL,
                assessments jsonb NOT NULL DEFAULT '[]',
                PRIMARY KEY (campaign_id, team_id)
            )""",
        "campaign_reports": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                subject_id text NOT NULL,
                kind text NOT NULL,
                period integer NOT NULL,
                township_id text NOT NULL,
                village_ids text[] NOT NULL,
                period_start date NOT NULL,
                period_end date NOT NULL,
                due_at timestamptz NOT NULL,
                marked_late boolean NOT NULL DEFAULT false,
                submitted_at timestamptz,
                submitted_by text,
                late boolean,
                summary text,
                on_duty_days jsonb,
                PRIMARY KEY (campaign_id, subject_id, kind, period)
            )""",
        "campaign_units": """
            CREATE TABLE IF NOT EXISTS {table} (
                campaign_id text NOT NULL,
                unit_id text NOT NULL,
                name text NOT NULL,
                village_ids text[] NOT NULL,
                funds_yuan bigint NOT NULL,
                projects jsonb NOT NULL,
                PRIMARY KEY (campaign_id, unit_id)
            )""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        v = tx.t("campaign_villages")
        if isinstance(event, _OF_A_VILLAGE):
            # These travel on the village's (or its light's) partition, the register on the
            # campaign's: either may be applied first, so the row is made by whichever comes.
            await tx.conn.execute(
                f"INSERT INTO {v} (campaign_id, village_id, township_id) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                event.campaign_id,
                event.village_id,
                event.township_id,
            )
        match event:
            case CampaignOpened():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaigns')} VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11) "
                    "ON CONFLICT DO NOTHING",
                    event.campaign_id,
                    event.county_id,
                    event.name,
                    event.round_number,
                    event.start_date,
                    event.end_date,
                    event.period_years,
                    event.budget_per_year_yuan,
                    _json(event.townships),
                    event.settings.model_dump(mode="json"),
                    envelope.time,
                )
            case VillagesRegistered():
                await tx.conn.execute(
                    f"INSERT INTO {v} (campaign_id, village_id, name, kind, township_id, "
                    "township_name) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], "
                    "$5::text[], $6::text[]) ON CONFLICT (campaign_id, village_id) DO UPDATE SET "
                    "name = excluded.name, kind = excluded.kind, township_id = "
                    "excluded.township_id, township_name = excluded.township_name",
                    event.campaign_id,
                    [x.village_id for x in event.villages],
                    [x.name for x in event.villages],
                    [x.kind for x in event.villages],
                    [x.township_id for x in event.villages],
                    [x.township_name for x in event.villages],
                )
            case VillageAssessed():
                await tx.conn.execute(
                    f"UPDATE {v} SET symptoms = $3, symptom_score = $4, last_year_score = $5, "
                    "score = $6 WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    event.symptoms,
                    event.symptom_score,
                    event.last_year_score,
                    event.score,
                )
            case CandidatesSelected():
                await tx.conn.execute(
                    f"UPDATE {v} SET rank = r.rank, candidate = r.village_id = ANY($3::text[]) "
                    "FROM unnest($2::text[]) WITH ORDINALITY AS r(village_id, rank) "
                    f"WHERE {v}.campaign_id = $1 AND {v}.village_id = r.village_id",
                    event.campaign_id,
                    list(event.ranking),
                    list(event.candidate_ids),
                )
                await tx.conn.execute(
                    f"UPDATE {tx.t('campaigns')} SET candidate_share = $2, "
                    "candidate_rounding = $3 WHERE campaign_id = $1",
                    event.campaign_id,
                    event.share,
                    event.rounding,
                )
            case CandidateConfirmed() | CandidateRemoved():
                verdict = "confirmed" if isinstance(event, CandidateConfirmed) else "removed"
                await tx.conn.execute(
                    f"UPDATE {v} SET verdict = $3, verdict_reason = $4 "
                    "WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    verdict,
                    event.reason,
                )
                await self._entry(tx, event, envelope, f"candidate {verdict}: {event.reason}")
            case VerificationOpinionGiven():
                await tx.conn.execute(
                    f"UPDATE {v} SET opinions = opinions + 1 "
                    "WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                )
                await self._entry(
                    tx, event, envelope, f"{event.source} ({event.recommends}): {event.opinion}"
                )
            case VillageTiered():
                await tx.conn.execute(
                    f"UPDATE {v} SET tier = $3, tier_reason = $4 "
                    "WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    event.tier,
                    event.reason,
                )
                await self._entry(tx, event, envelope, f"{event.tier}-level: {event.reason}")
            case TownLevelVillageRemoved():
                await tx.conn.execute(
                    f"UPDATE {v} SET tier = NULL, tier_reason = $3, light = NULL, "
                    "light_reason = NULL WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    f"removed from the town list: {event.reason}",
                )
                await self._entry(tx, event, envelope, f"off the town list: {event.reason}")
            case ProblemListed():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_problems')} VALUES ($1, $2, $3, $4, $5, $6) "
                    "ON CONFLICT DO NOTHING",
                    event.campaign_id,
                    event.village_id,
                    event.problem_id,
                    event.township_id,
                    event.kind,
                    event.description,
                )
                await self._entry(
                    tx, event, envelope, f"problem ({event.kind}): {event.description}"
                )
            case TargetSet():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_targets')} (target_id, campaign_id, village_id, "
                    "township_id, title, area, task_kind, common, weight, due_date, owner) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (target_id) "
                    "DO UPDATE SET campaign_id = $2, village_id = $3, township_id = $4, "
                    "title = $5, area = $6, task_kind = $7, common = $8, weight = $9, "
                    "due_date = $10, owner = $11",
                    event.target_id,
                    event.campaign_id,
                    event.village_id,
                    event.township_id,
                    event.title,
                    event.area,
                    event.task_kind,
                    event.common,
                    event.weight,
                    event.due_date,
                    event.owner,
                )
                await self._entry(
                    tx,
                    event,
                    envelope,
                    f"target {event.title} ({event.area}), due {event.due_date}",
                )
            case TaskProgressReported():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_targets')} (target_id, progress) VALUES ($1, $2) "
                    "ON CONFLICT (target_id) DO UPDATE SET progress = $2",
                    event.task_id,
                    event.percent,
                )
            case TaskCompleted():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_targets')} (target_id, progress, completed_on) "
                    "VALUES ($1, 100, $2) ON CONFLICT (target_id) DO UPDATE SET progress = 100, "
                    "completed_on = $2",
                    event.task_id,
                    event.completed_on,
                )
            case TaskRescheduled():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_targets')} (target_id, rescheduled_to) "
                    "VALUES ($1, $2) ON CONFLICT (target_id) DO UPDATE SET rescheduled_to = $2",
                    event.task_id,
                    event.due_on,
                )
            case ReportSubmitted() | ReportLate():
                await self._report(tx, event, envelope)
            case LightChanged():
                await tx.conn.execute(
                    f"UPDATE {v} SET light = $3, light_reason = $4, light_since = $5 "
                    "WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    event.light,
                    event.reason,
                    envelope.time,
                )
                await self._entry(tx, event, envelope, event.reason)
            case VillageGraduated() | VillageCarriedOver():
                graduated = isinstance(event, VillageGraduated)
                await tx.conn.execute(
                    f"UPDATE {v} SET outcome = $3, final_score = $4, dissatisfaction = $5, "
                    "follow_up_review_on = $6 WHERE campaign_id = $1 AND village_id = $2",
                    event.campaign_id,
                    event.village_id,
                    "graduated" if graduated else "carried_over",
                    event.score,
                    event.dissatisfaction,
                    event.follow_up_review_on if isinstance(event, VillageGraduated) else None,
                )
                words = (
                    f"摘帽, follow-up review on {event.follow_up_review_on}"
                    if isinstance(event, VillageGraduated)
                    else event.reason
                )
                await self._entry(tx, event, envelope, f"final score {event.score:g}: {words}")
            case WorkTeamFormed():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_teams')} (campaign_id, team_id, level, "
                    "township_id, village_ids, departments, members, patrons, township_assistant, "
                    "warnings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                    "ON CONFLICT DO NOTHING",
                    event.campaign_id,
                    event.team_id,
                    event.level,
                    event.township_id,
                    list(event.village_ids),
                    _json(event.departments),
                    _json(event.members),
                    _json(event.patrons),
                    event.township_assistant,
                    list(event.warnings),
                )
                for village_id in event.village_ids:
                    await self._entry(
                        tx,
                        event,
                        envelope,
                        f"team {event.team_id}: {len(event.members)} cadres, "
                        f"{len(event.patrons)} patron(s)",
                        village_id=village_id,
                    )
            case TeamAssessed():
                sheet = event.model_dump(
                    mode="json",
                    include={"period", "common", "differentiated", "bonus", "penalty", "total"},
                )
                await tx.conn.execute(
                    f"UPDATE {tx.t('campaign_teams')} SET assessments = assessments || "
                    "jsonb_build_array($3::jsonb) WHERE campaign_id = $1 AND team_id = $2",
                    event.campaign_id,
                    event.team_id,
                    sheet,
                )
            case SendingUnitRecorded():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('campaign_units')} VALUES ($1, $2, $3, $4, $5, $6) "
                    "ON CONFLICT (campaign_id, unit_id) DO UPDATE SET name = excluded.name, "
                    "village_ids = excluded.village_ids, funds_yuan = excluded.funds_yuan, "
                    "projects = excluded.projects",
                    event.campaign_id,
                    event.unit_id,
                    event.name,
                    list(event.village_ids),
                    event.funds_yuan,
                    list(event.projects),
                )

    async def _report(self, tx: Tx, e: ReportSubmitted | ReportLate, envelope: Envelope) -> None:
        r = tx.t("campaign_reports")
        await tx.conn.execute(
            f"INSERT INTO {r} (campaign_id, subject_id, kind, period, township_id, village_ids, "
            "period_start, period_end, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT DO NOTHING",
            e.campaign_id,
            e.subject_id,
            e.kind,
            e.period,
            e.township_id,
            list(e.village_ids),
            e.period_start,
            e.period_end,
            e.due_at,
        )
        key = "WHERE campaign_id = $1 AND subject_id = $2 AND kind = $3 AND period = $4"
        if isinstance(e, ReportLate):
            await tx.conn.execute(
                f"UPDATE {r} SET marked_late = true {key}",
                e.campaign_id,
                e.subject_id,
                e.kind,
                e.period,
            )
            summary = f"{e.kind} report {e.period} late (due {e.due_at:%Y-%m-%d %H:%M})"
        else:
            await tx.conn.execute(
                f"UPDATE {r} SET submitted_at = $5, submitted_by = $6, late = $7, summary = $8, "
                f"on_duty_days = $9 {key}",
                e.campaign_id,
                e.subject_id,
                e.kind,
                e.period,
                envelope.time,
                e.submitted_by,
                e.late,
                e.summary,
                e.on_duty_days,
            )
            summary = f"{e.kind} report {e.period}{' (late)' if e.late else ''}: {e.summary}"
        for village_id in e.village_ids:
            await self._entry(tx, e, envelope, summary, village_id=village_id)

    async def _entry(
        self,
        tx: Tx,
        event: Event,
        envelope: Envelope,
        summary: str,
        *,
        village_id: str | None = None,
    ) -> None:
        """One line of the village's ledger (整顿台账); an event naming several villages writes
        one line each, under ids derived from the event's."""
        village = village_id or str(getattr(event, "village_id", ""))
        await tx.conn.execute(
            f"INSERT INTO {tx.t('campaign_ledger')} VALUES "
            "(md5($1 || '/' || $3)::uuid, $2, $3, $4, $5, $6, $7, DEFAULT) ON CONFLICT DO NOTHING",
            envelope.id,
            str(getattr(event, "campaign_id", "")),
            village,
            envelope.time,
            type(event).__name__,
            summary,
            event.model_dump(mode="json"),
        )


_OF_A_VILLAGE = (
    VerificationOpinionGiven,
    VillageTiered,
    TownLevelVillageRemoved,
    LightChanged,
    VillageGraduated,
    VillageCarriedOver,
)

CAMPAIGN_PROJECTIONS: tuple[Consumer, ...] = (CampaignReadModel(),)
