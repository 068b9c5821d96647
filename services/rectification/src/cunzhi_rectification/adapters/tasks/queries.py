"""Queries over the ``tasks`` read model, always within the caller's scope.

A ``Scope`` is what a caller may see: the county organisation department sees every task; the
office of a township (党建办/乡党委) its township's; a village secretary their villages'; anyone
the tasks assigned to them by person.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from .projection import tasks_table


@dataclass(frozen=True)
class Scope:
    everything: bool
    townships: frozenset[str]
    villages: frozenset[str]
    person_id: str

    def sees(self, township_id: str, village_id: str | None, assignee: tuple[str, str]) -> bool:
        return (
            self.everything
            or township_id in self.townships
            or (village_id is not None and village_id in self.villages)
            or assignee == ("person", self.person_id)
        )


@dataclass(frozen=True)
class Filters:
    township_id: str | None = None
    village_id: str | None = None
    assignee_id: str | None = None
    forum_id: str | None = None
    campaign_id: str | None = None
    status: str | None = None
    source: str | None = None
    escalation_level: str | None = None
    due_before: dt.date | None = None


_SCOPED = (
    "($1::bool OR township_id = ANY($2::text[]) OR village_id = ANY($3::text[]) "
    "OR (assignee_kind = 'person' AND assignee_id = $4))"
)
_FILTERED = (
    "($5::text IS NULL OR township_id = $5) AND ($6::text IS NULL OR village_id = $6) "
    "AND ($7::text IS NULL OR assignee_id = $7) AND ($8::text IS NULL OR forum_id = $8) "
    "AND ($9::text IS NULL OR campaign_id = $9) AND ($10::text IS NULL OR status = $10) "
    "AND ($11::text IS NULL OR source = $11) AND ($12::text IS NULL OR escalation_level = $12) "
    "AND ($13::date IS NULL OR due_on < $13)"
)


def _scope_args(scope: Scope) -> tuple[Any, ...]:
    return (scope.everything, sorted(scope.townships), sorted(scope.villages), scope.person_id)


def _filter_args(f: Filters) -> tuple[Any, ...]:
    return (
        f.township_id,
        f.village_id,
        f.assignee_id,
        f.forum_id,
        f.campaign_id,
        f.status,
        f.source,
        f.escalation_level,
        f.due_before,
    )


def _row(r: asyncpg.Record) -> dict[str, Any]:
    row = dict(r.items())
    row["assignee"] = {
        "kind": row.pop("assignee_kind"),
        "id": row.pop("assignee_id"),
        "name": row.pop("assignee_name"),
    }
    return row


class TaskQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.table = tasks_table(schema)

    async def tasks(
        self, scope: Scope, filters: Filters, *, order: str, limit: int, offset: int
    ) -> dict[str, Any]:
        where = f"{_SCOPED} AND {_FILTERED}"
        args = (*_scope_args(scope), *_filter_args(filters))
        total = await self.pool.fetchval(f"SELECT count(*) FROM {self.table} WHERE {where}", *args)
        rows = await self.pool.fetch(
            f"SELECT * FROM {self.table} WHERE {where} ORDER BY {order}, task_id "
            "LIMIT $14 OFFSET $15",
            *args,
            limit,
            offset,
        )
        return {"items": [_row(r) for r in rows], "total": total, "limit": limit, "offset": offset}

    async def task(self, task_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(f"SELECT * FROM {self.table} WHERE task_id = $1", task_id)
        return _row(row) if row else None

    async def forum_counts(
        self, scope: Scope, township_id: str | None, *, limit: int, offset: int
    ) -> dict[str, Any]:
        """Tasks of each forum the caller sees: total, open, overdue, completed."""
        where = f"{_SCOPED} AND forum_id IS NOT NULL AND ($5::text IS NULL OR township_id = $5)"
        args = (*_scope_args(scope), township_id)
        total = await self.pool.fetchval(
            f"SELECT count(DISTINCT forum_id) FROM {self.table} WHERE {where}", *args
        )
        rows = await self.pool.fetch(
            "SELECT forum_id, min(township_id) AS township_id, count(*) AS total, "
            "count(*) FILTER (WHERE status = 'open') AS open, "
            "count(*) FILTER (WHERE status = 'overdue') AS overdue, "
            "count(*) FILTER (WHERE status = 'completed') AS completed "
            f"FROM {self.table} WHERE {where} GROUP BY forum_id ORDER BY forum_id "
            "LIMIT $6 OFFSET $7",
            *args,
            limit,
            offset,
        )
        return {
            "items": [dict(r.items()) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
