"""The meetings service on the real embedded stack: HTTP, store, relay, broker, consumers.

One service runs for the module (its name, so its schema and topic, is fixed): every test works
in fresh townships. The service's clock is a ``ManualClock`` each test sets for itself; other
services' events (topics' ``TopicSelected``, rectification's ``TaskCompleted``) are published
on their real topics with CloudEvents headers, as those services' relays would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio
from cunzhi_meetings.domain import default_forum_date, forum_stream_id, notice_due_at
from cunzhi_meetings.service import build_service
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import StreamWrite
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.metrics import DLQ
from cunzhi_platform.testing import consume, eventually, every_page, running, token
from cunzhi_rectification.events import TaskCompleted
from cunzhi_topics.events import IssueRaised, TopicSelected

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI)
FORUM_DAY = default_forum_date(2026, 9)  # Wednesday 30 September 2026
MEETINGS_TOPIC = topic_for("meetings")
ROSTER = [
    {"person_id": "p-lead", "name": "王书记", "role": "leadership"},
    {"person_id": "p-mid", "name": "赵主任", "role": "middle_cadre"},
    {"person_id": "s-1", "name": "李书记", "role": "village_secretary", "village_id": "v1"},
    {"person_id": "s-2", "name": "张书记", "role": "village_secretary", "village_id": "v2"},
]


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(START)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(settings, clock):
    async with running(build_service(), settings, clock) as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def broker(settings):
    b = make_broker(settings.kafka_bootstrap_servers, client_id="meetings-tests")
    await b.connect()
    yield b
    await b.stop()


@pytest.fixture
def township(clock) -> str:
    clock.set(START)
    return f"t{uuid.uuid4().hex[:10]}"


def office(settings, township: str) -> dict[str, str]:
    return token(
        settings, sub=f"office-{township}", roles=["party_building_office"], township_ids=[township]
    )


def committee(settings, township: str) -> dict[str, str]:
    return token(
        settings, sub=f"committee-{township}", roles=["township_committee"], township_ids=[township]
    )


def county(settings) -> dict[str, str]:
    return token(settings, sub="county", roles=["county_organisation_department"])


def store(client):
    return client.app.state.runtime.store


async def stream_types(client, forum_id: str) -> list[str]:
    township, number = forum_id.rsplit("-F", 1)
    stored = await store(client).load(forum_stream_id(township, int(number)))
    return [s.envelope.type.rsplit(".", 1)[1] for s in stored]


async def published(settings, pool, key: str) -> list[tuple[str, dict[str, Any]]]:
    """Everything the relay published for ``key``: every stored event reaches the topic."""
    total = await pool.fetchval("SELECT count(*) FROM meetings.events")
    records = await consume(settings.kafka_bootstrap_servers, MEETINGS_TOPIC, total, timeout=30)
    seen: dict[str, tuple[str, dict[str, Any]]] = {}  # at-least-once: dedupe on ce_id
    for r in records:
        if r.key == key.encode():
            headers = {k: v.decode() for k, v in r.headers}
            seen[headers["ce_id"]] = (headers["ce_type"], json.loads(r.value))
    return list(seen.values())


async def publish(broker, event: Event, *, source: str, key: str, event_id: str | None = None):
    """Publish as another service's relay would; returns the envelope to redeliver it."""
    env = Envelope.new(
        type=event.event_type,
        source=source,
        subject=key,
        time=dt.datetime.now(SHANGHAI),
        id=event_id,
    )
    await broker.publish(
        json.dumps(event.to_payload()).encode(),
        topic_for(source.rsplit("/", 1)[1]),
        key=key.encode(),
        headers={k: v.decode() for k, v in env.to_headers()},
    )
    return env


async def select_topic(broker, township: str, forum_id: str, topic_id: str, **kw) -> Envelope:
    event = TopicSelected(
        topic_id=topic_id,
        township_id=township,
        forum_id=forum_id,
        village_ids=["v1"],
        submitter_ids=["s-1"],
        title=kw.get("title", f"议题 {topic_id}"),
        description="村集体经济薄弱",
        category="economy",
        selected_by="committee",
        selected_at=dt.datetime.now(SHANGHAI),
    )
    return await publish(
        broker, event, source="/cunzhi/topics", key=township, event_id=kw.get("event_id")
    )


async def complete(broker, township: str, forum_id: str, task_id: str, event_id=None):
    event = TaskCompleted(
        task_id=task_id, forum_id=forum_id, township_id=township, completed_on=FORUM_DAY
    )
    return await publish(
        broker, event, source="/cunzhi/rectification", key=township, event_id=event_id
    )


async def forum_view(client, settings, forum_id: str, check) -> dict[str, Any]:
    """The forum's read model once ``check`` holds (the last one seen if it never does)."""
    township = forum_id.rsplit("-F", 1)[0]
    seen: dict[str, Any] = {}

    async def probe() -> bool:
        r = await client.get(f"/forums/{forum_id}", headers=office(settings, township))
        seen.clear()
        seen.update(r.json() if r.status_code == 200 else {})
        return r.status_code == 200 and check(seen)

    await eventually(probe, timeout=30)
    return seen


async def setup_forum(client, settings, township: str, **plan: Any) -> str:
    r = await client.post(
        f"/townships/{township}/roster", json=ROSTER, headers=office(settings, township)
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/townships/{township}/forums",
        json={"place": "乡政府三楼会议室", **plan},
        headers=office(settings, township),
    )
    assert r.status_code == 201, r.text
    return r.json()["forum_id"]


async def with_topic(client, settings, broker, township: str, **plan: Any) -> str:
    forum_id = await setup_forum(client, settings, township, **plan)
    await select_topic(broker, township, forum_id, f"{forum_id}-T1")
    await forum_view(client, settings, forum_id, lambda f: f["topic"] is not None)
    return forum_id


# --- roster ----------------------------------------------------------------------------------


async def test_roster_by_json_and_csv_and_a_bad_file_stores_nothing(client, settings, township):
    headers = office(settings, township)
    r = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    assert r.json() == {
        "township_id": township,
        "added": ["p-lead", "p-mid", "s-1", "s-2"],
        "updated": [],
        "unchanged": 0,
    }
    again = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    assert again.json()["unchanged"] == 4 and again.json()["added"] == []

    csv_text = "person_id,name,role,village_id,phone\ns-3,陈书记,支部书记,v3,138 0000 0000\n"
    r = await client.post(
        f"/townships/{township}/roster.csv",
        content=csv_text.encode("gb18030"),  # as Excel saves it in a Chinese locale
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["s-3"]
    upload = "person_id,name,role,village_id\np-mid,赵主任,leadership,\n"
    r = await client.post(
        f"/townships/{township}/roster.csv",
        files={"file": ("roster.csv", upload.encode(), "text/csv")},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["updated"] == ["p-mid"]

    version = await store(client).version(f"roster:{township}")
    bad = "person_id,name,role,village_id\ns-4,刘书记,支部书记,v4\ns-5,孙书记,village_secretary,\n"
    r = await client.post(
        f"/townships/{township}/roster.csv",
        content=bad.encode(),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert r.status_code == 422
    assert "line 3, column village_id" in r.json()["detail"]
    assert r.json()["field"] == "file"
    assert await store(client).version(f"roster:{township}") == version  # not even s-4

    r = await client.delete(
        f"/townships/{township}/roster/s-2", params={"reason": "调任"}, headers=headers
    )
    assert r.status_code == 200

    async def roster() -> list[Any]:
        r = await client.get(f"/townships/{township}/roster", headers=headers)
        members = {m["person_id"]: m["role"] for m in r.json()["items"]}
        return members == {
            "p-lead": "leadership",
            "p-mid": "leadership",
            "s-1": "village_secretary",
            "s-3": "village_secretary",
        }

    assert await eventually(roster)
    other = office(settings, f"{township}-other")
    r = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=other)
    assert r.status_code == 403


# --- plan and publish ------------------------------------------------------------------------


async def test_plan_numbers_forums_and_defaults_to_the_last_working_day(
    client, settings, pool, township
):
    first = await setup_forum(client, settings, township)
    r = await client.post(
        f"/townships/{township}/forums",
        json={
            "place": "代村",
            "mode": "field_visit",
            "host_unit": "兰陵县代村",
            "date": "2026-10-20",
        },
        headers=committee(settings, township),
    )
    assert r.status_code == 201, r.text
    assert (first, r.json()["forum_id"]) == (f"{township}-F001", f"{township}-F002")
    await forum_view(client, settings, f"{township}-F002", lambda f: True)
    view = await forum_view(client, settings, first, lambda f: True)
    assert view["date"] == FORUM_DAY.isoformat() == "2026-09-30"
    assert view["status"] == "planned" and view["number"] == 1

    events = await eventually(lambda: published(settings, pool, forum_stream_id(township, 1)))
    assert [t for t, _ in events] == ["cunzhi.meetings.ForumPlanned"]
    assert events[0][1]["forum_id"] == first and events[0][1]["date"] == "2026-09-30"

    # A field visit without its host unit: 422 naming the field, nothing stored.
    r = await client.post(
        f"/townships/{township}/forums",
        json={"place": "外地", "mode": "field_visit"},
        headers=office(settings, township),
    )
    assert (r.status_code, r.json()["field"]) == (422, "host_unit")
    r = await client.post(
        f"/townships/{township}/forums", json={"place": ""}, headers=office(settings, township)
    )
    assert r.status_code == 422 and r.json()["field"] == "place"
    assert await store(client).version(forum_stream_id(township, 3)) == 0

    r = await client.get(f"/townships/{township}/forums?limit=1", headers=county(settings))
    page = r.json()
    assert page["total"] == 2 and [f["number"] for f in page["items"]] == [1]
    r = await client.get(
        f"/townships/{township}/forums?status=planned&year=2027", headers=county(settings)
    )
    assert r.json()["total"] == 0


async def test_racing_planners_get_distinct_numbers(client, settings, township):
    await setup_forum(client, settings, township)
    headers = office(settings, township)
    answers = await asyncio.gather(
        *(
            client.post(f"/townships/{township}/forums", json={"place": "会议室"}, headers=headers)
            for _ in range(4)
        )
    )
    assert sorted(r.json()["number"] for r in answers) == [2, 3, 4, 5]


# --- topic from the topics service -----------------------------------------------------------


async def test_topic_selected_over_the_broker_sets_the_topic_once(
    client, settings, broker, township
):
    forum_id = await setup_forum(client, settings, township)
    headers = office(settings, township)
    r = await client.post(f"/forums/{forum_id}/notice", headers=headers)
    assert r.status_code == 409 and "no topic yet" in r.json()["detail"]
    assert await stream_types(client, forum_id) == ["ForumPlanned"]

    env = await select_topic(broker, township, forum_id, "topic-1", title="壮大村集体经济")
    view = await forum_view(client, settings, forum_id, lambda f: f["topic"] is not None)
    assert view["topic"] == {
        "topic_id": "topic-1",
        "title": "壮大村集体经济",
        "category": "economy",
    }

    dead = DLQ.labels("topic_selected", "handler_error")._value.get()
    await select_topic(broker, township, forum_id, "topic-1", event_id=env.id)  # redelivered
    await select_topic(broker, township, forum_id, "topic-1")  # selected twice
    await select_topic(broker, township, forum_id, "topic-other")  # refused: one forum, one topic
    # a marker behind them on the same key (so the same partition)
    second = await setup_forum(client, settings, township)
    await select_topic(broker, township, second, "topic-2")
    await forum_view(client, settings, second, lambda f: f["topic"] is not None)

    assert await stream_types(client, forum_id) == ["ForumPlanned", "ForumTopicSet"]
    assert DLQ.labels("topic_selected", "handler_error")._value.get() == dead


# --- the automatic notice --------------------------------------------------------------------


async def test_the_notice_goes_out_by_itself_and_again_after_a_postponement(
    client, settings, broker, clock, township
):
    forum_id = await with_topic(client, settings, broker, township)
    due = notice_due_at(FORUM_DAY)
    clock.set(due - dt.timedelta(minutes=1))
    await asyncio.sleep(1)  # five scheduler ticks
    assert await stream_types(client, forum_id) == ["ForumPlanned", "ForumTopicSet"]

    clock.set(due)
    view = await forum_view(client, settings, forum_id, lambda f: f["status"] == "noticed")
    assert view["notice"]["automatic"] is True
    assert {a["person_id"] for a in view["notice"]["attendees"]} == {r["person_id"] for r in ROSTER}

    new_day = default_forum_date(2026, 10)
    r = await client.post(
        f"/forums/{forum_id}/postpone",
        json={"date": new_day.isoformat(), "reason": "防汛"},
        headers=office(settings, township),
    )
    assert r.status_code == 200 and r.json()["status"] == "postponed"
    clock.set(notice_due_at(new_day))
    view = await forum_view(
        client, settings, forum_id, lambda f: f["status"] == "noticed" and f["date"] == "2026-10-30"
    )
    assert view["postponements"] == [
        {"previous_date": "2026-09-30", "date": "2026-10-30", "reason": "防汛"}
    ]
    assert (await stream_types(client, forum_id)).count("ForumNoticeIssued") == 2


async def test_a_cancelled_forum_cannot_be_held(client, settings, broker, township):
    forum_id = await with_topic(client, settings, broker, township)
    headers = office(settings, township)
    r = await client.post(
        f"/forums/{forum_id}/cancel", json={"reason": "上级检查"}, headers=headers
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    before = await stream_types(client, forum_id)
    r = await client.post(
        f"/forums/{forum_id}/held",
        json={"attendance": [{"person_id": "p-lead", "status": "present"}], "minutes": "纪要"},
        headers=headers,
    )
    assert r.status_code == 409 and "cancelled (上级检查)" in r.json()["detail"]
    r = await client.post(f"/forums/{forum_id}/notice", headers=headers)
    assert r.status_code == 409
    assert await stream_types(client, forum_id) == before
    r = await client.post("/forums/not-a-forum/notice", headers=headers)
    assert r.status_code == 404


# --- held, resolutions, tasks, close ---------------------------------------------------------


async def test_attendees_prepare_remarks_and_the_office_sees_who_has_not(
    client, settings, broker, township
):
    forum_id = await with_topic(
        client,
        settings,
        broker,
        township,
        guest_speakers=[{"name": "东大阳村支书", "affiliation": "新乡县东大阳村党支部"}],
    )
    li = token(settings, sub="s-1", roles=["village_secretary"], township_ids=[township])
    remark = {"summary": "介绍本村流动党员联系台账的做法"}
    r = await client.post(f"/forums/{forum_id}/remarks", json=remark, headers=li)
    assert r.status_code == 409 and "between the notice and the forum" in r.json()["detail"]
    r = await client.post(f"/forums/{forum_id}/notice", headers=office(settings, township))
    assert r.status_code == 200, r.text

    r = await client.post(f"/forums/{forum_id}/remarks", json=remark, headers=li)
    assert r.status_code == 200, r.text
    stranger = token(settings, sub="s-9", roles=["village_secretary"], township_ids=[township])
    r = await client.post(f"/forums/{forum_id}/remarks", json=remark, headers=stranger)
    assert r.status_code == 403 and "only the people the notice named" in r.json()["detail"]
    r = await client.post(f"/forums/{forum_id}/remarks", json={"summary": " "}, headers=li)
    assert r.status_code == 422

    seen = await forum_view(client, settings, forum_id, lambda f: bool(f["remarks"]))
    assert seen["remarks"]["s-1"]["summary"] == remark["summary"]
    r = await client.get(f"/forums/{forum_id}/remarks", headers=office(settings, township))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["prepared"], body["not_prepared"]) == (1, len(body["attendees"]) - 1)
    assert [a["person_id"] for a in body["attendees"] if a["prepared"]] == ["s-1"]


async def test_a_forum_from_notice_to_close(client, settings, broker, pool, clock, township):
    forum_id = await with_topic(
        client,
        settings,
        broker,
        township,
        expert_lectures=[
            {"expert_name": "陈教授", "affiliation": "市委党校", "subject": "集体经济"}
        ],
        exchange_speaker_ids=["s-1"],
    )
    headers = office(settings, township)
    r = await client.post(
        f"/forums/{forum_id}/invitees",
        json={"name": "孙队长", "role": "驻村工作队", "village_id": "v2"},
        headers=headers,
    )
    assert r.status_code == 201 and r.json()["invitee"]["person_id"] == f"{forum_id}-G01"
    r = await client.post(f"/forums/{forum_id}/notice", headers=headers)
    assert r.status_code == 200 and len(r.json()["attendees"]) == 5

    clock.set(dt.datetime.combine(FORUM_DAY, dt.time(15), tzinfo=SHANGHAI))
    marks = [
        {"person_id": "p-lead", "status": "present"},
        {"person_id": "p-mid", "status": "absent", "reason": "病假"},
        {"person_id": "s-1", "status": "present"},
        {"person_id": "s-2", "status": "late"},
        {"person_id": f"{forum_id}-G01", "status": "present"},
    ]
    held = {"attendance": marks, "speakers": ["p-lead", "s-1"], "minutes": "议定发展合作社"}
    outsider = office(settings, f"{township}-x")
    r = await client.post(f"/forums/{forum_id}/held", json=held, headers=outsider)
    assert r.status_code == 403
    stranger = {**held, "attendance": [*marks, {"person_id": "nobody", "status": "present"}]}
    r = await client.post(f"/forums/{forum_id}/held", json=stranger, headers=headers)
    assert r.status_code == 422 and "nobody was not invited" in r.json()["detail"]
    assert r.json()["field"] == "attendance"
    assert (await stream_types(client, forum_id))[-1] == "ForumNoticeIssued"
    r = await client.post(f"/forums/{forum_id}/held", json=held, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "held"

    def task(task_id: str, due: dt.date) -> dict[str, Any]:
        return {
            "task_id": task_id,
            "assignee_village_id": "v1",
            "description": "成立合作社",
            "due_date": due.isoformat(),
        }

    later = FORUM_DAY + dt.timedelta(days=30)
    resolution = {
        "title": "发展集体经济",
        "policies": [{"title": "集体经济发展办法", "document_number": "乡发〔2026〕9号"}],
        "tasks": [task("K1", later), task("K2", later)],
    }
    r = await client.post(
        f"/forums/{forum_id}/resolutions", json={"resolutions": [resolution]}, headers=headers
    )
    assert r.status_code == 403  # the committee adopts
    early = {**resolution, "tasks": [task("K1", FORUM_DAY - dt.timedelta(days=1))]}
    r = await client.post(
        f"/forums/{forum_id}/resolutions",
        json={"resolutions": [early]},
        headers=committee(settings, township),
    )
    assert r.status_code == 422 and "before the forum date" in r.json()["detail"]
    assert (await stream_types(client, forum_id))[-1] == "ForumHeld"
    r = await client.post(
        f"/forums/{forum_id}/resolutions",
        json={"resolutions": [resolution]},
        headers=committee(settings, township),
    )
    assert r.status_code == 200, r.text

    stream = forum_stream_id(township, 1)
    events = await eventually(
        lambda: _has(published(settings, pool, stream), "cunzhi.meetings.ResolutionAdopted")
    )
    adopted = next(p for t, p in events if t == "cunzhi.meetings.ResolutionAdopted")
    # the forum's id goes in front: K1 of another township's forum is another task
    assert [t["task_id"] for t in adopted["tasks"]] == [f"{forum_id}-K1", f"{forum_id}-K2"]
    assert adopted["policies"][0]["document_number"] == "乡发〔2026〕9号"

    env = await complete(broker, township, forum_id, f"{forum_id}-K1")
    view = await forum_view(client, settings, forum_id, lambda f: f["task_progress"]["completed"])
    assert view["status"] == "held" and view["task_progress"] == {
        "total": 2,
        "completed": 1,
        "open": 1,
    }
    await complete(broker, township, forum_id, f"{forum_id}-K1", event_id=env.id)  # redelivered
    await complete(broker, township, forum_id, f"{forum_id}-K1")  # reported twice
    await complete(broker, township, forum_id, f"{forum_id}-K2")
    view = await forum_view(client, settings, forum_id, lambda f: f["status"] == "closed")
    assert view["closed_on"] == FORUM_DAY.isoformat()
    assert await stream_types(client, forum_id) == [
        "ForumPlanned",
        "ForumTopicSet",
        "ForumInviteeAdded",
        "ForumNoticeIssued",
        "ForumHeld",
        "ResolutionAdopted",
        "ForumTaskCompleted",
        "ForumTaskCompleted",
        "ForumClosed",
    ]
    closed = await eventually(
        lambda: _has(published(settings, pool, stream), "cunzhi.meetings.ForumClosed")
    )
    assert closed

    # The forum's full record.
    assert view["minutes"] == "议定发展合作社" and view["speakers"] == ["p-lead", "s-1"]
    assert {a["person_id"]: a["status"] for a in view["attendance"]}["s-2"] == "late"
    assert [a["kind"] for a in view["activities"]] == [
        "expert_lecture",
        "experience_exchange",
        "discussion",
    ]
    assert view["resolutions"][0]["title"] == "发展集体经济"

    # The township's record and attendance rates.
    async def record() -> dict[str, Any]:
        r = await client.get(f"/townships/{township}/record", headers=headers)
        body = r.json()
        return body if body["problems_solved"] == 1 else {}

    body = await eventually(record)
    assert (
        body["forums_held"],
        body["problems_solved"],
        body["experts_invited"],
        body["experience_exchanges"],
        body["field_visits"],
    ) == (1, 1, 1, 1, 0)
    r = await client.get(f"/townships/{township}/attendance?by=village", headers=headers)
    by_village = {i["key"]: (i["invited"], i["rate"]) for i in r.json()["items"]}
    assert by_village == {"v1": (1, 1.0), "v2": (2, 1.0)}
    r = await client.get(f"/townships/{township}/attendance?by=person", headers=headers)
    assert {i["key"]: i["rate"] for i in r.json()["items"]}["p-mid"] == 0.0

    # The county overview: the county department only (as in topics); an office reads its
    # township's record.
    overview = await every_page(client, "/county/overview", county(settings))
    row = next(t for t in overview if t["township_id"] == township)
    assert (row["forums_held"], row["problems_solved"], row["open_tasks"]) == (1, 1, 0)
    assert row["attendance_rate"] == 0.8
    r = await client.get("/county/overview", headers=outsider)
    assert r.status_code == 403 and "county_organisation_department" in r.json()["detail"]
    r = await client.get(f"/forums/{forum_id}", headers=outsider)
    assert r.status_code == 403

    # Monthly cadence: with no forum to come, the township's next one plans itself.
    async def planned() -> list[dict[str, Any]]:
        r = await client.get(f"/townships/{township}/forums?status=planned", headers=headers)
        return r.json()["items"]

    (following,) = await eventually(planned)
    assert (following["number"], following["place"]) == (2, "乡政府三楼会议室")


async def _has(events_coroutine, event_type: str) -> list[tuple[str, dict[str, Any]]]:
    events = await events_coroutine
    return events if any(t == event_type for t, _ in events) else []


# --- read models from a long history ---------------------------------------------------------


async def test_guandi_record_from_its_events(client, settings, township, guandi: ModuleType):
    """18 forums since April 2020: 18 held, 18 solved, 5 experts, 8 sharing, 3 field visits."""
    history = guandi.history(township)
    by_stream: dict[str, list[Event]] = {}
    for e in history:
        number = int(e.forum_id.rsplit("-F", 1)[1])
        by_stream.setdefault(forum_stream_id(township, number), []).append(e)
    await store(client).append_many([StreamWrite(s, 0, evs) for s, evs in by_stream.items()])
    headers = county(settings)

    async def record() -> dict[str, Any]:
        r = await client.get(f"/townships/{township}/record", headers=headers)
        return r.json() if r.json()["problems_solved"] == 18 else {}

    body = await eventually(record)
    assert (
        body["forums_held"],
        body["problems_solved"],
        body["experts_invited"],
        body["experience_exchanges"],
        body["field_visits"],
    ) == (18, 18, 5, 8, 3)
    assert {e["expert_name"] for e in body["experts"]} == set(guandi.EXPERTS)

    r = await client.get(f"/townships/{township}/attendance?by=person", headers=headers)
    by_person = {i["key"]: i for i in r.json()["items"]}
    assert (by_person["s-02"]["invited"], by_person["s-02"]["absent"]) == (18, 3)
    assert by_person["s-02"]["rate"] == round(15 / 18, 4)
    assert by_person["s-03"]["rate"] == 1.0

    async def still_planned() -> list[int]:
        r = await client.get(f"/townships/{township}/forums?status=planned", headers=headers)
        numbers = [f["number"] for f in r.json()["items"]]
        # Forums live on different partitions: wait until every one has caught up.
        return numbers if numbers == [19] else []

    assert await eventually(still_planned) == [19]


async def test_the_paper_ledger_entered_through_the_api_makes_the_record(
    client, settings, township
):
    """A township migrating its ledger (历史台账) enters past forums under their numbers."""
    headers = office(settings, township)
    history = f"/townships/{township}/forums/history"
    ledger = [
        {
            "number": 1,
            "date": "2020-04-29",
            "place": "乡政府三楼会议室",
            "topic_title": "特殊党员管理",
            "expert_lectures": [
                {"expert_name": "刘教授", "affiliation": "新乡市委党校", "subject": "党员管理"}
            ],
            "policies": [
                {"title": "《关堤乡特殊党员管理办法》", "document_number": "关党〔2020〕5号"}
            ],
            "problem_solved": True,
        },
        {
            "number": 2,
            "date": "2020-05-29",
            "place": "新乡县东大阳村",
            "mode": "field_visit",
            "host_unit": "新乡县东大阳村党支部",
            "topic_title": "村集体经济发展",
            "guest_speakers": [{"name": "东大阳村支书", "affiliation": "新乡县东大阳村党支部"}],
            "problem_solved": True,
        },
        {
            "number": 3,
            "date": "2020-06-30",
            "place": "乡政府三楼会议室",
            "topic_title": "出嫁女村民待遇",
            "guest_speakers": [{"name": "东大阳村支书", "affiliation": "新乡县东大阳村党支部"}],
            "problem_solved": False,
        },
    ]
    # Entered out of order: the guest's first forum is still the earlier one.
    for entry in (ledger[0], ledger[2], ledger[1]):
        r = await client.post(history, json=entry, headers=headers)
        assert r.status_code == 201, r.text
        assert r.json()["forum_id"] == f"{township}-F{entry['number']:03d}"

    # The ledger's numbers are its own; the dates are in the past; only the office enters.
    r = await client.post(history, json=ledger[0], headers=headers)
    assert r.status_code == 409 and "already used" in r.json()["detail"]
    r = await client.post(
        history, json={**ledger[0], "number": 4, "date": "2030-01-31"}, headers=headers
    )
    assert r.status_code == 422 and r.json()["field"] == "date"
    r = await client.post(
        history, json={**ledger[0], "number": 4}, headers=office(settings, "elsewhere")
    )
    assert r.status_code == 403

    async def record() -> dict[str, Any]:
        r = await client.get(f"/townships/{township}/record", headers=county(settings))
        return r.json() if r.json()["forums_held"] == 3 else {}

    body = await eventually(record)
    assert (
        body["forums_held"],
        body["problems_solved"],
        body["experts_invited"],
        body["experience_exchanges"],
        body["field_visits"],
    ) == (3, 2, 1, 1, 1)
    (guest,) = body["secretaries_sharing_experience"]
    assert guest["affiliation"] == "新乡县东大阳村党支部"
    assert guest["first_forum_id"] == f"{township}-F002"

    # The township's next forum follows the ledger's numbering.
    await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    r = await client.post(
        f"/townships/{township}/forums", json={"place": "乡政府"}, headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["number"] == 4
    # The rest of the year at once: a forum a month at month end, September's already planned.
    await eventually(lambda: _planned_months(client, settings, township, {9}))
    year = f"/townships/{township}/forums/year"
    r = await client.post(year, json={"year": 2026, "place": "乡政府"}, headers=headers)
    assert r.status_code == 201, r.text
    assert [(f["number"], f["date"]) for f in r.json()["planned"]] == [
        (5, "2026-10-30"),
        (6, "2026-11-30"),
        (7, "2026-12-31"),
    ]
    r = await client.post(year, json={"year": 2025, "place": "乡政府"}, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "year"

    # Months without a forum held show on the county overview (the last twelve here).
    overview = await every_page(client, "/county/overview", county(settings))
    row = next(t for t in overview if t["township_id"] == township)
    assert row["months_without_forum"][0] == "2025-09"
    assert len(row["months_without_forum"]) == 12


async def _planned_months(client, settings, township: str, months: set[int]) -> bool:
    headers = office(settings, township)
    r = await client.get(f"/townships/{township}/forums?status=planned", headers=headers)
    return {int(f["date"][5:7]) for f in r.json()["items"]} == months


# --- other meetings --------------------------------------------------------------------------


async def test_speak_up_sessions_and_contests(client, settings, clock, broker, township):
    secretary = token(
        settings,
        sub="s-1",
        roles=["village_secretary"],
        township_ids=[township],
        village_ids=["v1"],
    )
    issues = {f"{township}-i1": "道路硬化", f"{township}-i2": "自来水"}
    for issue_id, title in issues.items():
        raised = IssueRaised(
            issue_id=issue_id,
            township_id=township,
            village_id="v1",
            title=title,
            description="村民反映",
            raised_by="s-1",
            raised_on=dt.date(2026, 8, 27),
            speak_up_day=dt.date(2026, 8, 27),
            on_speak_up_day=True,
        )
        await publish(broker, raised, source="/cunzhi/topics", key=f"issue:{issue_id}")
    session = {
        "township_id": township,
        "date": "2026-08-27",  # lunar 15th
        "attendance_count": 46,
        "issue_ids": list(issues),
        "hosted_by": "李书记",
    }
    unknown = {**session, "issue_ids": [f"{township}-i9"]}
    r = await client.post("/villages/v1/speak-up-sessions", json=unknown, headers=secretary)
    assert r.status_code == 422 and r.json()["field"] == "issue_ids"

    async def recorded() -> dict[str, Any]:
        r = await client.post("/villages/v1/speak-up-sessions", json=session, headers=secretary)
        return r.json() if r.status_code == 201 else {}  # 422 until topics' issues arrive

    held = await eventually(recorded)
    assert held["lunar_day"] == 15
    assert (held["issue_ids"], held["issues_raised"]) == (list(issues), list(issues.values()))
    r = await client.post("/villages/v2/speak-up-sessions", json=session, headers=secretary)
    assert r.status_code == 403
    r = await client.post(
        "/villages/v1/speak-up-sessions", json={**session, "date": "2026-08-28"}, headers=secretary
    )
    assert r.status_code == 422 and r.json()["field"] == "date"

    contest = {
        "date": "2026-08-31",
        "participants": [
            {"village_id": "v1", "head_name": "李村长"},
            {"village_id": "v2", "head_name": "张村长"},
        ],
        "ranking": ["v2", "v1"],
    }
    r = await client.post(
        f"/townships/{township}/contests", json=contest, headers=office(settings, township)
    )
    assert r.status_code == 201 and r.json()["quarter"] == 3
    r = await client.post(
        f"/townships/{township}/contests", json=contest, headers=office(settings, township)
    )
    assert r.status_code == 409

    async def overview() -> dict[str, Any]:
        overview = await every_page(client, "/county/overview", county(settings))
        rows = [t for t in overview if t["township_id"] == township]
        return rows[0] if rows and rows[0]["contests"] == 1 else {}

    row = await eventually(overview)
    assert (row["speak_up_sessions"], row["issues_raised"], row["contests"]) == (1, 2, 1)
