"""``cunzhi export`` on the real stack: a township's forum cycle through the three services, a
forum from the paper ledger and campaign tasks left to fall overdue, exported to Parquet and
queried with DuckDB by the SQL of docs/analytics.md.

The services' schemas and topics are the session's, shared with other tests: each figure is
checked for this module's township, and every count against what the stores hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
import yaml
from aiokafka import AIOKafkaProducer
from cunzhi_meetings.application import record_past_forum
from cunzhi_meetings.domain.record import township_record
from cunzhi_meetings.events import ExpertLecture, GuestSpeaker
from cunzhi_meetings.events import registry as meetings_events
from cunzhi_meetings.service import build_service as meetings_service
from cunzhi_notifications.service import build_service as notifications_service
from cunzhi_platform.auth import TokenIssuer
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.envelope import CommandContext, Envelope, topic_for
from cunzhi_platform.events import Event, EventRegistry
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.migrations import migrate
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume, eventually, running
from cunzhi_rectification.application.tasks import assign_tasks, check_deadline, complete_task
from cunzhi_rectification.domain.campaign_ids import light_stream_id
from cunzhi_rectification.domain.tasks import Actor, EscalationPolicy, TaskDraft, deadline
from cunzhi_rectification.events import Assignee, Evidence
from cunzhi_rectification.events import registry as rectification_events
from cunzhi_rectification.events.campaign import LightChanged
from cunzhi_rectification.service import build_service as rectification_service
from cunzhi_topics.service import build_service as topics_service

from cunzhi_cli.cli import main
from cunzhi_cli.cycle import CYCLE_START, QIAN, forum_cycle, village_id
from cunzhi_cli.export import (
    ExportError,
    ServiceEvents,
    export_from_kafka,
    export_from_store,
    files,
)
from cunzhi_cli.export.columns import ENVELOPE_COLUMNS, table_spec
from cunzhi_cli.services import SERVICES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SERVICE_EVENTS = [ServiceEvents.of(name, registry) for name, (registry, _) in SERVICES.items()]


def doc_sql(name: str) -> str:
    """The query of docs/analytics.md marked ``<!-- sql: name -->``, exactly as written there."""
    doc = (ROOT / "docs" / "analytics.md").read_text()
    match = re.search(rf"<!-- sql: {name} -->\n```sql\n(.*?)```", doc, re.S)
    assert match, f"docs/analytics.md has no query {name}"
    return match.group(1)


def query(root: Path, sql: str) -> list[dict[str, Any]]:
    """``sql`` in DuckDB over the export in ``root``, after its ``views.sql``."""
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{root}'")
    con.execute((root / files.VIEWS).read_text())
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class County:
    township: str
    clock: ManualClock
    campaign_tasks: tuple[str, ...]
    started: dt.datetime
    """The database's time before the cycle: what the services published since is this
    module's."""


PAST_FORUM_DATE = dt.date(2026, 6, 26)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def county(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[County]:
    """The township's forum cycle through the services, then, with the services stopped, a
    ledger forum and two campaign tasks that fall overdue and escalate."""
    township = f"guandi-{uuid.uuid4().hex[:8]}"
    started = await pool.fetchval("SELECT now()")
    clock = ManualClock(CYCLE_START)
    issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
    async with (
        running(topics_service(), settings, clock) as topics,
        running(meetings_service(), settings, clock) as meetings,
        running(rectification_service(), settings, clock) as rectification,
        running(notifications_service(), settings, clock),
    ):
        await forum_cycle(topics, meetings, rectification, clock, issuer, township, lambda _: None)
        for service in SERVICES:
            assert await eventually(lambda s=service: drained(pool, s), timeout=30)
    ctx = CommandContext(actor="test")
    meetings_store = EventStore(pool, "meetings", meetings_events, clock)
    await record_past_forum(
        meetings_store,
        township,
        9,
        today=clock.now().date(),
        ctx=ctx,
        place="王庄村田间",
        date=PAST_FORUM_DATE,
        topic_title="小麦条锈病防治",
        problem_solved=True,
        mode="field_visit",
        host_unit="王庄村",
        expert_lectures=[ExpertLecture(expert_name="赵农", affiliation="县农技站", subject="植保")],
        guest_speakers=[GuestSpeaker(name="李明", affiliation="获嘉县某村")],
    )
    tasks = await campaign_tasks(pool, clock, township)
    yield County(township, clock, tasks, started)


async def drained(pool: asyncpg.Pool, service: str) -> bool:
    unsent = await pool.fetchval(f"SELECT count(*) FROM {service}.outbox WHERE sent_at IS NULL")
    return bool(unsent == 0)


CAMPAIGN_DUE = dt.date(2026, 12, 15)


async def campaign_tasks(pool: asyncpg.Pool, clock: ManualClock, township: str) -> tuple[str, ...]:
    """Two campaign targets assigned in November, overdue in December, escalated to the
    township and the county in January."""
    store = EventStore(pool, "rectification", rectification_events, clock)
    ctx = CommandContext(actor="test")
    ids = tuple(f"{township}-C{n}" for n in (1, 2))
    await assign_tasks(
        store,
        [
            TaskDraft(
                task_id=task_id,
                source="campaign_target",
                township_id=township,
                village_id=village_id(township, QIAN),
                assignee=Assignee(kind="village", id=village_id(township, QIAN)),
                title="村集体经济收入达到5万元",
                starts_on=clock.now().date(),
                due_on=CAMPAIGN_DUE,
                campaign_id=f"{township}-2026",
            )
            for task_id in ids
        ],
        ctx,
    )
    policy = EscalationPolicy()
    for moment in (deadline(CAMPAIGN_DUE), dt.datetime(2027, 1, 20, 9, tzinfo=SHANGHAI)):
        clock.set(moment)
        for task_id in ids:
            await check_deadline(store, task_id, now=clock.now(), policy=policy, ctx=ctx)
    return ids


async def events_in_store(pool: asyncpg.Pool) -> dict[str, int]:
    return {s: await pool.fetchval(f"SELECT count(*) FROM {s}.events") for s in SERVICES}


def contents(root: Path) -> dict[Path, bytes]:
    """Every Parquet file of the export (relative to ``root``) and its bytes."""
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.parquet")}


def exported_ids(root: Path, service: str) -> list[str]:
    """Every event id in the service's files, repeats included."""
    return [
        i
        for path in sorted((root / service).rglob("*.parquet"))
        for i in pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist()
    ]


async def test_the_doc_queries_give_the_township_record_and_the_tasks_by_month(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    exported = await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    assert exported == await events_in_store(pool)

    (record,) = [
        r
        for r in query(tmp_path, doc_sql("township_record"))
        if r["township_id"] == county.township
    ]
    # The cycle's forum (1 expert, 2 secretaries sharing) and the ledger's field visit (another
    # expert, a guest): the same figures as the meetings service's own rule.
    assert record == {
        "township_id": county.township,
        "forums_held": 2,
        "problems_solved": 2,
        "experts_invited": 2,
        "experience_sharers": 3,
        "field_visits": 1,
    }
    stored = await EventStore(pool, "meetings", meetings_events, county.clock).read_all(
        limit=1_000_000
    )
    rule = township_record(
        e.event for e in stored if getattr(e.event, "township_id", None) == county.township
    )
    assert (
        rule.forums_held,
        rule.problems_solved,
        rule.experts_invited,
        rule.secretaries_sharing_experience,
        rule.field_visits,
    ) == (2, 2, 2, 3, 1)

    months = [
        {k: v for k, v in r.items() if k != "township_id"}
        for r in query(tmp_path, doc_sql("tasks_by_month"))
        if r["township_id"] == county.township
    ]
    # The same counts straight from the event store.
    counted = await pool.fetch(
        "SELECT to_char(recorded_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') AS month, "
        "count(*) FILTER (WHERE type LIKE '%.TaskAssigned') AS assigned, "
        "count(*) FILTER (WHERE type LIKE '%.TaskCompleted') AS completed, "
        "count(*) FILTER (WHERE type LIKE '%.TaskOverdue') AS overdue, "
        "count(*) FILTER (WHERE type LIKE '%.TaskEscalated') AS escalated "
        "FROM rectification.events WHERE payload->>'township_id' = $1 AND type SIMILAR TO "
        "'%.Task(Assigned|Completed|Overdue|Escalated)' GROUP BY 1 ORDER BY 1",
        county.township,
    )
    assert months == [dict(r) for r in counted]
    # The forum's 3 tasks are assigned when rectification reads the resolution (October, or
    # November if the cycle's clock moved on first) and completed in November; the campaign's
    # 2 are assigned in November, overdue in December and escalated twice in January.
    by_month = {r.pop("month"): r for r in months}
    assert sum(r["assigned"] for r in by_month.values()) == 5
    assert by_month["2026-11"]["completed"] == 3
    assert by_month["2026-12"] == {"assigned": 0, "completed": 0, "overdue": 2, "escalated": 0}
    assert by_month["2027-01"] == {"assigned": 0, "completed": 0, "overdue": 0, "escalated": 4}


async def test_the_doc_query_gives_the_campaign_lights_by_month(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Two villages' lights as the campaign publishes them: one red in November, yellow in
    December; the other yellow since November."""
    campaign = f"{county.township}-lights"
    clock = ManualClock(dt.datetime(2026, 11, 10, 9, tzinfo=SHANGHAI))
    store = EventStore(pool, "rectification", rectification_events, clock)

    async def change(village: str, version: int, previous: str | None, light: str) -> None:
        event = LightChanged(
            campaign_id=campaign,
            village_id=village,
            township_id=county.township,
            previous=previous,  # type: ignore[arg-type]
            light=light,  # type: ignore[arg-type]
            reason="进度与计划相比",
            progress=0.2,
            planned=0.5,
            overdue_tasks=1,
            late_reports=0,
        )
        await store.append(light_stream_id(campaign, village), version, [event])

    await change("qian", 0, None, "red")
    await change("hou", 0, None, "yellow")
    clock.set(dt.datetime(2026, 12, 10, 9, tzinfo=SHANGHAI))
    await change("qian", 1, "red", "yellow")

    await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    lights = [
        (r["month"], r["green"], r["yellow"], r["red"])
        for r in query(tmp_path, doc_sql("lights_by_month"))
        if r["campaign_id"] == campaign
    ]
    assert lights == [("2026-11", 0, 1, 1), ("2026-12", 0, 2, 0)]


async def test_a_dbt_sources_file_describes_every_table(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    sources = yaml.safe_load((tmp_path / files.SOURCES).read_text())
    assert sources["version"] == 2
    by_service = {s["name"]: s for s in sources["sources"]}
    assert set(by_service) == set(SERVICES)
    for name, (registry, _) in SERVICES.items():
        tables = {t["name"]: t for t in by_service[name]["tables"]}
        assert set(tables) == {n.rsplit(".", 1)[-1] for n in registry.names()}
        for table in tables.values():
            assert table["description"] and all(c["description"] for c in table["columns"])
    (assigned,) = [t for t in by_service["rectification"]["tables"] if t["name"] == "TaskAssigned"]
    columns = {c["name"]: c["description"] for c in assigned["columns"]}
    spec = table_spec(
        "rectification", rectification_events.model("cunzhi.rectification.TaskAssigned")
    )
    assert list(columns) == spec.schema.names
    assert columns["event_id"] == ENVELOPE_COLUMNS[0][2]
    assert columns["assignee"].startswith("Who does the task")  # its JSON Schema description
    # dbt-duckdb reads a source table where its external_location says.
    location = by_service["rectification"]["meta"]["external_location"].format(name="TaskAssigned")
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{tmp_path}'")
    count = con.execute(f"SELECT count(*) FROM {location}").fetchone()
    stored = await pool.fetchval(
        "SELECT count(*) FROM rectification.events WHERE type = 'cunzhi.rectification.TaskAssigned'"
    )
    assert count == (stored,)


async def test_columns_come_from_the_schema_and_the_envelope(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    (held,) = query(
        tmp_path,
        "SELECT * FROM read_parquet('meetings/PastForumRecorded/*/*.parquet', "
        f"hive_partitioning = true) WHERE township_id = '{county.township}'",
    )
    assert held["month"] == "2026-11" and held["date"] == PAST_FORUM_DATE
    assert held["stream_version"] == 1 and held["schema_version"] == 1
    assert held["event_type"] == "cunzhi.meetings.PastForumRecorded" and held["actor"] == "test"
    assert held["problem_solved"] is True and held["number"] == 9
    kinds = [a["kind"] for a in json.loads(held["activities"])]
    assert kinds == ["expert_lecture", "experience_exchange", "discussion"]
    position, event_id = await pool.fetchrow(
        "SELECT global_position, event_id::text FROM meetings.events WHERE stream_id = $1",
        held["stream_id"],
    )
    assert (held["position"], held["event_id"]) == (position, event_id)
    described = {
        r["column_name"]: r["column_type"]
        for r in query(
            tmp_path,
            "DESCRIBE SELECT * FROM read_parquet('rectification/TaskAssigned/*/*.parquet')",
        )
    }
    assert described["due_on"] == "DATE" and described["deadline"] == "TIMESTAMP WITH TIME ZONE"
    assert described["weight"] == "DOUBLE" and described["assignee"] == "VARCHAR"
    assert described["recorded_at"] == "TIMESTAMP WITH TIME ZONE"
    assert list(described)[: len(ENVELOPE_COLUMNS)] == [c for c, _, _ in ENVELOPE_COLUMNS]


def test_every_event_type_of_every_service_has_a_table() -> None:
    for name, (registry, _) in SERVICES.items():
        for event_type in registry.names():
            spec = table_spec(name, registry.model(event_type))
            fields = registry.model(event_type).model_json_schema().get("properties", {})
            assert spec.schema.names == [c for c, _, _ in ENVELOPE_COLUMNS] + list(fields)
            assert all(isinstance(t, pa.DataType) for t in spec.schema.types)


async def more_events(pool: asyncpg.Pool, county: County) -> None:
    """The first campaign task completed late, in January."""
    store = EventStore(pool, "rectification", rectification_events, county.clock)
    await complete_task(
        store,
        county.campaign_tasks[0],
        Actor(
            QIAN.secretary.person_id, secretary_of=frozenset({village_id(county.township, QIAN)})
        ),
        summary="合作社已分红",
        evidence=[Evidence(kind="text", value="分红台账")],
        today=county.clock.now().date(),
        ctx=CommandContext(actor="test"),
    )


async def test_a_second_run_adds_only_the_new_events(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    files_before = contents(tmp_path)
    assert await export_from_store(pool, tmp_path, SERVICE_EVENTS) == dict.fromkeys(SERVICES, 0)

    await more_events(pool, county)
    second = await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    assert second["rectification"] >= 1
    assert {s: first[s] + second[s] for s in SERVICES} == await events_in_store(pool)
    for service in SERVICES:
        ids = exported_ids(tmp_path, service)
        assert len(ids) == len(set(ids)) == first[service] + second[service]
    # The first run's files are untouched; the new events are in new files.
    after = contents(tmp_path)
    assert all(after[p] == content for p, content in files_before.items())
    (late,) = [
        r
        for r in query(tmp_path, doc_sql("tasks_by_month"))
        if r["township_id"] == county.township and r["month"] == "2027-01"
    ]
    assert (late["completed"], late["escalated"]) == (1, 4)


async def test_a_run_that_dies_before_its_manifest_neither_skips_nor_repeats(
    county: County, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    manifest_before = (tmp_path / files.MANIFEST).read_text()
    await more_events_for_a_crash(pool, county)

    save = files.Manifest.save

    def die(self: files.Manifest, root: Path) -> None:
        raise RuntimeError("killed between the files and the manifest")

    monkeypatch.setattr(files.Manifest, "save", die)
    meetings_first = sorted(SERVICE_EVENTS, key=lambda s: s.name != "meetings")
    with pytest.raises(RuntimeError, match="killed"):
        await export_from_store(pool, tmp_path, meetings_first)
    assert (tmp_path / files.MANIFEST).read_text() == manifest_before
    stray = [p for p in contents(tmp_path) if str(p) not in json.loads(manifest_before)["files"]]
    assert stray, "the dying run left its files behind"

    monkeypatch.setattr(files.Manifest, "save", save)
    await export_from_store(pool, tmp_path, SERVICE_EVENTS)
    stored = await events_in_store(pool)
    for service in SERVICES:
        ids = exported_ids(tmp_path, service)
        assert len(ids) == len(set(ids)) == stored[service], service
    assert not set(stray) & set(contents(tmp_path))


async def more_events_for_a_crash(pool: asyncpg.Pool, county: County) -> None:
    """A further ledger forum of the township (meetings)."""
    store = EventStore(pool, "meetings", meetings_events, county.clock)
    await record_past_forum(
        store,
        county.township,
        int(uuid.uuid4().int % 1000) + 100,
        today=county.clock.now().date(),
        ctx=CommandContext(actor="test"),
        place="乡政府",
        date=PAST_FORUM_DATE,
        topic_title="人居环境整治",
        problem_solved=False,
        guest_speakers=[GuestSpeaker(name="王强", affiliation="新乡县东大阳村")],
        expert_lectures=[],
    )


async def test_export_from_kafka_keeps_each_event_once(
    county: County, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers
    meetings = [s for s in SERVICE_EVENTS if s.name == "meetings"]
    # A record that is no meetings event (what consumers dead-letter) is skipped, not fatal.
    poison = Envelope.new(
        type="cunzhi.meetings.ForumNoticeIssued",
        source="/cunzhi/meetings",
        subject=f"forum:{county.township}:99",
        time=dt.datetime.now(SHANGHAI),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic_for("meetings"), b'{"forum_id": "x"}', key=b"x", headers=poison.to_headers()
        )
    finally:
        await producer.stop()
    first = await export_from_kafka(bootstrap, tmp_path, meetings)
    # The township's forum events again, as a relay that restarted would publish them.
    topic = topic_for("meetings")
    again = [
        r
        for r in await consume(bootstrap, topic, first["meetings"], timeout=30)
        if json.loads(r.value).get("township_id") == county.township
    ]
    assert again
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for r in again:
            await producer.send_and_wait(topic, r.value, key=r.key, headers=list(r.headers))
    finally:
        await producer.stop()
    assert await export_from_kafka(bootstrap, tmp_path, meetings) == {"meetings": 0}

    ids = exported_ids(tmp_path, "meetings")
    assert len(ids) == len(set(ids)) == first["meetings"]
    # The topic also holds what other tests published as meetings would (not in its store):
    # the township's events are compared with the store.
    township = {
        r["event_id"]
        for r in query(
            tmp_path,
            "SELECT event_id FROM read_parquet('meetings/*/*/*.parquet', union_by_name = true) "
            f"WHERE township_id = '{county.township}'",
        )
    }
    in_store = await pool.fetch(
        "SELECT e.event_id::text FROM meetings.events e JOIN meetings.outbox o USING (event_id) "
        "WHERE o.sent_at IS NOT NULL AND e.payload->>'township_id' = $1",
        county.township,
    )
    assert township == {r["event_id"] for r in in_store}
    with pytest.raises(ExportError, match="from the kafka"):
        await export_from_store(pool, tmp_path, meetings)


async def test_export_from_kafka_exports_every_service(
    county: County, settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """All services in one run: each one's topic is read, not only the first's."""
    assert settings.kafka_bootstrap_servers
    exported = await export_from_kafka(settings.kafka_bootstrap_servers, tmp_path, SERVICE_EVENTS)
    published_by = []
    for service in SERVICES:
        published = {
            r["event_id"]
            for r in await pool.fetch(
                f"SELECT event_id::text FROM {service}.outbox "
                "WHERE sent_at IS NOT NULL AND created_at >= $1",
                county.started,
            )
        }
        # (late in a long session notifications may not have sent the cycle's notices yet)
        published_by += [service] if published else []
        ids = exported_ids(tmp_path, service)
        assert len(ids) == len(set(ids)) == exported[service]
        assert published <= set(ids), service
    # the bug: only the first service's topic was read; later ones must have been too
    assert len(published_by) >= 2 and published_by[0] == next(iter(SERVICES)), published_by


async def test_small_bounds_split_pages_row_groups_and_files_and_lose_nothing(
    county: County, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """What bounds the memory (pages, rows per group, rows held, open files, commits) never
    changes what is exported."""
    exported = await export_from_store(
        pool,
        tmp_path,
        SERVICE_EVENTS,
        page=7,
        commit_every=40,
        row_group_rows=5,
        max_buffered=12,
        max_open=2,
    )
    assert exported == await events_in_store(pool)
    groups = []
    for service in SERVICES:
        ids = exported_ids(tmp_path, service)
        assert len(ids) == len(set(ids)) == exported[service]
        for path in (tmp_path / service).rglob("*.parquet"):
            meta = pq.ParquetFile(path).metadata
            groups += [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert max(groups) == 5 and len(groups) > sum(exported.values()) / 5
    (record,) = [
        r
        for r in query(tmp_path, doc_sql("township_record"))
        if r["township_id"] == county.township
    ]
    assert record["forums_held"] >= 2


async def test_the_command_exports_then_adds_nothing_new(
    county: County, settings: Settings, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    await asyncio.to_thread(main, ["export", str(tmp_path), "--service", "rectification"])
    first = capsys.readouterr().out
    assert re.search(r"rectification: [1-9]\d* new events exported", first), first
    await asyncio.to_thread(main, ["export", str(tmp_path), "--service", "rectification"])
    assert "rectification: 0 new events exported" in capsys.readouterr().out
    assert {p.parts[0] for p in contents(tmp_path)} == {"rectification"}


async def test_one_export_at_a_time_per_directory(pool: asyncpg.Pool, tmp_path: Path) -> None:
    with files.exclusive(tmp_path), pytest.raises(ExportError, match="another export"):
        await export_from_store(pool, tmp_path, SERVICE_EVENTS)


def _registries() -> tuple[EventRegistry, EventRegistry]:
    """A service's registry before and after its event gained an optional field (v1 → v2)."""
    before, after = EventRegistry(), EventRegistry()

    @before.register("cunzhi.evolving.VisitMade", version=1)
    class VisitMade(Event):
        """A visit was made."""

        village_id: str
        on: dt.date

    @after.register("cunzhi.evolving.VisitMade", version=2)
    class VisitMadeV2(Event):
        """A visit was made, and by whom."""

        village_id: str
        on: dt.date
        visitors: tuple[str, ...] = ()

    @after.upcaster("cunzhi.evolving.VisitMade", 1)
    def add_visitors(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "visitors": []}

    return before, after


async def test_a_new_schema_version_adds_a_column_and_old_files_still_read(
    pool: asyncpg.Pool, schema: str, tmp_path: Path
) -> None:
    before, after = _registries()
    clock = ManualClock(dt.datetime(2026, 3, 2, 9, tzinfo=SHANGHAI))
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
    old = EventStore(pool, schema, before, clock)
    await old.append(
        "visit-1",
        0,
        [before.model("cunzhi.evolving.VisitMade")(village_id="v1", on=dt.date(2026, 3, 1))],
    )
    await export_from_store(pool, tmp_path, [ServiceEvents("evolving", before, schema)])

    clock.set(dt.datetime(2026, 4, 2, 9, tzinfo=SHANGHAI))
    new = EventStore(pool, schema, after, clock)
    v2 = after.model("cunzhi.evolving.VisitMade")
    await new.append("visit-2", 0, [v2(village_id="v2", on=dt.date(2026, 4, 1), visitors=["王"])])
    assert await export_from_store(pool, tmp_path, [ServiceEvents("evolving", after, schema)]) == {
        "evolving": 1
    }
    rows = query(
        tmp_path,
        "SELECT month, village_id, schema_version, visitors FROM read_parquet("
        "'evolving/VisitMade/*/*.parquet', hive_partitioning = true, union_by_name = true) "
        "ORDER BY month",
    )
    assert rows == [
        {"month": "2026-03", "village_id": "v1", "schema_version": 1, "visitors": None},
        {"month": "2026-04", "village_id": "v2", "schema_version": 2, "visitors": '["王"]'},
    ]
    # Exported afresh after the upgrade, the old event is upcast: one shape for every row.
    await export_from_store(pool, tmp_path / "again", [ServiceEvents("evolving", after, schema)])
    rows = query(
        tmp_path / "again",
        "SELECT schema_version, visitors FROM read_parquet('evolving/VisitMade/*/*.parquet') "
        "ORDER BY position",
    )
    assert rows == [
        {"schema_version": 2, "visitors": "[]"},
        {"schema_version": 2, "visitors": '["王"]'},
    ]
