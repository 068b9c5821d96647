"""Queries over the read models (``projections``); eventually consistent with the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from cunzhi_platform.consumer import table_names

from ..domain import RaisedIssue
from ..domain.forum import AWAITING_NOTICE
from .projections import PROJECTIONS

AttendanceKey = Literal["person", "village"]


def _record(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())


def _page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    """A list's page, as every paged list answers: ``{"items", "total", "limit", "offset"}``."""
    for item in items:
        item.pop("total", None)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def _rate(attended: int, invited: int) -> float:
    """Share of forums attended, late counting as attended (as ``AttendanceTally.rate``)."""
    return round(attended / invited, 4) if invited else 0.0


class ReadModels:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self._t: dict[str, str] = {}
        for projection in PROJECTIONS:
            self._t.update(table_names(schema, projection))

    # --- forums ---

    async def highest_forum_number(self, township_id: str) -> int:
        number: int = await self.pool.fetchval(
            f"SELECT coalesce(max(number), 0) FROM {self._t['forums']} WHERE township_id = $1",
            township_id,
        )
        return number

    async def planned_months(self, township_id: str, year: int) -> set[int]:
        """Months of ``year`` that have a forum (not cancelled)."""
        rows = await self.pool.fetch(
            f"SELECT DISTINCT extract(month FROM date)::int AS month FROM {self._t['forums']} "
            "WHERE township_id = $1 AND extract(year FROM date) = $2 AND status <> 'cancelled'",
            township_id,
            year,
        )
        return {r["month"] for r in rows}

    async def has_forum_to_come(self, township_id: str, today: dt.date) -> bool:
        found: bool = await self.pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self._t['forums']} WHERE township_id = $1 "
            "AND status IN ('planned', 'postponed', 'noticed') AND date >= $2)",
            township_id,
            today,
        )
        return found

    async def speak_up_issues(self, issue_ids: Sequence[str]) -> list[RaisedIssue]:
        """The issues of ``issue_ids`` the topics service raised (unknown ones left out)."""
        rows = await self.pool.fetch(
            f"SELECT issue_id, village_id, title FROM {self._t['speak_up_issues']} "
            "WHERE issue_id = ANY($1::text[])",
            list(issue_ids),
        )
        found = {r["issue_id"]: RaisedIssue(**dict(r)) for r in rows}
        return [found[i] for i in issue_ids if i in found]

    async def calendar(
        self,
        township_id: str,
        *,
        status: str | None,
        year: int | None,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        where = (
            "township_id = $1 AND ($2::text IS NULL OR status = $2) "
            "AND ($3::int IS NULL OR extract(year FROM date) = $3)"
        )
        args = (township_id, status, year)
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM {self._t['forums']} WHERE {where}", *args
        )
        rows = await self.pool.fetch(
            "SELECT forum_id, number, status, date, place, mode, host_unit, "
            "topic ->> 'title' AS topic_title, notice_due_at, notice IS NOT NULL AS noticed "
            f"FROM {self._t['forums']} WHERE {where} ORDER BY number LIMIT $4 OFFSET $5",
            *args,
            limit,
            offset,
        )
        return _page([_record(r) for r in rows], total, limit, offset)

    async def forum(self, forum_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self._t['forums']} WHERE forum_id = $1", forum_id
        )
        if row is None:
            return None
        forum = _record(row)
        tasks = list(forum.pop("tasks").values())
        done = sum(1 for t in tasks if t["completed_on"] is not None)
        forum["tasks"] = tasks
        forum["task_progress"] = {"total": len(tasks), "completed": done, "open": len(tasks) - done}
        return forum

    async def remarks(self, forum_id: str) -> dict[str, Any] | None:
        """Who of the notice's attendees has prepared remarks, and who has not yet."""
        row = await self.pool.fetchrow(
            f"SELECT notice, remarks FROM {self._t['forums']} WHERE forum_id = $1", forum_id
        )
        if row is None:
            return None
        attendees = (row["notice"] or {}).get("attendees", [])
        remarks = row["remarks"]
        items = [
            {
                "person_id": a["person_id"],
                "name": a["name"],
                "role": a["role"],
                "village_id": a["village_id"],
                "prepared": a["person_id"] in remarks,
                "summary": remarks.get(a["person_id"], {}).get("summary"),
                "prepared_at": remarks.get(a["person_id"], {}).get("prepared_at"),
            }
            for a in attendees
        ]
        prepared = sum(1 for i in items if i["prepared"])
        return {
            "forum_id": forum_id,
            "prepared": prepared,
            "not_prepared": len(items) - prepared,
            "attendees": items,
        }

    async def notice_candidates(self, now: dt.datetime) -> list[str]:
        """Forums awaiting their notice whose due time passed and whose day has not."""
        rows = await self.pool.fetch(
            f"SELECT forum_id FROM {self._t['forums']} WHERE status = ANY($1::text[]) "
            "AND topic IS NOT NULL AND notice_due_at <= $2 AND date >= ($2 AT TIME ZONE "
            "'Asia/Shanghai')::date ORDER BY notice_due_at",
            sorted(AWAITING_NOTICE),
            now,
        )
        return [r["forum_id"] for r in rows]

    # --- township record and attendance ---

    async def township_record(self, township_id: str) -> dict[str, Any]:
        counts = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE held) AS forums_held, "
            "count(*) FILTER (WHERE closed) AS problems_solved, "
            "count(*) FILTER (WHERE held AND field_visit) AS field_visits "
            f"FROM {self._t['record_forums']} WHERE township_id = $1",
            township_id,
        )
        experts = await self.pool.fetch(
            f"SELECT expert_name, affiliation, first_forum_id FROM {self._t['record_experts']} "
            "WHERE township_id = $1 ORDER BY first_forum_id, expert_name",
            township_id,
        )
        sharers = await self.pool.fetch(
            "SELECT person_id, name, village_id, affiliation, first_forum_id "
            f"FROM {self._t['record_sharers']}"
            " WHERE township_id = $1 ORDER BY first_forum_id, person_id",
            township_id,
        )
        return {
            "township_id": township_id,
            **_record(counts),
            "experts_invited": len(experts),
            "experience_exchanges": len(sharers),
            "experts": [_record(r) for r in experts],
            "secretaries_sharing_experience": [_record(r) for r in sharers],
        }

    async def attendance(
        self, township_id: str, by: AttendanceKey, limit: int, offset: int
    ) -> dict[str, Any]:
        """Per person (everyone told to attend) or per village (its secretary, its invitees)."""
        key, extra = (
            ("person_id", ", max(name) AS name, max(village_id) AS village_id")
            if by == "person"
            else ("village_id", "")
        )
        where = f"FROM {self._t['attendance']} WHERE township_id = $1 AND {key} IS NOT NULL"
        rows = await self.pool.fetch(
            f"SELECT {key} AS key{extra}, count(*) AS invited, "
            "count(*) FILTER (WHERE status = 'present') AS present, "
            "count(*) FILTER (WHERE status = 'late') AS late, "
            "count(*) FILTER (WHERE status = 'absent') AS absent, count(*) OVER () AS total "
            f"{where} GROUP BY {key} ORDER BY {key} LIMIT $2 OFFSET $3",
            township_id,
            limit,
            offset,
        )
        items = [
            {**_record(r), "rate": _rate(r["present"] + r["late"], r["invited"])} for r in rows
        ]
        total = await self._total(
            rows, offset, f"SELECT count(DISTINCT {key}) {where}", township_id
        )
        return _page(items, total, limit, offset)

    # --- roster ---

    async def roster(self, township_id: str, limit: int, offset: int) -> dict[str, Any]:
        where = f"FROM {self._t['roster']} WHERE township_id = $1"
        rows = await self.pool.fetch(
            f"SELECT person_id, name, role, village_id, phone, count(*) OVER () AS total {where} "
            "ORDER BY role, person_id LIMIT $2 OFFSET $3",
            township_id,
            limit,
            offset,
        )
        total = await self._total(rows, offset, f"SELECT count(*) {where}", township_id)
        return _page([_record(r) for r in rows], total, limit, offset)

    async def _total(self, rows: list[asyncpg.Record], offset: int, count: str, *args: Any) -> int:
        """A page's total: counted with its rows (one snapshot), or, for a page past the end,
        by ``count``."""
        if rows:
            total: int = rows[0]["total"]
            return total
        return await self.pool.fetchval(count, *args) if offset else 0

    # --- county ---

    async def county_overview(
        self, township_ids: Sequence[str] | None, today: dt.date, limit: int, offset: int
    ) -> dict[str, Any]:
        """Every township (or those given) with its forums, record, attendance, other meetings."""
        t = self._t
        rows = await self.pool.fetch(
            f"""
            WITH townships AS (
                SELECT township_id FROM {t["forums"]}
                UNION SELECT township_id FROM {t["speak_up_sessions"]}
                UNION SELECT township_id FROM {t["contests"]}
            ), forums AS (
                SELECT township_id,
                       count(*) FILTER (WHERE status <> 'cancelled') AS forums_planned,
                       count(*) FILTER (WHERE status = 'cancelled') AS forums_cancelled,
                       min(date) FILTER (WHERE status IN ('planned', 'postponed', 'noticed')
                                         AND date >= $2) AS next_forum_date,
                       coalesce(sum((SELECT count(*) FROM jsonb_each(tasks) AS x(k, v)
                                     WHERE v ->> 'completed_on' IS NULL)), 0)::bigint AS open_tasks
                FROM {t["forums"]} GROUP BY township_id
            ), record AS (
                SELECT township_id,
                       count(*) FILTER (WHERE held) AS forums_held,
                       count(*) FILTER (WHERE closed) AS problems_solved,
                       count(*) FILTER (WHERE held AND field_visit) AS field_visits
                FROM {t["record_forums"]} GROUP BY township_id
            ), experts AS (
                SELECT township_id, count(*) AS experts_invited
                FROM {t["record_experts"]} GROUP BY township_id
            ), sharers AS (
                SELECT township_id, count(*) AS experience_exchanges
                FROM {t["record_sharers"]} GROUP BY township_id
            ), attendance AS (
                SELECT township_id, count(*) AS invited,
                       count(*) FILTER (WHERE status <> 'absent') AS attended
                FROM {t["attendance"]} GROUP BY township_id
            ), speak_up AS (
                SELECT township_id, count(*) AS speak_up_sessions,
                       coalesce(sum(jsonb_array_length(issues_raised)), 0)::bigint AS issues_raised
                FROM {t["speak_up_sessions"]} GROUP BY township_id
            ), contests AS (
                SELECT township_id, count(*) AS contests FROM {t["contests"]} GROUP BY township_id
            ), missed AS (
                -- months of the last twelve (since the township's first forum) without one held
                SELECT f.township_id,
                       array_agg(to_char(m, 'YYYY-MM') ORDER BY m) AS months_without_forum
                FROM (SELECT township_id, min(date) AS first FROM {t["forums"]}
                      GROUP BY township_id) f
                CROSS JOIN LATERAL generate_series(
                    greatest(date_trunc('month', f.first),
                             date_trunc('month', $2::date) - interval '12 months'),
                    date_trunc('month', $2::date) - interval '1 month',
                    interval '1 month') AS m
                WHERE NOT EXISTS (
                    SELECT 1 FROM {t["forums"]} x WHERE x.township_id = f.township_id
                    AND x.status IN ('held', 'closed') AND date_trunc('month', x.date) = m)
                GROUP BY f.township_id
            )
            SELECT township_id,
                   coalesce(forums_planned, 0) AS forums_planned,
                   coalesce(forums_held, 0) AS forums_held,
                   coalesce(problems_solved, 0) AS problems_solved,
                   coalesce(forums_cancelled, 0) AS forums_cancelled,
                   coalesce(experts_invited, 0) AS experts_invited,
                   coalesce(experience_exchanges, 0) AS experience_exchanges,
                   coalesce(field_visits, 0) AS field_visits,
                   coalesce(open_tasks, 0) AS open_tasks,
                   next_forum_date,
                   coalesce(invited, 0) AS invited,
                   coalesce(attended, 0) AS attended,
                   coalesce(speak_up_sessions, 0) AS speak_up_sessions,
                   coalesce(issues_raised, 0) AS issues_raised,
                   coalesce(contests, 0) AS contests,
                   coalesce(months_without_forum, '{{}}') AS months_without_forum,
                   count(*) OVER () AS total
            FROM townships
            LEFT JOIN forums USING (township_id) LEFT JOIN record USING (township_id)
            LEFT JOIN experts USING (township_id) LEFT JOIN sharers USING (township_id)
            LEFT JOIN attendance USING (township_id) LEFT JOIN speak_up USING (township_id)
            LEFT JOIN contests USING (township_id) LEFT JOIN missed USING (township_id)
            WHERE $1::text[] IS NULL OR township_id = ANY($1)
            ORDER BY township_id LIMIT $3 OFFSET $4
            """,
            None if township_ids is None else list(township_ids),
            today,
            limit,
            offset,
        )
        overview = []
        for r in rows:
            row = _record(r)
            invited, attended = row.pop("invited"), row.pop("attended")
            overview.append({**row, "attendance_rate": _rate(attended, invited)})
        if rows or not offset:
            return _page(overview, rows[0]["total"] if rows else 0, limit, offset)
        # past the end: the number of townships without their figures
        return _page(
            [], (await self.county_overview(township_ids, today, 1, 0))["total"], limit, offset
        )
