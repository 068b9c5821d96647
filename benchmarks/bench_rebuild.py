"""Rebuild benchmark: a projection's rebuild beside reading its events and COPY of its rows.

    python3 -m uv run python benchmarks/bench_rebuild.py [--events 100000]

Like for like, in one run on the same machine, for the platform tests' tallies (batched, many
events into few rows) and the topics read model (one event at a time, several rows each):

- read: the events paged from one REPEATABLE READ snapshot with the rebuild's own SELECT and
  page size, not decoded (raw) and through ``EventStore.read_snapshot`` (decoded into models);
- COPY: exactly the rows the rebuild produced (its tables and its processed marks), COPY'd
  into fresh tables created from the same DDL, with the same keys and indexes;
- rebuild: ``cunzhi_platform.rebuild`` of the same store into fresh tables, swap included.

The figure is rebuild time against the floor (read + COPY): a rebuild at 100 % would cost
nothing beyond reading its events and writing its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from cunzhi_platform.clock import SHANGHAI, SystemClock
from cunzhi_platform.consumer import Consumer, create_tables, table_names
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import _COLUMNS, PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.runtime import connect_database
from cunzhi_platform.settings import Settings
from cunzhi_topics import events as topics
from cunzhi_topics.adapters.projections import ReadModels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared" / "tests"))
from counting import Incremented, Tallies
from counting import registry as counting_registry

BATCH = 5000
"""The rebuild's default page."""
START = dt.datetime(2026, 1, 5, 9, tzinfo=SHANGHAI)
COPY_SUFFIX = "__copy"


def tallies_events(n: int) -> Iterator[tuple[str, Event]]:
    """The platform benchmark's commands: 32 writers, 200 counters."""
    for i in range(n):
        yield f"counter:{i % 32}", Incremented(counter=str(i % 200), amount=1)


def topics_events(n: int) -> Iterator[tuple[str, Event]]:
    """Calls for topics of 10 townships with 20 villages each, as the service writes them.

    A call: scheduled, opened; 12 topics submitted, each supported twice and one revised;
    closed; 4 shortlisted; one selected, the rest deferred; decided. Beside each call, 8
    speak-up issues raised, claimed, reported on and closed. About 110 events a call.
    """
    count, forum = 0, 0
    while count < n:
        forum += 1
        for town in range(10):
            t, f = f"town{town}", f"town{town}-F{forum:03d}"
            villages = [f"{t}-v{v:02d}" for v in range(20)]
            when = START + dt.timedelta(days=30 * forum)
            date = (when + dt.timedelta(days=20)).date()
            call = f"call:{t}:{f}"
            yield (
                call,
                topics.CallForTopicsScheduled(
                    township_id=t, forum_id=f, forum_date=date, opens_at=when, closes_at=when
                ),
            )
            yield (
                call,
                topics.CallForTopicsOpened(
                    township_id=t, forum_id=f, forum_date=date, opened_at=when, closes_at=when
                ),
            )
            ids = [f"{f}-T{k:02d}" for k in range(12)]
            for k, topic_id in enumerate(ids):
                village = villages[k % 20]
                common = {
                    "topic_id": topic_id,
                    "township_id": t,
                    "forum_id": f,
                    "village_ids": [village],
                    "submitter_ids": [f"sec-{village}"],
                }
                yield (
                    f"topic:{topic_id}",
                    topics.TopicSubmitted(
                        **common,
                        title=f"{village}村道路硬化和路灯安装问题",
                        description="村内主干道年久失修，雨天泥泞，夜间无照明，群众出行不便。",
                        category="infrastructure",
                        submitted_by=f"sec-{village}",
                        submitter_role="village_secretary",
                        submitter_village_id=village,
                        submitted_at=when,
                    ),
                )
                for s in (1, 2):
                    other = villages[(k + s) % 20]
                    yield (
                        f"topic:{topic_id}",
                        topics.TopicSupported(
                            **common,
                            supporter_id=f"sec-{other}",
                            supporter_village_id=other,
                            supported_at=when,
                        ),
                    )
                if k == 0:
                    yield (
                        f"topic:{topic_id}",
                        topics.TopicRevised(
                            **common,
                            title=f"{village}村道路硬化问题",
                            description="村内主干道年久失修，雨天泥泞。",
                            category="infrastructure",
                            revised_by=f"sec-{village}",
                            revised_at=when,
                        ),
                    )
            for k in range(8):
                issue, village = f"{f}-I{k}", villages[k]
                where = {"issue_id": issue, "township_id": t, "village_id": village}
                stream = f"issue:{issue}"
                yield (
                    stream,
                    topics.IssueRaised(
                        **where,
                        title="自来水管道漏水",
                        description="三组自来水管道漏水，需要维修。",
                        villager_name="张三",
                        raised_by=f"sec-{village}",
                        raised_on=when.date(),
                        speak_up_day=when.date(),
                        on_speak_up_day=True,
                    ),
                )
                yield (stream, topics.IssueClaimed(**where, claimant_id="pm1", claimed_at=when))
                yield (
                    stream,
                    topics.IssueProgressReported(
                        **where, claimant_id="pm1", note="已联系水务站", reported_at=when
                    ),
                )
                yield (
                    stream,
                    topics.IssueClosed(
                        **where, claimant_id="pm1", outcome="已修复", closed_at=when
                    ),
                )
            yield (
                call,
                topics.CallForTopicsClosed(
                    township_id=t, forum_id=f, forum_date=date, closed_at=when
                ),
            )
            for k, topic_id in enumerate(ids):
                village = villages[k % 20]
                common = {
                    "topic_id": topic_id,
                    "township_id": t,
                    "forum_id": f,
                    "village_ids": [village],
                    "submitter_ids": [f"sec-{village}"],
                }
                if k < 4:
                    yield (
                        f"topic:{topic_id}",
                        topics.TopicShortlisted(
                            **common, shortlisted_by="office", shortlisted_at=when
                        ),
                    )
                if k == 0:
                    yield (
                        f"topic:{topic_id}",
                        topics.TopicSelected(
                            **common,
                            title="道路硬化",
                            description="主干道硬化",
                            category="infrastructure",
                            selected_by="committee",
                            selected_at=when,
                        ),
                    )
                else:
                    yield (
                        f"topic:{topic_id}",
                        topics.TopicDeferred(**common, deferred_by="committee", deferred_at=when),
                    )
            yield (
                call,
                topics.CallForTopicsDecided(
                    township_id=t,
                    forum_id=f,
                    forum_date=date,
                    selected_topic_id=ids[0],
                    deferred_topic_ids=ids[1:],
                    referred_topic_ids=[],
                    declined_topic_ids=[],
                    decided_by="committee",
                    decided_at=when,
                ),
            )
            count += 2 + 12 * 3 + 1 + 8 * 4 + 1 + 4 + 12 + 1


async def fill(pool: asyncpg.Pool, schema: str, events: Iterator[tuple[str, Event]]) -> int:
    """Store ``events`` as the event store would (one transaction per 10,000)."""
    versions: Counter[str] = Counter()
    rows = []
    for stream, event in events:
        versions[stream] += 1
        rows.append(
            (
                stream,
                versions[stream],
                uuid.uuid4(),
                event.event_type,
                event.schema_version,
                event.model_dump_json(),
                f'{{"actor": "bench", "source": "/cunzhi/{schema}", '
                f'"correlation_id": "{uuid.uuid4()}"}}',
                START,
            )
        )
    sql = (
        f'INSERT INTO "{schema}".events (stream_id, stream_version, event_id, type, '
        "schema_version, payload, metadata, recorded_at) SELECT * FROM unnest($1::text[], "
        "$2::int[], $3::uuid[], $4::text[], $5::int[], $6::text[]::jsonb[], "
        "$7::text[]::jsonb[], $8::timestamptz[])"
    )
    async with pool.acquire() as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
        for i in range(0, len(rows), 10_000):
            await conn.execute(sql, *map(list, zip(*rows[i : i + 10_000], strict=True)))
        await conn.execute(f'VACUUM ANALYZE "{schema}".events')
    return len(rows)


async def read_raw(pool: asyncpg.Pool, schema: str) -> float:
    """The rebuild's first round without decoding: its SELECT, its pages, one snapshot."""
    sql = (
        f'SELECT {_COLUMNS} FROM "{schema}".events WHERE global_position > $1 '
        "ORDER BY global_position LIMIT $2"
    )
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        began, after = time.perf_counter(), 0
        while rows := await conn.fetch(sql, after, BATCH):
            after = rows[-1]["global_position"]
        return time.perf_counter() - began


async def read_decoded(store: EventStore) -> float:
    """The same through ``read_snapshot``, which decodes every payload into its model."""
    async with store.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        began, after = time.perf_counter(), 0
        while page := await store.read_snapshot(conn, after_position=after, limit=BATCH):
            after = page[-1].position
        return time.perf_counter() - began


async def copy_rows(url: str, schema: str, consumer: Consumer) -> tuple[int, float]:
    """COPY of the rows the rebuild left in ``consumer``'s tables into fresh copies of them.

    Identity columns are left to the copies to number, as the rebuild does. A connection
    without the pool's JSON codec: COPY sends jsonb as the text it was read as.
    """
    live, fresh = table_names(schema, consumer), table_names(schema, consumer, COPY_SUFFIX)
    conn = await asyncpg.connect(url)
    try:
        tables = []
        for logical, name in live.items():
            columns = [
                r["attname"]
                for r in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                    "AND attnum > 0 AND NOT attisdropped AND attidentity <> 'a' "
                    "AND attgenerated = '' ORDER BY attnum",
                    name,
                )
            ]
            quoted = ", ".join(f'"{c}"' for c in columns)
            records = [tuple(r) for r in await conn.fetch(f"SELECT {quoted} FROM {name}")]
            tables.append((fresh[logical].split(".")[1].strip('"'), columns, records))
        await create_tables(conn, schema, consumer, COPY_SUFFIX)
        began = time.perf_counter()
        async with conn.transaction():
            for table, columns, records in tables:
                await conn.copy_records_to_table(
                    table, schema_name=schema, columns=columns, records=records
                )
        elapsed = time.perf_counter() - began
        for name in fresh.values():
            await conn.execute(f"DROP TABLE {name}")
    finally:
        await conn.close()
    return sum(len(records) for _, _, records in tables), elapsed


async def floor(url: str, store: EventStore, consumer: Consumer) -> dict[str, float]:
    """Read ``store``'s events and COPY the rows now in ``consumer``'s tables, each alone.

    The best of two runs each: other work on the machine only ever slows a run down.
    """
    copies = [await copy_rows(url, store.schema, consumer) for _ in range(2)]
    return {
        "rows": copies[0][0],
        "copy_s": min(seconds for _, seconds in copies),
        "raw_read_s": min([await read_raw(store.pool, store.schema) for _ in range(2)]),
        "read_s": min([await read_decoded(store) for _ in range(2)]),
    }


async def like_for_like(url: str, store: EventStore, consumer: Consumer) -> dict[str, float]:
    """Rebuild ``consumer`` from ``store`` into new tables (the better of two), then its
    ``floor``."""
    async with store.pool.acquire() as conn:
        await create_tables(conn, store.schema, consumer)
    runs = []
    for _ in range(2):
        began = time.perf_counter()
        events = await rebuild(consumer, store, batch_size=BATCH)
        runs.append(time.perf_counter() - began)
    return {"events": events, "rebuild_s": min(runs), **await floor(url, store, consumer)}


def lines(r: dict[str, float]) -> list[tuple[str, str, str]]:
    """(label, figure, note) rows for a ``like_for_like`` result."""
    read_copy, raw_read_copy = r["read_s"] + r["copy_s"], r["raw_read_s"] + r["copy_s"]
    events, rows = r["events"], r["rows"]
    return [
        (
            "raw: read the events as the rebuild does, not decoded",
            f"{events / r['raw_read_s']:,.0f} ev/s",
            f"{r['raw_read_s']:.2f} s",
        ),
        (
            "platform: the same, decoded (read_snapshot)",
            f"{events / r['read_s']:,.0f} ev/s",
            f"{r['read_s']:.2f} s",
        ),
        (
            f"raw: COPY of its {rows:,.0f} rows into the same tables",
            f"{rows / r['copy_s']:,.0f} rows/s",
            f"{r['copy_s']:.2f} s",
        ),
        (
            "projection rebuild",
            f"{events / r['rebuild_s']:,.0f} ev/s",
            f"{r['rebuild_s']:.2f} s = {read_copy / r['rebuild_s']:.0%} of read + COPY "
            f"({raw_read_copy / r['rebuild_s']:.0%} undecoded); aim ≥ 60 %",
        ),
    ]


def report(title: str, r: dict[str, float]) -> None:
    print(f"{title}: {r['events']:,.0f} events, {r['rows']:,.0f} rows (processed marks included)")
    rows = lines(r)
    width = max(len(label) for label, _, _ in rows)
    for label, figure, note in rows:
        print(f"  {label:<{width}}  {figure:>14}  {note}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, infrastructure(Settings(data_dir=Path(tmp))) as ep:
        assert ep.database_url
        pool = await connect_database(ep.database_url)
        try:
            server = await pool.fetchval("SHOW server_version")
            print(f"PostgreSQL {server} ({ep.mode}); pages of {BATCH:,}")
            for title, schema, registry, consumer, events in (
                (
                    "tallies (toy, batched)",
                    "bench_tallies",
                    counting_registry,
                    Tallies("x"),
                    tallies_events(args.events),
                ),
                (
                    "topics read model",
                    "bench_topics",
                    topics.registry,
                    ReadModels(),
                    topics_events(args.events),
                ),
            ):
                await fill(pool, schema, events)
                store = EventStore(pool, schema, registry, SystemClock())
                report(title, await like_for_like(ep.database_url, store, consumer))
        finally:
            await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
