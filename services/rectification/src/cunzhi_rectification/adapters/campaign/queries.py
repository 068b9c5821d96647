"""Queries over the campaign's read models; eventually consistent with the store.

Every query takes ``townships``: ``None`` for a caller who reads the whole county, else the
townships the caller may see — rows outside them are not counted, listed or exported.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import asyncpg
from cunzhi_platform.consumer import table_names

from ...domain.campaign_progress import roll_up
from .projections import CAMPAIGN_PROJECTIONS

Scope = Collection[str] | None


def _rows(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r.items()) for r in rows]


def _scope(scope: Scope) -> list[str] | None:
    return None if scope is None else sorted(scope)


class CampaignReads:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.t: dict[str, str] = {}
        for projection in CAMPAIGN_PROJECTIONS:
            self.t.update(table_names(schema, projection))

    async def campaign(self, campaign_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.t['campaigns']} WHERE campaign_id = $1", campaign_id
        )
        return None if row is None else dict(row.items())

    async def ranking(
        self,
        campaign_id: str,
        townships: Scope,
        *,
        township_id: str | None = None,
        candidates_only: bool = False,
        tier: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        where = (
            "campaign_id = $1 AND ($2::text[] IS NULL OR township_id = ANY($2::text[])) "
            "AND ($3::text IS NULL OR township_id = $3) AND (NOT $4 OR candidate) "
            "AND ($5::text IS NULL OR tier = $5)"
        )
        args = (campaign_id, _scope(townships), township_id, candidates_only, tier)
        v = self.t["campaign_villages"]
        total = await self.pool.fetchval(f"SELECT count(*) FROM {v} WHERE {where}", *args)
        rows = await self.pool.fetch(
            "SELECT rank, village_id, name, kind, township_id, township_name, score, "
            "symptom_score, last_year_score, symptoms, candidate, verdict, tier, light "
            f"FROM {v} WHERE {where} ORDER BY rank NULLS LAST, village_id LIMIT $6 OFFSET $7",
            *args,
            limit,
            offset,
        )
        return {"items": _rows(rows), "total": total, "limit": limit, "offset": offset}

    async def dashboard(self, campaign_id: str, townships: Scope, today: Any) -> dict[str, Any]:
        """Tiers, lights, overdue targets, late reports and progress, per township and overall."""
        scope = _scope(townships)
        v, tg = self.t["campaign_villages"], self.t["campaign_targets"]
        in_scope = "campaign_id = $1 AND ($2::text[] IS NULL OR township_id = ANY($2::text[]))"
        counts = await self.pool.fetchrow(
            "SELECT count(*) AS registered, count(*) FILTER (WHERE score IS NOT NULL) AS assessed,"
            " count(*) FILTER (WHERE rank IS NOT NULL) AS ranked, "
            "count(*) FILTER (WHERE candidate) AS candidates, "
            "count(*) FILTER (WHERE verdict = 'confirmed') AS confirmed, "
            "count(*) FILTER (WHERE verdict = 'removed') AS removed, "
            "count(*) FILTER (WHERE tier = 'district') AS district_level, "
            "count(*) FILTER (WHERE tier = 'town') AS town_level, "
            "count(*) FILTER (WHERE light = 'green') AS green, "
            "count(*) FILTER (WHERE light = 'yellow') AS yellow, "
            "count(*) FILTER (WHERE light = 'red') AS red, "
            "count(*) FILTER (WHERE outcome = 'graduated') AS graduated, "
            "count(*) FILTER (WHERE outcome = 'carried_over') AS carried_over "
            f"FROM {v} WHERE {in_scope}",
            campaign_id,
            scope,
        )
        targets = await self.pool.fetch(
            "SELECT village_id, township_id, weight, progress, "
            "coalesce(rescheduled_to, due_date) AS due_date, completed_on "
            f"FROM {tg} WHERE {in_scope}",
            campaign_id,
            scope,
        )
        problems = await self.pool.fetch(
            "SELECT p.kind, count(*) AS n, "
            "count(*) FILTER (WHERE v.tier = 'district') AS district "
            f"FROM {self.t['campaign_problems']} p JOIN {v} v USING (campaign_id, village_id) "
            "WHERE p.campaign_id = $1 AND ($2::text[] IS NULL OR p.township_id = ANY($2::text[])) "
            "GROUP BY p.kind ORDER BY p.kind",
            campaign_id,
            scope,
        )
        teams = await self.pool.fetchrow(
            "SELECT count(*) AS teams, "
            "count(*) FILTER (WHERE level = 'district') AS district_teams, "
            "(SELECT count(DISTINCT p ->> 'person_id') FROM "
            f"{self.t['campaign_teams']} t2, jsonb_array_elements(t2.patrons) p "
            "WHERE t2.campaign_id = $1 AND t2.level = 'district' AND ($2::text[] IS NULL OR "
            "t2.township_id = ANY($2::text[]))) AS patron_leaders, "
            "(SELECT count(DISTINCT m ->> 'person_id') FROM "
            f"{self.t['campaign_teams']} t3, jsonb_array_elements(t3.members) m "
            "WHERE t3.campaign_id = $1 AND t3.level = 'district' AND ($2::text[] IS NULL OR "
            "t3.township_id = ANY($2::text[]))) AS district_cadres "
            f"FROM {self.t['campaign_teams']} WHERE {in_scope}",
            campaign_id,
            scope,
        )
        late = await self.pool.fetchval(
            f"SELECT count(*) FROM {self.t['campaign_reports']} WHERE {in_scope} "
            "AND marked_late AND submitted_at IS NULL",
            campaign_id,
            scope,
        )
        units = await self.pool.fetchrow(
            f"SELECT count(*) AS units, coalesce(sum(funds_yuan), 0)::bigint AS funds_yuan, "
            f"coalesce(sum(jsonb_array_length(projects)), 0) AS projects "
            f"FROM {self.t['campaign_units']} WHERE campaign_id = $1",
            campaign_id,
        )
        tiered = await self.pool.fetch(
            f"SELECT village_id, township_id FROM {v} WHERE {in_scope} AND tier IS NOT NULL",
            campaign_id,
            scope,
        )
        progress = _progress(tiered, targets)
        return {
            "campaign_id": campaign_id,
            **dict(counts.items()),
            "problems": {r["kind"]: r["n"] for r in problems},
            "problems_of_district_level": sum(r["district"] for r in problems),
            **dict(teams.items()),
            "targets": len(targets),
            "overdue_targets": sum(
                1 for t in targets if t["completed_on"] is None and t["due_date"] < today
            ),
            "late_reports": late,
            "sending_units": dict(units.items()),
            "progress": progress["campaign"],
            "progress_by_township": progress["townships"],
        }

    async def village(self, campaign_id: str, village_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.t['campaign_villages']} WHERE campaign_id = $1 "
            "AND village_id = $2",
            campaign_id,
            village_id,
        )
        if row is None:
            return None
        card = dict(row.items())
        args = (campaign_id, village_id)
        card["problems"] = _rows(
            await self.pool.fetch(
                f"SELECT problem_id, kind, description FROM {self.t['campaign_problems']} "
                "WHERE campaign_id = $1 AND village_id = $2 ORDER BY problem_id",
                *args,
            )
        )
        card["targets"] = _rows(
            await self.pool.fetch(
                "SELECT target_id, title, area, task_kind, common, weight, "
                "coalesce(rescheduled_to, due_date) AS due_date, owner, "
                f"progress, completed_on FROM {self.t['campaign_targets']} "
                "WHERE campaign_id = $1 AND village_id = $2 ORDER BY due_date, target_id",
                *args,
            )
        )
        card["progress"] = roll_up([(t["weight"], t["progress"]) for t in card["targets"]])
        card["teams"] = _rows(
            await self.pool.fetch(
                f"SELECT team_id, level, members, patrons, township_assistant, warnings "
                f"FROM {self.t['campaign_teams']} WHERE campaign_id = $1 "
                "AND $2 = ANY(village_ids) ORDER BY team_id",
                *args,
            )
        )
        card["reports"] = _rows(
            await self.pool.fetch(
                "SELECT subject_id, kind, period, period_start, period_end, due_at, marked_late, "
                f"submitted_at, late, summary FROM {self.t['campaign_reports']} "
                "WHERE campaign_id = $1 AND $2 = ANY(village_ids) ORDER BY due_at, kind",
                *args,
            )
        )
        return card

    async def ledger(
        self, campaign_id: str, village_id: str, *, limit: int = 200, offset: int = 0
    ) -> dict[str, Any]:
        """The village's ledger (整顿台账), oldest first."""
        where = "campaign_id = $1 AND village_id = $2"
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM {self.t['campaign_ledger']} WHERE {where}",
            campaign_id,
            village_id,
        )
        rows = await self.pool.fetch(
            f"SELECT at, kind, summary FROM {self.t['campaign_ledger']} WHERE {where} "
            "ORDER BY at, noted_at LIMIT $3 OFFSET $4",
            campaign_id,
            village_id,
            limit,
            offset,
        )
        return {"items": _rows(rows), "total": total, "limit": limit, "offset": offset}

    async def ledger_rows(
        self, campaign_id: str, townships: Scope
    ) -> dict[str, list[dict[str, Any]]]:
        """Everything the XLSX ledger holds, for the target villages in scope."""
        scope = _scope(townships)
        v = self.t["campaign_villages"]
        tiered = (
            f"SELECT village_id FROM {v} WHERE campaign_id = $1 AND tier IS NOT NULL "
            "AND ($2::text[] IS NULL OR township_id = ANY($2::text[]))"
        )
        return {
            "villages": _rows(
                await self.pool.fetch(
                    "SELECT village_id, name, township_name, tier, rank, score, light, "
                    f"light_reason, outcome FROM {v} WHERE campaign_id = $1 AND tier IS NOT NULL "
                    "AND ($2::text[] IS NULL OR township_id = ANY($2::text[])) "
                    "ORDER BY tier, rank DESC NULLS LAST",
                    campaign_id,
                    scope,
                )
            ),
            "problems": _rows(
                await self.pool.fetch(
                    f"SELECT village_id, problem_id, kind, description FROM "
                    f"{self.t['campaign_problems']} WHERE campaign_id = $1 AND village_id IN "
                    f"({tiered}) ORDER BY village_id, problem_id",
                    campaign_id,
                    scope,
                )
            ),
            "targets": _rows(
                await self.pool.fetch(
                    "SELECT village_id, target_id, title, area, task_kind, weight, "
                    "coalesce(rescheduled_to, due_date) AS due_date, "
                    f"owner, progress, completed_on FROM {self.t['campaign_targets']} "
                    f"WHERE campaign_id = $1 AND village_id IN ({tiered}) "
                    "ORDER BY village_id, due_date, target_id",
                    campaign_id,
                    scope,
                )
            ),
            "entries": _rows(
                await self.pool.fetch(
                    f"SELECT village_id, at, kind, summary FROM {self.t['campaign_ledger']} "
                    f"WHERE campaign_id = $1 AND village_id IN ({tiered}) "
                    "ORDER BY village_id, at, noted_at",
                    campaign_id,
                    scope,
                )
            ),
        }

    async def team(self, campaign_id: str, team_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.t['campaign_teams']} WHERE campaign_id = $1 AND team_id = $2",
            campaign_id,
            team_id,
        )
        if row is None:
            return None
        card = dict(row.items())
        card["villages"] = _rows(
            await self.pool.fetch(
                f"SELECT village_id, name, tier, light, light_reason, outcome "
                f"FROM {self.t['campaign_villages']} WHERE campaign_id = $1 "
                "AND village_id = ANY($2::text[]) ORDER BY village_id",
                campaign_id,
                card["village_ids"],
            )
        )
        card["on_duty_reports"] = _rows(
            await self.pool.fetch(
                "SELECT period, period_start, period_end, due_at, marked_late, submitted_at, "
                f"late, on_duty_days FROM {self.t['campaign_reports']} WHERE campaign_id = $1 "
                "AND subject_id = $2 AND kind = 'weekly_on_duty' ORDER BY period",
                campaign_id,
                team_id,
            )
        )
        return card

    async def patrons(
        self, campaign_id: str, townships: Scope, limit: int, offset: int
    ) -> dict[str, Any]:
        """Each district leader and the villages they patron (包靠): many-to-many."""
        where = (
            f"FROM {self.t['campaign_teams']} t, jsonb_array_elements(t.patrons) p, "
            "unnest(t.village_ids) v WHERE t.campaign_id = $1 "
            "AND ($2::text[] IS NULL OR t.township_id = ANY($2::text[]))"
        )
        args = (campaign_id, _scope(townships))
        rows = await self.pool.fetch(
            "SELECT p ->> 'person_id' AS person_id, min(p ->> 'name') AS name, "
            f"array_agg(DISTINCT v ORDER BY v) AS village_ids {where} "
            "GROUP BY p ->> 'person_id' ORDER BY p ->> 'person_id' LIMIT $3 OFFSET $4",
            *args,
            limit,
            offset,
        )
        total = await self.pool.fetchval(f"SELECT count(DISTINCT p ->> 'person_id') {where}", *args)
        return {"items": _rows(rows), "total": total, "limit": limit, "offset": offset}

    async def teams_of(self, campaign_id: str, person_id: str) -> list[dict[str, Any]]:
        """The teams a person serves on or patrons (for what a team member may read)."""
        return _rows(
            await self.pool.fetch(
                f"SELECT team_id, village_ids FROM {self.t['campaign_teams']} "
                "WHERE campaign_id = $1 AND (members @> $2::jsonb OR patrons @> $2::jsonb)",
                campaign_id,
                [{"person_id": person_id}],
            )
        )

    async def township(self, campaign_id: str, township_id: str, today: Any) -> dict[str, Any]:
        villages = _rows(
            await self.pool.fetch(
                "SELECT village_id, name, tier, rank, light, light_reason, outcome "
                f"FROM {self.t['campaign_villages']} WHERE campaign_id = $1 AND township_id = $2 "
                "AND (tier IS NOT NULL OR outcome IS NOT NULL) ORDER BY tier, rank DESC",
                campaign_id,
                township_id,
            )
        )
        teams = _rows(
            await self.pool.fetch(
                f"SELECT team_id, level, village_ids, warnings, assessments "
                f"FROM {self.t['campaign_teams']} WHERE campaign_id = $1 AND township_id = $2 "
                "ORDER BY team_id",
                campaign_id,
                township_id,
            )
        )
        summary = await self.dashboard(campaign_id, [township_id], today)
        return {
            "township_id": township_id,
            "summary": summary,
            "villages": villages,
            "teams": teams,
        }

    async def township_review(self, campaign_id: str, townships: Scope) -> list[dict[str, Any]]:
        """Per township: its teams' assessment totals, for the secretaries' annual review
        (乡镇党委书记抓基层党建述职评议考核)."""
        rows = await self.pool.fetch(
            "SELECT township_id, team_id, level, village_ids, "
            "(SELECT max((a ->> 'total')::float) FROM jsonb_array_elements(assessments) a) "
            "AS best, (SELECT (a ->> 'total')::float FROM jsonb_array_elements(assessments) "
            "WITH ORDINALITY x(a, n) ORDER BY n DESC LIMIT 1) AS latest "
            f"FROM {self.t['campaign_teams']} WHERE campaign_id = $1 "
            "AND ($2::text[] IS NULL OR township_id = ANY($2::text[])) "
            "ORDER BY township_id, team_id",
            campaign_id,
            _scope(townships),
        )
        by_township: dict[str, dict[str, Any]] = {}
        for r in rows:
            entry = by_township.setdefault(
                r["township_id"], {"township_id": r["township_id"], "teams": []}
            )
            entry["teams"].append(
                {
                    "team_id": r["team_id"],
                    "level": r["level"],
                    "villages": r["village_ids"],
                    "latest_total": r["latest"],
                }
            )
        for entry in by_township.values():
            scored = [t["latest_total"] for t in entry["teams"] if t["latest_total"] is not None]
            entry["teams_assessed"] = len(scored)
            entry["average_total"] = round(sum(scored) / len(scored), 2) if scored else None
        return list(by_township.values())


def _progress(tiered: list[asyncpg.Record], targets: list[asyncpg.Record]) -> dict[str, Any]:
    """Target → village → township → campaign (``roll_up`` at each level)."""
    by_village: dict[str, list[tuple[float | None, float]]] = {}
    for t in targets:
        by_village.setdefault(t["village_id"], []).append((t["weight"], t["progress"]))
    townships: dict[str, list[tuple[float | None, float]]] = {}
    for v in tiered:
        village = roll_up(by_village.get(v["village_id"], []))
        if village is not None:
            townships.setdefault(v["township_id"], []).append((None, village))
    per_township = {tid: roll_up(children) for tid, children in sorted(townships.items())}
    campaign = roll_up([(None, p) for p in per_township.values() if p is not None])
    return {"campaign": campaign, "townships": per_township}
