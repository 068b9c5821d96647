"""Notifications benchmark: a county-wide notice to 100,000 people, beside a raw reference.

    python3 -m uv run python benchmarks/bench_notifications.py [--people 100000] [--seconds 10]

Measured in one run on the same machine and database (embedded by default;
CUNZHI_DATABASE_URL selects an external one):

- planning: the ledger rows of one notice to every person of the county (preferences, quiet
  hours, addresses looked up; one row per person and channel; the NotificationRequested event),
  in one transaction as the consumer writes it. Target: < 10 s for 100,000 people.
- raw reference: COPY of the same number of rows of the same shape into a copy of the ledger
  table (same unique key and indexes): what PostgreSQL itself takes to store them.
- sending: deliveries/s through the sender (claim with lease, render, record with events) to
  in-process channels that accept at once, for ``--seconds``; the fake providers over HTTP are
  the channel adapters' own benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from cunzhi_notifications.adapters.inbox import InboxChannel
from cunzhi_notifications.adapters.ledger import Ledger, Notice
from cunzhi_notifications.adapters.schema import MIGRATIONS
from cunzhi_notifications.adapters.sender import Sender
from cunzhi_notifications.channels.base import Message, Outcome, SendResult
from cunzhi_notifications.domain.kinds import KINDS
from cunzhi_notifications.events import registry
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore, init_connection
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.logging import configure_logging
from cunzhi_platform.migrations import migrate
from cunzhi_platform.settings import Settings

SCHEMA = "bench_notifications"
NOW = dt.datetime(2026, 10, 27, 10, 0, tzinfo=SHANGHAI)


class Accepting:
    """A channel that accepts everything at once: the sender's own cost, without a provider."""

    def __init__(self, name: str) -> None:
        self.name, self.max_batch = name, 500
        self.at_most_once = False

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        return [SendResult(Outcome.SENT, provider_id=m.delivery_id) for m in messages]

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        return None


async def fill_directory(conn: asyncpg.Connection, people: int) -> None:
    rng = random.Random(1)
    rows = []
    for n in range(people):
        township = f"tw{n % 10:02d}"
        quiet = (dt.time(22, 0), dt.time(7, 0)) if n % 10 == 0 else (None, None)
        rows.append(
            (
                f"p{n:06d}",
                f"村干部{n}",
                ["village_secretary"],
                "bincheng",
                township,
                f"v{n % 602:03d}",
                f"138{n:08d}" if rng.random() < 0.8 else None,
                f"p{n}@example.cn" if rng.random() < 0.3 else None,
                *quiet,
            )
        )
    await conn.copy_records_to_table(
        "people",
        schema_name=SCHEMA,
        records=rows,
        columns=[
            "person_id",
            "name",
            "roles",
            "county_id",
            "township_id",
            "village_id",
            "phone",
            "email",
            "quiet_start",
            "quiet_end",
        ],
    )
    prefs = [(f"p{n:06d}", "forum_notice", "wecom", True, False) for n in range(0, people, 20)]
    await conn.copy_records_to_table("preferences", schema_name=SCHEMA, records=prefs)


async def plan(pool: asyncpg.Pool, store: EventStore, people: int) -> tuple[float, int]:
    async with pool.acquire() as conn:
        ids = [
            r["person_id"]
            for r in await conn.fetch(
                f'SELECT person_id FROM "{SCHEMA}".people WHERE county_id = $1', "bincheng"
            )
        ]
        assert len(ids) == people
        notice = Notice(
            str(uuid.uuid4()),
            "bench",
            KINDS["forum_notice"],
            None,
            "county:bincheng",
            {"number": 1, "date": "10月30日", "place": "区委党校", "topic_title": "整顿攻坚"},
            ids,
        )
        ledger = Ledger(SCHEMA, ["inbox", "sms", "email"])
        started = time.perf_counter()
        async with conn.transaction():
            rows = await ledger.plan(conn, store, notice, NOW, CommandContext(actor="bench"))
        return time.perf_counter() - started, rows


async def raw_copy(pool: asyncpg.Pool, rows: int) -> float:
    async with pool.acquire() as conn:
        await conn.execute(
            f'CREATE TABLE "{SCHEMA}".raw_deliveries (LIKE "{SCHEMA}".deliveries INCLUDING ALL)'
        )
        source = uuid.uuid4()
        records = [
            (
                source,
                f"p{n:06d}",
                "forum_notice",
                ("inbox", "sms")[n % 2],
                None,
                NOW,
                NOW,
            )
            for n in range(rows)
        ]
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "raw_deliveries",
                schema_name=SCHEMA,
                records=records,
                columns=[
                    "source_event_id",
                    "recipient_id",
                    "kind",
                    "channel",
                    "township_id",
                    "not_before",
                    "created_at",
                ],
            )
        return time.perf_counter() - started


async def send(pool: asyncpg.Pool, store: EventStore, seconds: float) -> tuple[float, int]:
    channels = {"inbox": InboxChannel(), "sms": Accepting("sms"), "email": Accepting("email")}
    sender = Sender(SCHEMA, channels)
    clock = ManualClock(NOW)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        claimed = await sender.run_once(pool, store, clock)
        if not claimed:
            break
        done += claimed
    return time.perf_counter() - started, done


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        base = Settings(data_dir=Path(tmp))
        endpoints = stack.enter_context(infrastructure(base))
        pool = await asyncpg.create_pool(endpoints.database_url, init=init_connection)
        assert pool is not None
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
            await migrate(conn, SCHEMA, [*PLATFORM_MIGRATIONS, *MIGRATIONS])
            await fill_directory(conn, args.people)
            server = await conn.fetchval("SHOW server_version")
        store = EventStore(pool, SCHEMA, registry, ManualClock(NOW))
        planned_s, rows = await plan(pool, store, args.people)
        copy_s = await raw_copy(pool, rows)
        send_s, sent = await send(pool, store, args.seconds)
        await pool.close()
    print(f"machine: {os.cpu_count()} cores; PostgreSQL {server} ({endpoints.mode})")
    print(f"{'county-wide notice: recipients':<58} {args.people:>12,}")
    print(f"{'ledger rows planned (one per person and channel)':<58} {rows:>12,}")
    verdict = "within" if planned_s < 10 else "OVER"
    print(f"{'planning time (target < 10 s)':<58} {planned_s:>10.2f} s  {verdict} target")
    print(
        f"{'raw: COPY of as many rows of the same shape':<58} {copy_s:>10.2f} s  "
        f"(planning = {planned_s / copy_s:.1f}× COPY)"
    )
    print(
        f"{'sending to accepting in-process channels':<58} {sent / send_s:>10,.0f} /s  "
        f"({sent:,} in {send_s:.1f} s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
