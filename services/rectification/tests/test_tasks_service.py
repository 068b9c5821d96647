"""Tracked tasks on the real stack: HTTP → event store → Kafka → the tasks read model.

The rectification service runs for real (embedded PostgreSQL and Kafka protocol) on a manual
clock. Meetings' ``ResolutionAdopted`` is published as meetings' relay would, as plain JSON with
CloudEvents headers (rectification knows meetings only by its published schema). Tests isolate
themselves with fresh township, village and forum ids.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.clock import SHANGHAI, ManualClock, today
from cunzhi_platform.envelope import CommandContext, Envelope
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.runtime import Runtime
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume, eventually, running, token
from cunzhi_rectification.application.tasks import assign_tasks
from cunzhi_rectification.domain.tasks import TaskDraft, deadline, task_stream_id
from cunzhi_rectification.events import Assignee
from cunzhi_rectification.service import build_service
from cunzhi_rectification.settings import TaskSettings

pytestmark = pytest.mark.slow

MEETINGS = "cunzhi.meetings.events"
RECTIFICATION = "cunzhi.rectification.events"
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # a Monday


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Kit:
    client: httpx.AsyncClient
    settings: Settings
    clock: ManualClock
    pool: asyncpg.Pool

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return rt

    def secretary(self, town: str, village: str, sub: str | None = None) -> dict[str, str]:
        return token(
            self.settings,
            sub=sub or fresh("sec"),
            roles=["village_secretary"],
            township_ids=[town],
            village_ids=[village],
        )

    def office(self, town: str) -> dict[str, str]:
        return token(
            self.settings, sub=fresh("office"), roles=["party_building_office"], township_ids=[town]
        )

    def person(self, sub: str) -> dict[str, str]:
        return token(self.settings, sub=sub, roles=["party_member"])

    def county(self) -> dict[str, str]:
        return token(self.settings, sub="county-org", roles=["county_organisation_department"])

    async def assign(self, town: str, village: str, *, days: int = 20, n: int = 1) -> list[str]:
        """Tasks of a fresh forum for ``village``, due ``days`` after today."""
        forum, start = fresh("forum"), today(self.clock)
        drafts = [
            TaskDraft(
                task_id=f"{forum}-T{i}",
                source="forum_resolution",
                township_id=town,
                assignee=Assignee(kind="village", id=village),
                title="建立流动党员台账",
                starts_on=start,
                due_on=start + dt.timedelta(days=days),
                forum_id=forum,
                resolution_id=f"{forum}-R1",
                topic_id=fresh("topic"),
            )
            for i in range(1, n + 1)
        ]
        ids = await assign_tasks(self.rt.store, drafts, CommandContext(actor="tester"))
        for task_id in ids:
            await self.until(f"/tasks/{task_id}", bool)
        return ids

    async def until(
        self, path: str, check: Callable[[Any], bool], headers: dict[str, str] | None = None
    ) -> Any:
        last: dict[str, Any] = {}

        async def attempt() -> bool:
            r = await self.client.get(path, headers=headers or self.county())
            last["body"] = r.json() if r.status_code == 200 else None
            return r.status_code == 200 and check(last["body"])

        assert await eventually(attempt, timeout=20), f"{path}: {last.get('body')}"
        return last["body"]

    async def version(self, task_id: str) -> int:
        return await self.rt.store.version(task_stream_id(task_id))

    async def stored(self) -> int:
        count: int = await self.pool.fetchval("SELECT count(*) FROM rectification.events")
        return count

    async def publish(
        self, topic: str, type_: str, payload: dict[str, Any], key: str, event_id: str | None = None
    ) -> str:
        envelope = Envelope.new(
            type=type_,
            source=f"/cunzhi/{topic.split('.')[1]}",
            subject=key,
            time=self.clock.now(),
            id=event_id,
        )
        broker = make_broker(self.settings.kafka_bootstrap_servers, client_id="rect-tests")
        await broker.connect()
        try:
            await broker.publish(
                json.dumps(payload, ensure_ascii=False).encode(),
                topic,
                key=key.encode(),
                headers={k: v.decode() for k, v in envelope.to_headers()},
            )
        finally:
            await broker.stop()
        return envelope.id

    async def published(self, event_type: str, **match: Any) -> list[dict[str, Any]]:
        async def relayed() -> bool:
            return not await self.pool.fetchval(
                "SELECT count(*) FROM rectification.outbox WHERE sent_at IS NULL"
            )

        assert await eventually(relayed)
        total = await self.pool.fetchval("SELECT count(*) FROM rectification.outbox")
        seen, found = set(), []
        for record in await consume(self.settings.kafka_bootstrap_servers, RECTIFICATION, total):
            headers = {k: v.decode() for k, v in record.headers}
            payload = json.loads(record.value)
            if (
                headers["ce_type"] == event_type
                and headers["ce_id"] not in seen
                and all(payload.get(k) == v for k, v in match.items())
            ):
                seen.add(headers["ce_id"])
                found.append(payload)
        return found


@pytest_asyncio.fixture(scope="module")
async def kit(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Kit]:
    clock = ManualClock(START)
    service = build_service(TaskSettings(escalate_to_township_after=2, escalate_to_county_after=4))
    async with running(service, settings, clock) as client:
        yield Kit(client, settings, clock, pool)


def resolution(forum: str, town: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """A meetings ResolutionAdopted payload as meetings publishes it (docs/events/meetings)."""
    return {
        "resolution_id": f"{forum}-R1",
        "forum_id": forum,
        "township_id": town,
        "topic_id": f"topic-of-{forum}",
        "title": "关于加强流动党员管理的决议",
        "policies": [{"title": "关堤乡特殊党员管理办法", "document_number": "关党发〔2026〕21号"}],
        "tasks": tasks,
    }


# --- the resolution policy -----------------------------------------------------------------


async def test_a_resolution_creates_its_tasks_once_however_often_it_arrives(kit: Kit) -> None:
    town, village, forum = fresh("town"), fresh("v"), fresh("forum")
    due = (today(kit.clock) + dt.timedelta(days=30)).isoformat()
    tasks = [
        {
            "task_id": f"{forum}-T1",
            "assignee_village_id": village,
            "description": "建台账",
            "due_date": due,
        },
        {
            "task_id": f"{forum}-T2",
            "assignee_person_id": "feng-bo",
            "description": "线上组织生活",
            "due_date": due,
        },
    ]
    key = f"forum:{forum}"
    event_id = await kit.publish(
        MEETINGS, "cunzhi.meetings.ResolutionAdopted", resolution(forum, town, tasks), key
    )
    listed = await kit.until(
        f"/tasks?forum_id={forum}", lambda b: b["total"] == 2, kit.office(town)
    )
    by_id = {t["task_id"]: t for t in listed["items"]}
    assert by_id[f"{forum}-T1"]["assignee"] == {"kind": "village", "id": village, "name": ""}
    assert by_id[f"{forum}-T1"]["village_id"] == village
    assert by_id[f"{forum}-T2"]["assignee"]["kind"] == "person"
    assert {t["source"] for t in listed["items"]} == {"forum_resolution"}
    assert {t["due_on"] for t in listed["items"]} == {due}

    # The same message again, and the same news under another event id.
    await kit.publish(
        MEETINGS,
        "cunzhi.meetings.ResolutionAdopted",
        resolution(forum, town, tasks),
        key,
        event_id=event_id,
    )
    await kit.publish(
        MEETINGS, "cunzhi.meetings.ResolutionAdopted", resolution(forum, town, tasks), key
    )
    # A marker behind them on the same key (same partition): once it is tracked, they were seen.
    marker = fresh("forum")
    marker_task = [
        {
            "task_id": f"{marker}-T1",
            "assignee_village_id": village,
            "description": "标记",
            "due_date": due,
        }
    ]
    await kit.publish(
        MEETINGS, "cunzhi.meetings.ResolutionAdopted", resolution(marker, town, marker_task), key
    )
    await kit.until(f"/tasks/{marker}-T1", bool)
    assert [await kit.version(f"{forum}-T{i}") for i in (1, 2)] == [1, 1]
    counts = await kit.until(f"/forums/task-counts?township_id={town}", bool, kit.office(town))
    assert {c["forum_id"]: c["total"] for c in counts["items"]} == {forum: 2, marker: 1}


async def test_a_resolution_of_policies_alone_tracks_nothing(kit: Kit) -> None:
    town, forum = fresh("town"), fresh("forum")
    key = f"forum:{forum}"
    await kit.publish(
        MEETINGS, "cunzhi.meetings.ResolutionAdopted", resolution(forum, town, []), key
    )
    marker = fresh("forum")
    due = (today(kit.clock) + dt.timedelta(days=5)).isoformat()
    await kit.publish(
        MEETINGS,
        "cunzhi.meetings.ResolutionAdopted",
        resolution(
            marker,
            town,
            [
                {
                    "task_id": f"{marker}-T1",
                    "assignee_person_id": "p",
                    "description": "x",
                    "due_date": due,
                }
            ],
        ),
        key,
    )
    await kit.until(f"/tasks/{marker}-T1", bool)
    listed = (await kit.client.get(f"/tasks?forum_id={forum}", headers=kit.county())).json()
    assert listed["total"] == 0


# --- reports over HTTP ---------------------------------------------------------------------


async def test_a_secretary_reports_and_completes_their_village_task(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    wang = kit.secretary(town, village, sub="wang-jianguo")

    r = await kit.client.post(
        f"/tasks/{task_id}/progress",
        json={
            "percent": 40,
            "note": "已摸排23名外出党员",
            "evidence": [{"kind": "file", "value": "evidence://e/1.jpg", "title": "台账照片"}],
        },
        headers=wang,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["percent"], r.json()["status"]) == (40, "open")
    await kit.until(f"/tasks/{task_id}", lambda t: t["percent"] == 40 and t["reports"] == 1, wang)

    r = await kit.client.post(
        f"/tasks/{task_id}/completion", json={"summary": "台账已建立，联系人已明确"}, headers=wang
    )
    assert r.status_code == 200, r.text
    card = await kit.until(f"/tasks/{task_id}", lambda t: t["status"] == "completed", wang)
    assert card["completed_by"] == "wang-jianguo" and card["completed_on"] == str(today(kit.clock))

    (done,) = await kit.published("cunzhi.rectification.TaskCompleted", task_id=task_id)
    assert done["forum_id"] == card["forum_id"] and done["township_id"] == town
    assert done["summary"] == "台账已建立，联系人已明确"

    history = (await kit.client.get(f"/tasks/{task_id}/history", headers=wang)).json()
    assert [h["type"] for h in history["items"]] == [
        "TaskAssigned",
        "TaskProgressReported",
        "TaskCompleted",
    ]
    assert history["items"][1]["evidence"][0]["title"] == "台账照片"
    assert history["items"][2]["actor"] == "wang-jianguo"


async def test_a_progress_report_retried_with_its_idempotency_key_is_stored_once(
    kit: Kit,
) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    wang = kit.secretary(town, village)
    url, body = f"/tasks/{task_id}/progress", {"percent": 40, "note": "已摸排23名外出党员"}
    keyed = {**wang, "Idempotency-Key": fresh("report")}

    first = await kit.client.post(url, json=body, headers=keyed)
    assert first.status_code == 200, first.text
    # The answer was lost; the app sends the report again with the same key.
    again = await kit.client.post(url, json=body, headers=keyed)
    assert (again.status_code, again.content) == (200, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert await kit.version(task_id) == 2  # assigned, reported once

    r = await kit.client.post(url, json={**body, "percent": 60}, headers=keyed)
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key", r.text
    assert await kit.version(task_id) == 2

    # Without the key a retry is a second report, as before.
    for _ in range(2):
        assert (await kit.client.post(url, json=body, headers=wang)).status_code == 200
    assert await kit.version(task_id) == 4
    await kit.until(f"/tasks/{task_id}", lambda t: t["reports"] == 3, wang)


@pytest.mark.parametrize(
    ("body", "status", "field", "reason"),
    [
        ({"percent": 101}, 422, "percent", "less than or equal to 100"),
        ({"percent": 30}, 422, "percent", "below the last report (50%)"),
        ({"percent": 50}, 422, "note", "needs a note or evidence"),
        (
            {"percent": 60, "evidence": [{"kind": "file", "value": "javascript:alert(1)"}]},
            422,
            "evidence.0.value",
            "文件证据须为 http(s):// 网址或平台上传文件的引用",
        ),
        (
            {
                "percent": 60,
                "evidence": [
                    {"kind": "text", "value": "javascript: 不是链接，是文字"},
                    {"kind": "file", "value": "data:text/html,<script>alert(1)</script>"},
                ],
            },
            422,
            "evidence.1.value",
            "不能是“data:text/html",
        ),
    ],
)
async def test_bad_progress_is_refused_with_the_reason_and_stores_nothing(
    kit: Kit, body: dict[str, Any], status: int, field: str, reason: str
) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    wang = kit.secretary(town, village)
    r = await kit.client.post(f"/tasks/{task_id}/progress", json={"percent": 50}, headers=wang)
    assert r.status_code == 200, r.text
    before = await kit.stored()

    r = await kit.client.post(f"/tasks/{task_id}/progress", json=body, headers=wang)

    assert r.status_code == status, r.text
    assert reason in r.text and field in r.text
    assert await kit.stored() == before


async def test_reports_outside_ones_jurisdiction_or_not_ones_own_are_forbidden(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    outsiders = {
        "another village's secretary": kit.secretary(town, fresh("v")),
        "another township's office": kit.office(fresh("town")),
        "a party member of the village": token(
            kit.settings,
            sub="m",
            roles=["party_member"],
            township_ids=[town],
            village_ids=[village],
        ),
        "the county (reads, does not report)": kit.county(),
    }
    before = await kit.stored()
    for who, headers in outsiders.items():
        r = await kit.client.post(
            f"/tasks/{task_id}/progress", json={"percent": 10}, headers=headers
        )
        assert r.status_code == 403, (who, r.text)
        assert "only its assignee or the office" in r.json()["detail"], who
        r = await kit.client.post(
            f"/tasks/{task_id}/completion", json={"summary": "done"}, headers=headers
        )
        assert r.status_code == 403, (who, r.text)
        # Who may act is checked before the body: an outsider learns nothing about it.
        r = await kit.client.post(
            f"/tasks/{task_id}/progress", json={"percent": 101}, headers=headers
        )
        assert r.status_code == 403, (who, r.text)
    assert await kit.stored() == before
    r = await kit.client.get(f"/tasks/{task_id}", headers=outsiders["another village's secretary"])
    assert r.status_code == 403 and "outside your jurisdiction" in r.text
    r = await kit.client.get(
        f"/tasks/{task_id}/history", headers=outsiders["another township's office"]
    )
    assert r.status_code == 403


async def test_a_completion_with_a_script_link_as_evidence_is_refused(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    before = await kit.stored()
    r = await kit.client.post(
        f"/tasks/{task_id}/completion",
        json={"evidence": [{"kind": "file", "value": "JavaScript:fetch('//x')", "title": "照片"}]},
        headers=kit.secretary(town, village),
    )
    assert r.status_code == 422 and r.json()["field"] == "evidence.0.value", r.text
    assert "http(s)://" in r.json()["detail"]
    assert await kit.stored() == before


async def test_completing_twice_or_without_evidence_is_refused(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    office = kit.office(town)
    before = await kit.stored()
    r = await kit.client.post(f"/tasks/{task_id}/completion", json={}, headers=office)
    assert r.status_code == 422 and "evidence or a summary" in r.text
    assert r.json()["field"] == "evidence"
    assert await kit.stored() == before

    r = await kit.client.post(
        f"/tasks/{task_id}/completion",
        json={"evidence": [{"kind": "text", "value": "已验收"}]},
        headers=office,
    )
    assert r.status_code == 200, r.text
    r = await kit.client.post(
        f"/tasks/{task_id}/completion", json={"summary": "again"}, headers=office
    )
    assert r.status_code == 409 and "was completed on" in r.json()["detail"]
    assert await kit.version(task_id) == 2


async def test_a_task_that_does_not_exist_is_not_found(kit: Kit) -> None:
    r = await kit.client.post("/tasks/nope/progress", json={"percent": 1}, headers=kit.office("t"))
    assert r.status_code == 404 and "there is no task nope" in r.text


async def test_a_person_sees_and_reports_on_their_own_tasks(kit: Kit) -> None:
    town, forum = fresh("town"), fresh("forum")
    person = fresh("person")
    start = today(kit.clock)
    await assign_tasks(
        kit.rt.store,
        [
            TaskDraft(
                task_id=f"{forum}-T1",
                source="forum_resolution",
                township_id=town,
                assignee=Assignee(kind="person", id=person, name="冯博"),
                title="线上组织生活试点",
                starts_on=start,
                due_on=start + dt.timedelta(days=10),
                forum_id=forum,
                resolution_id=f"{forum}-R1",
            )
        ],
        CommandContext(),
    )
    mine = await kit.until("/tasks", lambda b: b["total"] == 1, kit.person(person))
    assert mine["items"][0]["assignee"]["name"] == "冯博"
    r = await kit.client.post(
        f"/tasks/{forum}-T1/progress", json={"percent": 100}, headers=kit.person(person)
    )
    assert r.status_code == 200, r.text
    nobody = (await kit.client.get("/tasks", headers=kit.person(fresh("p")))).json()
    assert nobody["total"] == 0


# --- lists and scopes ----------------------------------------------------------------------


async def test_lists_are_scoped_to_the_callers_jurisdiction_and_filterable(kit: Kit) -> None:
    town, other_town = fresh("town"), fresh("town")
    v1, v2, v3 = fresh("v"), fresh("v"), fresh("v")
    a = await kit.assign(town, v1, n=2)
    b = await kit.assign(town, v2, days=5)
    c = await kit.assign(other_town, v3)

    def ids(body: dict[str, Any]) -> set[str]:
        return {t["task_id"] for t in body["items"]}

    office = (await kit.client.get(f"/tasks?township_id={town}", headers=kit.office(town))).json()
    assert ids(office) == {*a, *b} and office["total"] == 3
    # The office of a township sees nothing of another, whatever it asks for.
    foreign = await kit.client.get(f"/tasks?township_id={other_town}", headers=kit.office(town))
    assert foreign.json()["total"] == 0
    secretary = (await kit.client.get("/tasks", headers=kit.secretary(town, v1))).json()
    assert ids(secretary) == set(a)
    county = kit.county()
    assert ids((await kit.client.get(f"/tasks?village_id={v3}", headers=county)).json()) == set(c)
    page = (
        await kit.client.get(f"/tasks?township_id={town}&limit=1&offset=1", headers=county)
    ).json()
    assert (page["total"], len(page["items"]), page["offset"]) == (3, 1, 1)
    # by due date: v2's task (5 days) first
    first = (await kit.client.get(f"/tasks?township_id={town}&limit=1", headers=county)).json()
    assert ids(first) == set(b)
    r = await kit.client.get("/tasks?status=lost&limit=501", headers=county)
    assert r.status_code == 422 and "status" in r.text and "limit" in r.text


async def test_list_parameters_are_bounded_by_the_shared_edge(kit: Kit) -> None:
    """Found by fuzzing: a NUL in an id answered 500, ``due_before=0`` was accepted."""
    county = kit.county()
    r = await kit.client.get("/tasks?village_id=%00", headers=county)
    assert r.status_code == 422 and r.json()["field"] == "village_id"
    r = await kit.client.get("/tasks?due_before=0", headers=county)
    assert r.status_code == 422 and r.json()["field"] == "due_before"
    r = await kit.client.get("/tasks?due_before=1999-12-31", headers=county)
    assert r.status_code == 422 and "outside" in r.json()["detail"]


async def test_a_campaign_assigns_its_targets_in_bulk_all_or_nothing(kit: Kit) -> None:
    campaign, town = fresh("campaign"), fresh("town")
    start = today(kit.clock)

    def target(n: int, due: dt.date) -> TaskDraft:
        village = f"{campaign}-v{n % 45:02d}"
        return TaskDraft(
            task_id=f"{campaign}-{n:03d}",
            source="campaign_target",
            township_id=town,
            village_id=village,
            assignee=Assignee(kind="village", id=village),
            title=f"整顿目标{n}",
            starts_on=start,
            due_on=due,
            campaign_id=campaign,
            area="班子队伍建设",
            kind="建强班子",
            weight=1 + n % 3,
        )

    year_end = dt.date(start.year, 12, 31)
    targets = [target(n, year_end) for n in range(364)]
    bad = [*targets[:10], target(999, start - dt.timedelta(days=1))]
    before = await kit.stored()
    r = await assign_with_refusal(kit, bad)
    assert "before the task starts" in r and await kit.stored() == before

    created = await assign_tasks(kit.rt.store, targets, CommandContext(actor="county-org"))
    assert len(created) == 364
    assert await assign_tasks(kit.rt.store, targets, CommandContext()) == []
    listed = await kit.until(f"/tasks?campaign_id={campaign}&limit=1", lambda b: b["total"] == 364)
    assert listed["items"][0]["area"] == "班子队伍建设"
    assert await kit.stored() == before + 364


async def assign_with_refusal(kit: Kit, drafts: list[TaskDraft]) -> str:
    with pytest.raises(DomainError) as refused:
        await assign_tasks(kit.rt.store, drafts, CommandContext())
    return str(refused.value)


# --- the deadline timer --------------------------------------------------------------------


async def test_an_unfinished_task_becomes_overdue_and_escalates_on_the_clock(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    late, done = await kit.assign(town, village, days=3, n=2)
    office = kit.office(town)
    r = await kit.client.post(f"/tasks/{done}/completion", json={"summary": "ok"}, headers=office)
    assert r.status_code == 200
    due = dt.date.fromisoformat((await kit.until(f"/tasks/{late}", bool))["due_on"])

    kit.clock.set(deadline(due))
    overdue = await kit.until(
        f"/tasks/overdue?township_id={town}", lambda b: b["total"] == 1, office
    )
    assert overdue["items"][0]["task_id"] == late
    assert overdue["items"][0]["escalation_level"] == "village"

    # This module escalates after 2 and 4 working days.
    kit.clock.set(deadline(due) + dt.timedelta(days=14))
    await kit.until(f"/tasks/{late}", lambda t: t["escalation_level"] == "county")
    stored = await kit.rt.store.load(task_stream_id(late))
    steps = [
        (s.event.event_type.rsplit(".", 1)[1], getattr(s.event, "level", None)) for s in stored
    ]
    assert steps == [
        ("TaskAssigned", None),
        ("TaskOverdue", None),
        ("TaskEscalated", "township"),
        ("TaskEscalated", "county"),
    ]
    assert all(s.envelope.actor == "rectification-scheduler" for s in stored[1:])
    assert await kit.version(done) == 2  # completed: never overdue
    county = await kit.until(
        f"/tasks/overdue?escalation_level=county&township_id={town}", lambda b: b["total"] == 1
    )
    assert county["items"][0]["task_id"] == late

    # The office moves the due date: the task is open again.
    new_due = today(kit.clock) + dt.timedelta(days=10)
    r = await kit.client.post(
        f"/tasks/{late}/due-date",
        json={"due_on": str(new_due), "reason": "汛期顺延"},
        headers=office,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["escalation_level"]) == ("open", None)
    await kit.until(f"/tasks/{late}", lambda t: t["status"] == "open")


async def test_a_due_date_before_the_start_is_refused_over_http(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    (task_id,) = await kit.assign(town, village)
    card = await kit.until(f"/tasks/{task_id}", bool)
    before = await kit.stored()
    r = await kit.client.post(
        f"/tasks/{task_id}/due-date",
        json={
            "due_on": str(dt.date.fromisoformat(card["starts_on"]) - dt.timedelta(days=1)),
            "reason": "提前",
        },
        headers=kit.office(town),
    )
    assert r.status_code == 422 and r.json()["field"] == "due_on"
    assert "before the task starts" in r.json()["detail"]
    r = await kit.client.post(
        f"/tasks/{task_id}/due-date",
        json={"due_on": "2099-01-01", "reason": "顺延"},
        headers=kit.secretary(town, village),
    )
    assert r.status_code == 403
    assert await kit.stored() == before


async def test_the_tasks_read_model_rebuilds_to_the_same_rows(kit: Kit) -> None:
    town, village = fresh("town"), fresh("v")
    reported, completed = await kit.assign(town, village, n=2)
    office = kit.office(town)
    for path, body in (
        (f"/tasks/{reported}/progress", {"percent": 30, "note": "进行中"}),
        (f"/tasks/{completed}/completion", {"summary": "已完成"}),
    ):
        r = await kit.client.post(path, json=body, headers=office)
        assert r.status_code == 200, r.text
    await kit.until(f"/tasks/{completed}", lambda t: t["status"] == "completed")
    await kit.until(f"/tasks/{reported}", lambda t: t["percent"] == 30)

    async def rows() -> list[dict[str, Any]]:
        found = await kit.pool.fetch(
            "SELECT * FROM rectification.tasks WHERE township_id = $1 ORDER BY task_id", town
        )
        return [dict(r) for r in found]

    before = await rows()
    projection = next(c for c in kit.rt.service.consumers if c.name == "tasks")
    assert await rebuild(projection, kit.rt.store) >= 4
    assert await rows() == before
    assert [r["status"] for r in before] == ["open", "completed"]


async def test_the_api_documents_the_task_routes_and_which_rules_are_ours(kit: Kit) -> None:
    spec = (await kit.client.get("/openapi.json")).json()
    for path in ("/tasks", "/tasks/overdue", "/tasks/{task_id}/progress", "/forums/task-counts"):
        assert path in spec["paths"], path
    progress = spec["paths"]["/tasks/{task_id}/progress"]["post"]["description"]
    assert "Our rule" in progress
    assert "tracked work item" in spec["info"]["description"]
