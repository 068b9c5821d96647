"""Queries on the read models. Lists are pages: ``{"items", "total", "limit", "offset"}``.

``townships`` restricts what a caller sees: ``None`` for the county organisation department
(everything), else the townships of the caller's token.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from cunzhi_platform.consumer import table_names

from .projections import read_model_tables
from .similar import LIMIT, SIMILAR_SQL, THRESHOLD, title_terms
from .timeline import SpeakUpLinks, Timeline

Row = dict[str, Any]


@dataclass
class Filter:
    """``WHERE`` conditions with numbered parameters, built one condition at a time."""

    conditions: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, condition: str, value: Any) -> None:
        """``condition`` names its parameter ``{}``; a ``None`` value adds nothing."""
        if value is None:
            return
        self.args.append(value)
        self.conditions.append(condition.format(f"${len(self.args)}"))

    def visible_to(self, townships: Collection[str] | None, column: str = "township_id") -> None:
        if townships is not None:
            self.add(f"{column} = ANY({{}}::text[])", list(townships))

    @property
    def where(self) -> str:
        return " AND ".join(self.conditions) or "true"


async def page(
    conn: asyncpg.Pool | asyncpg.Connection,
    table: str,
    where: Filter,
    order: str,
    limit: int,
    offset: int,
    columns: str = "*",
) -> dict[str, Any]:
    n = len(where.args)
    rows = await conn.fetch(
        f"SELECT {columns}, count(*) OVER () AS total FROM {table} WHERE {where.where} "
        f"ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
        *where.args,
        limit,
        offset,
    )
    total = rows[0]["total"] if rows else await _count(conn, table, where)
    return {
        "items": [{k: v for k, v in r.items() if k != "total"} for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


async def _count(conn: asyncpg.Pool | asyncpg.Connection, table: str, where: Filter) -> int:
    """The total when the page itself is empty (an offset past the end)."""
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM {table} WHERE {where.where}", *where.args
    )
    return total


class Views:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.t = (
            read_model_tables(schema)
            | table_names(schema, Timeline())
            | table_names(schema, SpeakUpLinks())
        )

    async def topics(
        self,
        townships: Collection[str] | None,
        *,
        township_id: str | None = None,
        forum_id: str | None = None,
        state: str | None = None,
        category: str | None = None,
        village_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        where = Filter()
        where.visible_to(townships)
        where.add("township_id = {}", township_id)
        where.add("forum_id = {}", forum_id)
        where.add("state = {}", state)
        where.add("category = {}", category)
        where.add("{} = ANY(village_ids)", village_id)
        return await page(
            self.pool, self.t["topics"], where, "submitted_at DESC, topic_id", limit, offset
        )

    async def topic(self, topic_id: str) -> Row | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.t['topics']} WHERE topic_id = $1", topic_id
        )
        return None if row is None else dict(row)

    async def similar_topics(
        self, township_id: str, title: str, leave_out: Collection[str] = ()
    ) -> list[Row]:
        """The township's topics, open or past, whose titles are like ``title`` (``similar``)."""
        sql = SIMILAR_SQL.format(terms=self.t["topic_terms"], topics=self.t["topics"])
        rows = await self.pool.fetch(
            sql, township_id, title_terms(title), list(leave_out), THRESHOLD, LIMIT
        )
        return [dict(r) for r in rows]

    async def timeline(self, topic_id: str, limit: int, offset: int) -> dict[str, Any]:
        """The topic's steps, oldest first; its forum's task steps are the topic's too."""
        table, tasks = self.t["topic_timeline"], self.t["timeline_tasks"]
        forums = f"SELECT forum_id FROM {table} WHERE topic_id = {{0}} AND step = 'selected'"
        where = Filter()
        where.add(
            f"(topic_id = {{0}} OR (topic_id IS NULL AND (forum_id IN ({forums}) OR task_id IN "
            f"(SELECT task_id FROM {tasks} WHERE forum_id IN ({forums})))))",
            topic_id,
        )
        columns = "occurred_at, step, description, actor, forum_id"
        return await page(self.pool, table, where, "occurred_at, seq", limit, offset, columns)

    async def call(self, township_id: str, forum_id: str) -> Row | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self.t['calls']} WHERE township_id = $1 AND forum_id = $2",
            township_id,
            forum_id,
        )
        return None if row is None else dict(row)

    async def open_call(self, township_id: str) -> str | None:
        """The forum of the township's open call (the soonest, should there be two)."""
        forum_id: str | None = await self.pool.fetchval(
            f"SELECT forum_id FROM {self.t['calls']} WHERE township_id = $1 AND state = 'open' "
            "ORDER BY closes_at LIMIT 1",
            township_id,
        )
        return forum_id

    async def pipeline(self, township_id: str, limit: int, offset: int) -> dict[str, Any]:
        """Per cycle (call), the number of topics in each state, newest cycle first."""
        where = Filter()
        where.add("c.township_id = {}", township_id)
        counts = (
            f"(SELECT coalesce(jsonb_object_agg(state, n), '{{}}') FROM (SELECT state, count(*) "
            f"AS n FROM {self.t['topics']} t WHERE t.township_id = c.township_id "
            "AND t.forum_id = c.forum_id GROUP BY state) s) AS topics_by_state"
        )
        return await page(
            self.pool,
            f"{self.t['calls']} c",
            where,
            "c.forum_date DESC, c.forum_id",
            limit,
            offset,
            columns=f"c.*, {counts}",
        )

    async def county_overview(self, limit: int, offset: int) -> dict[str, Any]:
        """Every township: topics and issues per state, and its latest call."""
        t = self.t
        townships = (
            f"(SELECT township_id FROM {t['calls']} UNION SELECT township_id FROM {t['topics']} "
            f"UNION SELECT township_id FROM {t['issues']}) AS towns"
        )
        columns = (
            "towns.township_id, "
            f"(SELECT coalesce(jsonb_object_agg(state, n), '{{}}') FROM (SELECT state, count(*) "
            f"AS n FROM {t['topics']} x WHERE x.township_id = towns.township_id GROUP BY state) s)"
            " AS topics_by_state, "
            f"(SELECT coalesce(jsonb_object_agg(state, n), '{{}}') FROM (SELECT state, count(*) "
            f"AS n FROM {t['issues']} x WHERE x.township_id = towns.township_id GROUP BY state) s)"
            " AS issues_by_state, "
            "(SELECT jsonb_build_object('forum_id', forum_id, 'forum_date', forum_date, "
            "'state', state, 'selected_topic_id', selected_topic_id) "
            f"FROM {t['calls']} x WHERE x.township_id = towns.township_id "
            "ORDER BY forum_date DESC LIMIT 1) AS latest_call"
        )
        return await page(
            self.pool, townships, Filter(), "towns.township_id", limit, offset, columns=columns
        )

    async def categories(self, township_id: str, limit: int, offset: int) -> list[Row]:
        """The categories the township added, by code (a page)."""
        rows = await self.pool.fetch(
            f"SELECT code, label FROM {self.t['categories']} WHERE township_id = $1 "
            "ORDER BY code LIMIT $2 OFFSET $3",
            township_id,
            limit,
            offset,
        )
        return [dict(r) for r in rows]

    async def village_history(
        self, village_id: str, townships: Collection[str] | None, limit: int, offset: int
    ) -> dict[str, Any]:
        where = Filter()
        where.add("h.village_id = {}", village_id)
        where.visible_to(townships, "h.township_id")
        table = (
            f"{self.t['village_history']} h LEFT JOIN {self.t['topics']} t "
            "ON h.subject = 'topic' AND t.topic_id = h.subject_id "
            f"LEFT JOIN {self.t['issues']} i ON h.subject = 'issue' AND i.issue_id = h.subject_id"
        )
        return await page(
            self.pool,
            table,
            where,
            "h.occurred_at DESC, h.seq DESC",
            limit,
            offset,
            columns="h.*, coalesce(t.title, i.title) AS title",
        )

    async def issue(self, issue_id: str) -> Row | None:
        """The issue, with the speak-up session it was raised at once meetings recorded it."""
        row = await self.pool.fetchrow(
            f"SELECT i.*, s.session_id, s.session_date FROM {self.t['issues']} i "
            f"LEFT JOIN {self.t['issue_sessions']} s USING (issue_id) WHERE i.issue_id = $1",
            issue_id,
        )
        return None if row is None else dict(row)

    async def claim_list(
        self,
        village_id: str,
        townships: Collection[str] | None,
        states: list[str],
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        """The village's public list (党员干部领办实事清单), oldest speak-up day first."""
        where = Filter()
        where.add("village_id = {}", village_id)
        where.visible_to(townships)
        where.add("state = ANY({}::text[])", states)
        return await page(
            self.pool, self.t["issues"], where, "speak_up_day, issue_id", limit, offset
        )

    async def claims_of(
        self, person_id: str, townships: Collection[str] | None, limit: int, offset: int
    ) -> dict[str, Any]:
        """A party member's claims, with how many are closed (办结)."""
        where = Filter()
        where.add("claimant_id = {}", person_id)
        where.visible_to(townships)
        result = await page(
            self.pool, self.t["issues"], where, "claimed_at DESC, issue_id", limit, offset
        )
        result["closed"] = await self.pool.fetchval(
            f"SELECT count(*) FROM {self.t['issues']} WHERE {where.where} AND state = 'closed'",
            *where.args,
        )
        return result
