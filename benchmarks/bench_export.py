"""Export benchmark: ``cunzhi export`` events/s beside the raw limits of the same machine.

    python3 -m uv run python benchmarks/bench_export.py [--events 200000]

A rectification event store is filled by COPY with a year of task events shaped as the
service writes them (assigned with a nested assignee, progress with evidence lists,
completed), then, in the same run:

- raw read: the same events paged from PostgreSQL in the export's order, nothing decoded;
- platform read: the same through ``EventStore.read_all`` (decoded into the event models);
- raw write: Parquet of the same rows alone (Arrow conversion and zstd files by month);
- export: ``export_from_store`` into a fresh directory, all of the above together.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from cunzhi_platform.clock import SHANGHAI, SystemClock
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, Checkpoint, EventStore
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.migrations import migrate
from cunzhi_platform.runtime import connect_database
from cunzhi_platform.settings import Settings
from cunzhi_rectification.events import (
    Assignee,
    Evidence,
    TaskAssigned,
    TaskCompleted,
    TaskProgressReported,
    registry,
)

from cunzhi_cli.export import ServiceEvents, export_from_store
from cunzhi_cli.export.columns import table_spec
from cunzhi_cli.export.files import PartitionedWriter

SCHEMA = "bench_rectification"
START = dt.datetime(2026, 1, 5, 9, tzinfo=SHANGHAI)
PAGE = 2000


def task_events(n: int) -> list[TaskAssigned | TaskProgressReported | TaskCompleted]:
    """A task's life: assigned, progress twice, completed."""
    village = f"v{n % 602:03d}"
    due = (START + dt.timedelta(days=n % 330 + 30)).date()
    evidence = (Evidence(kind="file", value=f"evidence://{n}/ledger.pdf", title="台账"),)
    return [
        TaskAssigned(
            task_id=f"t{n}",
            source="campaign_target",
            township_id=f"town{n % 10}",
            village_id=village,
            assignee=Assignee(kind="village", id=village, name="村两委"),
            title="村集体经济收入达到5万元",
            starts_on=START.date(),
            due_on=due,
            deadline=dt.datetime.combine(due, dt.time(23, 59), SHANGHAI),
            campaign_id="2026",
            area="集体经济",
        ),
        *(
            TaskProgressReported(
                task_id=f"t{n}",
                township_id=f"town{n % 10}",
                percent=p,
                previous_percent=p - 40,
                note="按计划推进",
                evidence=evidence,
                reported_by="secretary",
                reported_on=due,
            )
            for p in (40, 80)
        ),
        TaskCompleted(
            task_id=f"t{n}",
            township_id=f"town{n % 10}",
            completed_on=due,
            summary="已完成",
            evidence=evidence,
            completed_by="secretary",
            village_id=village,
        ),
    ]


async def fill(pool: asyncpg.Pool, events: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await migrate(conn, SCHEMA, PLATFORM_MIGRATIONS)
        rows = []
        for n in range(events // 4):
            for version, event in enumerate(task_events(n), 1):
                when = START + dt.timedelta(minutes=len(rows) * 525_600 // events)
                rows.append(
                    (
                        f"task:t{n}",
                        version,
                        uuid.uuid4(),
                        event.event_type,
                        event.schema_version,
                        event.model_dump_json(),
                        '{"actor": "bench", "source": "/cunzhi/rectification"}',
                        when,
                    )
                )
        sql = (
            f"INSERT INTO {SCHEMA}.events (stream_id, stream_version, event_id, type, "
            "schema_version, payload, metadata, recorded_at) SELECT * FROM unnest($1::text[], "
            "$2::int[], $3::uuid[], $4::text[], $5::int[], $6::text[]::jsonb[], "
            "$7::text[]::jsonb[], $8::timestamptz[])"
        )
        for i in range(0, len(rows), 10_000):
            await conn.execute(sql, *map(list, zip(*rows[i : i + 10_000], strict=True)))
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.events")


async def raw_read(pool: asyncpg.Pool) -> tuple[int, float]:
    sql = (
        "SELECT global_position, tx_id::text::bigint AS tx, stream_id, stream_version, event_id, "
        "type, schema_version, payload::text, recorded_at, metadata->>'actor' "
        f"FROM {SCHEMA}.events WHERE (tx_id, global_position) > ($1::text::xid8, $2) "
        "ORDER BY tx_id, global_position LIMIT $3"
    )
    count, after = 0, (0, 0)
    began = time.perf_counter()
    while rows := await pool.fetch(sql, str(after[0]), after[1], PAGE):
        count += len(rows)
        after = (rows[-1]["tx"], rows[-1]["global_position"])
    return count, time.perf_counter() - began


async def platform_read(store: EventStore) -> tuple[int, float, list]:
    stored, after = [], Checkpoint()
    began = time.perf_counter()
    while page := await store.read_all(after, PAGE):
        stored.extend(page)
        after = page[-1].checkpoint
    return len(stored), time.perf_counter() - began, stored


def raw_write(root: Path, stored: list) -> float:
    specs = {n: table_spec("rectification", registry.model(n)) for n in registry.names()}
    rows = [
        (specs[e.envelope.type], specs[e.envelope.type].row(e.envelope, e.event, e.position))
        for e in stored
    ]
    began = time.perf_counter()
    writer = PartitionedWriter(root)
    for spec, row in rows:
        writer.add(spec, row)
    writer.finish()
    return time.perf_counter() - began


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<58}{value:>18}  {note}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, infrastructure(Settings(data_dir=Path(tmp))) as ep:
        assert ep.database_url
        pool = await connect_database(ep.database_url)
        try:
            await fill(pool, args.events)
            store = EventStore(pool, SCHEMA, registry, SystemClock())
            raw_n, raw_s = await raw_read(pool)
            read_n, read_s, stored = await platform_read(store)
            write_s = await asyncio.to_thread(raw_write, Path(tmp) / "write-only", stored)
            del stored
            began = time.perf_counter()
            exported = await export_from_store(
                pool, Path(tmp) / "export", [ServiceEvents("rectification", registry, SCHEMA)]
            )
            export_s = time.perf_counter() - began
        finally:
            await pool.close()
    n = exported["rectification"]
    print(f"{n:,} rectification events (a year, 4 per task), 2 cores, embedded PostgreSQL")
    line("raw: read from PostgreSQL, pages of 2,000, not decoded", f"{raw_n / raw_s:,.0f} ev/s")
    line("platform: EventStore.read_all (decoded)", f"{read_n / read_s:,.0f} ev/s")
    line("raw: Parquet write of the same rows alone", f"{n / write_s:,.0f} rows/s")
    line(
        "cunzhi export (read_all + rows + Parquet)",
        f"{n / export_s:,.0f} ev/s",
        f"{n / export_s / (raw_n / raw_s):.0%} of raw read; "
        f"{n / export_s / (read_n / read_s):.0%} of read_all alone",
    )


if __name__ == "__main__":
    asyncio.run(main())
