"""Durable reminders: rows with a due time and a cancellation key, fired once.

The timer runs in one instance of the service (the platform's ``background`` jobs hold a
leadership lock); it claims due rows with ``FOR UPDATE SKIP LOCKED`` all the same, and plans
the notice and marks the row fired in one transaction, so a crash in between fires it again
after the restart and the ledger's unique key keeps that from sending anything twice. The notice
is keyed by the reminder and its due time: a reminder moved by a postponement is a new notice.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.runtime import Background, Runtime

from ..domain.kinds import KINDS
from .ledger import Ledger, Notice, derived_id

ACTOR = "notifications-reminders"


async def fire_due(rt: Runtime, ledger: Ledger, now: dt.datetime, limit: int = 100) -> int:
    """Fire every reminder due at ``now``; returns how many fired."""
    s = ledger.s
    async with rt.pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            f"""SELECT * FROM {s}.reminders WHERE status = 'scheduled' AND due_at <= $1
                ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now,
            limit,
        )
        for row in due:
            recipients = await _still_concerned(conn, s, row)
            notice = Notice(
                derived_id(str(row["reminder_id"]), row["due_at"].isoformat()),
                "reminder",
                KINDS[row["kind"]],
                row["township_id"],
                row["subject_ref"],
                row["context"],
                recipients,
            )
            await ledger.plan(conn, rt.store, notice, now, CommandContext(actor=ACTOR))
            await conn.execute(
                f"UPDATE {s}.reminders SET status = 'fired', fired_at = $2 WHERE reminder_id = $1",
                row["reminder_id"],
                now,
            )
    return len(due)


async def _still_concerned(conn: asyncpg.Connection, s: str, row: asyncpg.Record) -> list[str]:
    """The closing reminder goes only to those whose village or station submitted nothing."""
    recipients: list[str] = list(row["recipients"])
    if row["kind"] != "call_closing":
        return recipients
    forum_id = row["cancel_key"].removeprefix("forum:")
    done = await conn.fetch(
        f"""SELECT p.person_id FROM {s}.people p
            WHERE p.person_id = ANY($1::text[]) AND EXISTS (
                SELECT 1 FROM {s}.submissions x WHERE x.forum_id = $2 AND (
                    x.person_id = p.person_id OR x.village_id = p.village_id
                    OR x.station_id = p.station_id))""",
        recipients,
        forum_id,
    )
    submitted = {d["person_id"] for d in done}
    return [p for p in recipients if p not in submitted]


def reminder_timer(ledger: Ledger) -> Background:
    async def reminders(rt: Runtime) -> None:
        while True:
            while await fire_due(rt, ledger, rt.clock.now()):
                pass
            await asyncio.sleep(rt.settings.scheduler_interval_s)

    return reminders
