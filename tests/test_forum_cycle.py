"""Guandi's forum cycle across topics, meetings and rectification, on the real stack, as
``cunzhi demo`` runs it.

The three services run at once on one ``ManualClock``; ``forum_cycle`` (the demo's own code)
drives them through HTTP and the broker: meetings' ``ResolutionAdopted`` makes rectification
track the tasks, the village secretaries complete them over HTTP, and rectification's
``TaskCompleted`` closes the forum and resolves the topic. The services' names, schemas and
topics are shared by the session, so each test works in a fresh township and reads back from
Kafka only that township's events.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from cunzhi_meetings.service import build_service as meetings_service
from cunzhi_platform.auth import TokenIssuer
from cunzhi_platform.clock import ManualClock
from cunzhi_platform.envelope import topic_for
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.metrics import DLQ
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume, eventually, running
from cunzhi_rectification.service import build_service as rectification_service
from cunzhi_topics.service import build_service as topics_service

from cunzhi_cli.cycle import (
    ABSENT,
    CYCLE_START,
    HOU,
    LATE,
    MOBILE_MEMBERS,
    NAN,
    POLICY,
    QIAN,
    CycleResult,
    forum_cycle,
    village_id,
)
from cunzhi_cli.demo import run_demo

pytestmark = pytest.mark.slow

Published = dict[str, list[dict[str, Any]]]


@pytest.fixture
def bootstrap(settings: Settings) -> str:
    assert settings.kafka_bootstrap_servers
    return settings.kafka_bootstrap_servers


async def records(
    bootstrap: str, pool: asyncpg.Pool, service: str, township: str
) -> list[ConsumerRecord[bytes, bytes]]:
    """The township's records on the service's topic, each event once.

    Every stored event reaches the topic once the outbox is drained; the relay is
    at-least-once, so a record published twice is kept once (by its ``ce_id``).
    """

    async def drained() -> bool:
        unsent = await pool.fetchval(f"SELECT count(*) FROM {service}.outbox WHERE sent_at IS NULL")
        return bool(unsent == 0)

    assert await eventually(drained), f"the {service} outbox did not drain"
    total = await pool.fetchval(f"SELECT count(*) FROM {service}.events")
    seen: set[str] = set()
    found = []
    for record in await consume(bootstrap, topic_for(service), total, timeout=30):
        ce_id = dict(record.headers)["ce_id"].decode()
        if json.loads(record.value).get("township_id") == township and ce_id not in seen:
            seen.add(ce_id)
            found.append(record)
    return found


async def published(bootstrap: str, pool: asyncpg.Pool, service: str, township: str) -> Published:
    """The township's events on the service's topic, by short type, each event once."""
    by_type: Published = defaultdict(list)
    for record in await records(bootstrap, pool, service, township):
        ce_type = dict(record.headers)["ce_type"].decode()
        by_type[ce_type.rsplit(".", 1)[1]].append(json.loads(record.value))
    return by_type


async def test_a_forum_cycle_from_plan_to_close(
    settings: Settings, bootstrap: str, pool: asyncpg.Pool
) -> None:
    township = f"guandi-{uuid.uuid4().hex[:8]}"
    clock = ManualClock(CYCLE_START)
    issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
    lines: list[str] = []
    async with (
        running(topics_service(), settings, clock) as topics,
        running(meetings_service(), settings, clock) as meetings,
        running(rectification_service(), settings, clock) as rectification,
    ):
        result = await forum_cycle(
            topics, meetings, rectification, clock, issuer, township, lines.append
        )
        assert await eventually(lambda: next_forum_planned(pool, township), timeout=30)
        forum_events = await published(bootstrap, pool, "meetings", township)
        topic_events = await published(bootstrap, pool, "topics", township)
        task_events = await published(bootstrap, pool, "rectification", township)
        await assert_redelivery_changes_nothing(bootstrap, pool, township)

    assert len(lines) == 18 and any("notice issued automatically" in line for line in lines)
    assert_meetings_published(result, forum_events)
    assert_topics_published(result, topic_events)
    assert_rectification_published(result, task_events)
    assert_merged_topic(result)
    assert_forum_record(result)
    record = result.township_record
    assert (
        record["forums_held"],
        record["problems_solved"],
        record["experts_invited"],
        record["experience_exchanges"],
        record["field_visits"],
    ) == (1, 1, 1, 2, 0)


def assert_meetings_published(result: CycleResult, events: Published) -> None:
    once = ["ForumTopicSet", "ForumNoticeIssued", "ForumHeld", "ResolutionAdopted", "ForumClosed"]
    for event_type in once:
        assert [e["forum_id"] for e in events[event_type]] == [result.forum_id], event_type
    # The forum closed with none to come: the township's next one planned itself (monthly).
    number = int(result.forum_id.rsplit("-F", 1)[1])
    following = result.forum_id.replace(f"-F{number:03d}", f"-F{number + 1:03d}")
    assert sorted(e["forum_id"] for e in events["ForumPlanned"]) == [result.forum_id, following]
    (notice,) = events["ForumNoticeIssued"]
    assert notice["automatic"] and notice["topic_id"] == result.selected_topic["topic_id"]
    # Issued when the manual clock reached the due time, not when the topic was set.
    due = dt.datetime.fromisoformat(result.forum["notice_due_at"])
    assert dt.datetime.fromisoformat(notice["issued_at"]) == due
    (resolution,) = events["ResolutionAdopted"]
    assert resolution["policies"] == [POLICY]
    assert [t["task_id"] for t in resolution["tasks"]] == list(result.task_ids)
    completed = sorted(e["task_id"] for e in events["ForumTaskCompleted"])
    assert completed == sorted(result.task_ids)


def assert_topics_published(result: CycleResult, events: Published) -> None:
    selected_id = result.selected_topic["topic_id"]
    for event_type in ("TopicSelected", "TopicResolved"):
        assert [(e["topic_id"], e["forum_id"]) for e in events[event_type]] == [
            (selected_id, result.forum_id)
        ], event_type
    for event_type in ("CallForTopicsOpened", "CallForTopicsClosed", "TopicsMerged"):
        of_this_forum = [e for e in events[event_type] if e["forum_id"] == result.forum_id]
        assert len(of_this_forum) == 1, event_type
    dispositions = {t: len(events[t]) for t in ("TopicDeferred", "TopicReferred", "TopicDeclined")}
    assert dispositions == {"TopicDeferred": 1, "TopicReferred": 1, "TopicDeclined": 1}
    assert len(events["TopicSubmitted"]) == len(result.topic_ids) == 5


def assert_rectification_published(result: CycleResult, events: Published) -> None:
    for event_type in ("TaskAssigned", "TaskProgressReported", "TaskCompleted"):
        assert sorted(e["task_id"] for e in events[event_type]) == sorted(result.task_ids)
    assert {e["forum_id"] for e in events["TaskAssigned"]} == {result.forum_id}
    assert {e["source"] for e in events["TaskAssigned"]} == {"forum_resolution"}
    assert {e["forum_id"] for e in events["TaskCompleted"]} == {result.forum_id}
    secretaries = {v.secretary.person_id for v in (HOU, NAN, QIAN)}
    assert {e["completed_by"] for e in events["TaskCompleted"]} == secretaries
    assert all(e["evidence"] for e in events["TaskCompleted"])
    assert [t["status"] for t in result.tasks] == ["completed"] * 3
    assert {t["percent"] for t in result.tasks} == {100}


CONSUMER_GROUPS = {
    "cunzhi.meetings.events": ["cunzhi.rectification.resolution_tasks"],
    "cunzhi.rectification.events": [
        "cunzhi.meetings.task_completed",
        "cunzhi.topics.forum_outcomes",
        "cunzhi.rectification.tasks",
    ],
}


async def caught_up(bootstrap: str) -> bool:
    """Every consumer of the cycle has committed up to the end of the topics it reads."""
    for topic, groups in CONSUMER_GROUPS.items():
        for group in groups:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
            )
            await consumer.start()
            try:
                await consumer.topics()
                partitions = [
                    TopicPartition(topic, p)
                    for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
                ends = await consumer.end_offsets(partitions)
                for tp in partitions:
                    if (await consumer.committed(tp) or 0) < ends[tp]:
                        return False
            finally:
                await consumer.stop()
    return True


async def next_forum_planned(pool: asyncpg.Pool, township: str) -> bool:
    """The monthly cadence planned the township's next forum once the first closed."""
    planned: bool = await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM meetings.events WHERE type = "
        "'cunzhi.meetings.ForumPlanned' AND payload->>'forum_id' = $1)",
        f"{township}-F002",
    )
    return planned


async def stored(pool: asyncpg.Pool, township: str) -> dict[str, int]:
    """The township's stored events, but for its next forum's, which the monthly cadence
    planned and whose call opens on its own clock meanwhile."""
    return {
        service: await pool.fetchval(
            f"SELECT count(*) FROM {service}.events WHERE payload->>'township_id' = $1 "
            "AND coalesce(payload->>'forum_id', '') <> $2",
            township,
            f"{township}-F002",
        )
        for service in ("topics", "meetings", "rectification")
    }


def dead_letters() -> float:
    return sum(s.value for m in DLQ.collect() for s in m.samples if s.name.endswith("_total"))


async def assert_redelivery_changes_nothing(
    bootstrap: str, pool: asyncpg.Pool, township: str
) -> None:
    """Meetings' ``ResolutionAdopted`` and rectification's ``TaskCompleted`` of the cycle again,
    as the same messages (a redelivery) and as copies under new event ids: nothing changes."""
    before, dead_before = await stored(pool, township), dead_letters()
    again = [
        r
        for service in ("meetings", "rectification")
        for r in await records(bootstrap, pool, service, township)
        if dict(r.headers)["ce_type"].decode()
        in {"cunzhi.meetings.ResolutionAdopted", "cunzhi.rectification.TaskCompleted"}
    ]
    assert len(again) == 4
    broker = make_broker(bootstrap, client_id="cycle-redelivery")
    await broker.connect()
    try:
        for record in again:
            headers = {k: v.decode() for k, v in record.headers}
            for ce_id in (headers["ce_id"], str(uuid.uuid4())):
                await broker.publish(
                    record.value, record.topic, key=record.key, headers={**headers, "ce_id": ce_id}
                )
    finally:
        await broker.stop()
    assert await eventually(lambda: caught_up(bootstrap), timeout=30)
    assert await stored(pool, township) == before
    assert dead_letters() == dead_before


def assert_merged_topic(result: CycleResult) -> None:
    topic = result.selected_topic
    survivor, duplicate = (result.topic_ids[s.title] for s in MOBILE_MEMBERS)
    assert topic["topic_id"] == survivor and topic["state"] == "resolved"
    assert topic["merged_topic_ids"] == [duplicate]
    villages = {village_id(result.township_id, v) for v in (HOU, NAN)}
    assert {s["village_id"] for s in topic["sources"]} == villages
    assert {s["topic_id"] for s in topic["sources"]} == {survivor, duplicate}
    assert set(topic["village_ids"]) == villages


def assert_forum_record(result: CycleResult) -> None:
    forum = result.forum
    assert forum["status"] == "closed"
    assert forum["topic"]["topic_id"] == result.selected_topic["topic_id"]
    statuses = {a["person_id"]: (a["status"], a["reason"]) for a in forum["attendance"]}
    assert len(statuses) == 14  # the roster of 13 and the invited first secretary
    assert {p: s for p, s in statuses.items() if s[0] != "present"} == {
        **{person: ("absent", reason) for person, reason in ABSENT.items()},
        **{person: ("late", None) for person in LATE},
    }
    assert [a["kind"] for a in forum["activities"]] == [
        "expert_lecture",
        "experience_exchange",
        "discussion",
    ]
    assert forum["task_progress"] == {"total": 3, "completed": 3, "open": 0}
    assert forum["resolutions"][0]["policies"] == [POLICY]


async def test_the_demo_runs_the_cycle_and_says_where_to_look(
    settings: Settings, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The session's settings name its infrastructure, so the demo uses it ("external").
    await run_demo(settings)

    out = capsys.readouterr().out
    # Guandi's ledger as the seed tells it, read back, then with this month's forum.
    assert (
        "18 forums since April 2020, 18 problems solved, 5 experts, 8 excellent secretaries "
        "sharing experience, 3 field visits — read back from the township record"
    ) in out
    assert (
        "19 forums held, 19 problems solved, 6 experts invited, 10 excellent secretaries "
        "sharing experience, 3 field visits"
    ) in out
    assert "rectification: 3/3 of the forum's tasks completed through its API" in out
    # the campaign round on Bincheng's figures, as its read models give them (seed 003)
    assert "602 villages registered, 602 ranked, 90 candidates, 45 confirmed" in out
    assert "25 district-level and 20 town-level villages; 79 problems" in out
    assert "36 district leaders as patrons (4 of them of two villages), 64 cadres" in out
    assert "364 targets (each a tracked task), 0 overdue, 22 late reports" in out
    assert "lights: 23 green, 22 yellow, 0 red" in out
    assert out.count("/docs") == 4 and out.count("/metrics") == 4
    # notifications: the roster told of the forum in the app, two of them read it
    assert "ledger, forum" in out and "15 recipients" in out and "read in the app by 2" in out
    # one group message per notice, never one per person (15 on the roster): the call and the
    # notice, digested when close together; the cadence may open the next forum's call too
    robot = re.search(r"(\d+) messages in the township's DingTalk group \(one per notice", out)
    assert robot and 1 <= int(robot.group(1)) <= 4, robot
    assert bootstrap in out and "cunzhi.meetings.events" in out
    # The services are stopped by now: no "try:" pointing at them (only with --keep-running).
    assert "curl" not in out and "try:" not in out
    assert out.rstrip().endswith("everything stopped.")
