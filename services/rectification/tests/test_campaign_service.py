"""The campaign on the real embedded stack: HTTP → event store → relay → Kafka → read models.

One service for the module; each test opens its own county's round. The service clock is a
``ManualClock`` so the late-report timer and the lights can be driven by moving time.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from typing import Any

import openpyxl
import pytest
import pytest_asyncio
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.envelope import Envelope, dlq_for
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.testing import consume, eventually, running, token
from cunzhi_rectification.adapters.campaign.projections import CAMPAIGN_PROJECTIONS
from cunzhi_rectification.domain.campaign_ids import (
    campaign_stream_id,
    team_stream_id,
    village_stream_id,
)
from cunzhi_rectification.events.campaign import Member, WorkTeamFormed
from cunzhi_rectification.service import build_service

pytestmark = pytest.mark.slow

START = dt.date(2026, 9, 1)
T1, T2 = "t-shidong", "t-pengli"
COUNTY_ROLE = "county_organisation_department"


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(settings, clock):
    async with running(build_service(), settings, clock) as c:
        yield c


def county(settings, county_id: str) -> dict[str, str]:
    return token(settings, sub="org", roles=[COUNTY_ROLE], county_id=county_id)


def csv(n: int) -> str:
    rows = [
        f"v{i:02d},村{i},{'居' if i % 5 == 0 else '村'},{T1 if i % 2 else T2}" for i in range(n)
    ]
    return "village_id,name,kind,township_id\n" + "\n".join(rows) + "\n"


async def opened(
    client,
    settings,
    *,
    county_id: str | None = None,
    round_number: int = 3,
    start: dt.date = START,
    **overrides: Any,
) -> tuple[str, dict[str, str]]:
    county_id = county_id or f"c{uuid.uuid4().hex[:8]}"
    headers = county(settings, county_id)
    r = await client.post(
        "/campaigns",
        headers=headers,
        json={
            "county_id": county_id,
            "round_number": round_number,
            "name": "第三轮薄弱村集中整顿攻坚",
            "start_date": start.isoformat(),
            "budget_per_year_yuan": 2_100_000,
            "townships": [
                {"township_id": T1, "name": "市东街道"},
                {"township_id": T2, "name": "彭李街道"},
            ],
            "settings": {"district_level_count": 1, **overrides},
        },
    )
    assert r.status_code == 201, r.text
    end = start.replace(year=start.year + 2) - dt.timedelta(days=1)
    assert r.json()["end_date"] == end.isoformat()
    return r.json()["campaign_id"], headers


async def test_a_round_opened_on_29_february_ends_on_the_last_day_of_february(
    client, settings
) -> None:
    headers = county(settings, "leapc")
    body = {
        "county_id": "leapc",
        "round_number": 1,
        "name": "闰日开始的一轮",
        "start_date": "2028-02-29",
        "budget_per_year_yuan": 0,
        "townships": [{"township_id": T1, "name": "市东街道"}],
    }
    r = await client.post("/campaigns", headers=headers, json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["start_date"], r.json()["end_date"]) == ("2028-02-29", "2030-02-28")
    r = await client.post(
        "/campaigns", headers=headers, json={**body, "round_number": 2, "period_years": 4}
    )
    assert r.json()["end_date"] == "2032-02-28"


async def version(client, stream: str) -> int:
    return await client.app.state.runtime.store.version(stream)


async def ranked(client, settings, **opening: Any) -> tuple[str, dict[str, str]]:
    """20 villages, village i scored worse the lower i: v00, v01, v02 are the candidates."""
    cid, headers = await opened(client, settings, **opening)
    r = await client.post(
        f"/campaigns/{cid}/villages.csv",
        headers={**headers, "content-type": "text/csv"},
        content=csv(20).encode(),
    )
    assert r.status_code == 200, r.text
    assessments = [
        {
            "village_id": f"v{i:02d}",
            "symptoms": {"hollow_economy": 3 if i < 3 else 0},
            "last_year_score": 50 + i,
        }
        for i in range(20)
    ]
    r = await client.post(f"/campaigns/{cid}/assessments", headers=headers, json=assessments)
    assert r.json()["assessed"] == 20
    r = await client.post(f"/campaigns/{cid}/ranking", headers=headers)
    assert r.json() == {"campaign_id": cid, "ranked": 20, "candidates": 3}
    return cid, headers


async def test_a_round_from_register_to_lights(client, settings, clock) -> None:
    clock.set(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))
    cid, headers = await ranked(client, settings)

    # verification: opinions from the departments, a non-candidate refused, verdicts
    discipline = token(
        settings, sub="jw", roles=["discipline_commission"], county_id=cid.rsplit("-R", 1)[0]
    )
    r = await client.post(
        f"/campaigns/{cid}/candidates/v00/opinions",
        headers=discipline,
        json={"opinion": "班子成员有违纪问题", "recommends": "confirm"},
    )
    assert r.status_code == 200, r.text
    before = await version(client, campaign_stream_id(cid))
    r = await client.post(
        f"/campaigns/{cid}/candidates/v10/confirm", headers=headers, json={"reason": "x"}
    )
    assert r.status_code == 409 and "not a candidate" in r.json()["detail"]
    assert await version(client, campaign_stream_id(cid)) == before
    for v in ("v00", "v01"):
        r = await client.post(
            f"/campaigns/{cid}/candidates/{v}/confirm", headers=headers, json={"reason": "核实确认"}
        )
        assert r.status_code == 200
    r = await client.post(
        f"/campaigns/{cid}/candidates/v02/remove",
        headers=headers,
        json={"reason": "实地查看：问题已整改"},
    )
    assert r.json()["undecided"] == 0
    r = await client.post(f"/campaigns/{cid}/tiers", headers=headers)
    assert r.json() == {"district": ["v00"], "town": ["v01"]}

    # problems, team, targets on the district-level village
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/problems",
        headers=headers,
        json=[
            {"problem_id": "p1", "kind": "weak", "description": "班子软弱"},
            {"problem_id": "p2", "kind": "poor", "description": "集体经济空壳"},
        ],
    )
    assert r.json()["problems"] == 2
    departments = [
        {"department_id": "zzb", "name": "区委组织部", "type": "party_committee"},
        {"department_id": "nyj", "name": "区农业农村局", "type": "economic"},
        {"department_id": "zfw", "name": "区委政法委", "type": "political_legal"},
    ]
    r = await client.post(
        f"/campaigns/{cid}/team-proposals",
        headers=headers,
        json={"village_id": "v00", "departments": departments},
    )
    assert [d["department_id"] for d in r.json()["departments"]] == ["zzb", "nyj"]
    r = await client.post(
        f"/campaigns/{cid}/teams",
        headers=headers,
        json={
            "team_id": "team-v00",
            "level": "district",
            "village_ids": ["v00"],
            "departments": departments[:2],
            "members": [
                {"person_id": "m1", "name": "张干部", "department_id": "zzb", "age_band": "young"},
                {"person_id": "m2", "name": "李干部", "department_id": "nyj", "age_band": "old"},
            ],
            "patrons": [
                {"person_id": "L1", "name": "区领导甲"},
                {"person_id": "L2", "name": "区领导乙"},
            ],
            "township_assistant": "彭李街道副书记",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == [
        "no middle cadre: the team should mix old, middle-aged and young (老—中—青)"
    ]
    target = {
        "title": "配齐两委班子",
        "area": "班子队伍建设",
        "task_kind": "配强班子",
        "weight": 3,
        "owner": "m1",
    }
    village = village_stream_id(cid, "v00")
    before = await version(client, village)
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/targets",
        headers=headers,
        json=[{**target, "target_id": f"{cid}-g1", "due_date": "2026-08-01"}],
    )
    assert r.status_code == 422 and r.json()["field"] == "due_date"
    assert await version(client, village) == before
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/targets",
        headers=headers,
        json=[
            {**target, "target_id": f"{cid}-g1", "due_date": "2027-06-30"},
            {
                **target,
                "target_id": f"{cid}-g2",
                "due_date": "2026-09-20",
                "weight": 1,
                "title": "化解信访积案",
                "area": "社会和谐稳定",
                "task_kind": "化解矛盾纠纷",
            },
        ],
    )
    assert r.json()["targets"] == 2, r.text
    # a target id already taken by another village's task: neither TargetSet nor task is stored
    other = village_stream_id(cid, "v01")
    before = await version(client, other)
    r = await client.post(
        f"/campaigns/{cid}/villages/v01/targets",
        headers=headers,
        json=[{**target, "target_id": f"{cid}-g1", "due_date": "2027-06-30"}],
    )
    assert r.status_code == 409 and "already assigned" in r.json()["detail"]
    assert await version(client, other) == before

    # reports: only for a village of one's own team
    member = token(settings, sub="m1", roles=["work_team_member"])
    r = await client.post(
        f"/campaigns/{cid}/villages/v01/reports",
        headers=member,
        json={"kind": "monthly_progress", "period": 1, "summary": "x", "team_id": "team-v00"},
    )
    assert r.status_code == 403 and "not one of team team-v00" in r.json()["detail"]
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/reports",
        headers=member,
        json={
            "kind": "monthly_progress",
            "period": 1,
            "summary": "召开两委会议3次",
            "team_id": "team-v00",
        },
    )
    assert r.status_code == 200 and r.json()["late"] is False, r.text
    stranger = token(settings, sub="m9", roles=["work_team_member"])
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/reports",
        headers=stranger,
        json={"kind": "monthly_progress", "period": 2, "summary": "x", "team_id": "team-v00"},
    )
    assert r.status_code == 403

    # another township's office cannot touch this township's town list
    other = token(settings, sub="o", roles=["party_building_office"], township_ids=[T2])
    r = await client.delete(
        f"/campaigns/{cid}/town-list/v01", headers=other, params={"reason": "x"}
    )
    assert r.status_code == 403  # odd village ids lie in T1
    r = await client.get(f"/campaigns/{cid}/villages/v01", headers=other)
    assert r.status_code == 403

    # targets are tasks: the village secretary reports on them through the tasks API
    secretary = token(settings, sub="s-v00", roles=["village_secretary"], village_ids=["v00"])
    r = await client.post(
        f"/tasks/{cid}-g1/progress",
        headers=secretary,
        json={"percent": 50, "note": "两委班子补选完成一半"},
    )
    assert r.status_code == 200, r.text

    # and the village's team reports on its targets through the campaign's API
    path = f"/campaigns/{cid}/teams/team-v00/targets/{cid}-g2/progress"
    r = await client.post(path, headers=member, json={"percent": 20, "note": "排查信访积案"})
    assert r.status_code == 200 and r.json()["percent"] == 20, r.text
    r = await client.post(path, headers=stranger, json={"percent": 30, "note": "x"})
    assert r.status_code == 403
    r = await client.post(path, headers=member, json={"percent": 10, "note": "x"})
    assert r.status_code == 422 and "below the last report" in r.json()["detail"]

    # the read models, through Kafka
    async def dashboard() -> dict[str, Any] | None:
        d = (await client.get(f"/campaigns/{cid}/dashboard", headers=headers)).json()
        done = d["town_level"] == 1 and d["targets"] == 2 and d["green"] == 2
        return d if done and d["progress"] == 42.5 else None

    d = await eventually(dashboard)
    last = (await client.get(f"/campaigns/{cid}/dashboard", headers=headers)).json()
    assert d is not None, {k: last[k] for k in ("town_level", "targets", "green", "progress")}
    assert (d["registered"], d["ranked"], d["candidates"], d["confirmed"], d["removed"]) == (
        20,
        20,
        3,
        2,
        1,
    )
    assert (
        d["district_level"],
        d["problems_of_district_level"],
        d["patron_leaders"],
        d["district_cadres"],
    ) == (1, 2, 2, 2)
    page = (
        await client.get(
            f"/campaigns/{cid}/ranking", headers=headers, params={"candidates_only": True}
        )
    ).json()
    assert [i["village_id"] for i in page["items"]] == ["v02", "v01", "v00"]
    assert [i["rank"] for i in page["items"]] == [18, 19, 20]
    r = await client.get(f"/campaigns/{cid}/ranking.xlsx", headers=headers)
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("排名", "村居编码", "村居名称") and len(rows) == 21
    assert rows[20][:2] == (20, "v00")

    patrons = (await client.get(f"/campaigns/{cid}/patrons", headers=headers)).json()["items"]
    assert patrons == [
        {"person_id": "L1", "name": "区领导甲", "village_ids": ["v00"]},
        {"person_id": "L2", "name": "区领导乙", "village_ids": ["v00"]},
    ]
    card = (await client.get(f"/campaigns/{cid}/villages/v00", headers=member)).json()
    assert card["tier"] == "district" and [p["kind"] for p in card["problems"]] == ["weak", "poor"]
    assert card["light"] == "green" and card["teams"][0]["team_id"] == "team-v00"
    assert card["progress"] == 42.5  # (3 × 50 + 1 × 20) / 4

    # time passes: target g2 overdue, weekly on-duty reports and v01's monthly summary late
    clock.set(dt.datetime(2026, 10, 12, 10, 0, tzinfo=SHANGHAI))

    async def lights() -> dict[str, str]:
        rows = (
            await client.get(
                f"/campaigns/{cid}/ranking", headers=headers, params={"candidates_only": True}
            )
        ).json()["items"]
        return {r["village_id"]: r["light"] for r in rows if r["tier"]}

    async def changed() -> bool:
        return await lights() == {"v00": "red", "v01": "yellow"}

    assert await eventually(changed, timeout=120), await lights()
    card = (await client.get(f"/campaigns/{cid}/villages/v01", headers=headers)).json()
    assert card["light_reason"] == "yellow: 1 late report"
    card = (await client.get(f"/campaigns/{cid}/villages/v00", headers=headers)).json()
    assert "1 overdue task" in card["light_reason"] and "late reports" in card["light_reason"]
    ledger = (await client.get(f"/campaigns/{cid}/villages/v00/ledger", headers=headers)).json()
    kinds = [e["kind"] for e in ledger["items"]]
    assert {"VerificationOpinionGiven", "CandidateConfirmed", "VillageTiered"} <= set(kinds)
    assert "LightChanged" in kinds and "ReportLate" in kinds
    r = await client.get(f"/campaigns/{cid}/ledger.xlsx", headers=headers)
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["整顿村居", "问题清单", "目标任务", "台账记录"]
    assert book["问题清单"].max_row == 3


async def test_the_ledger_export_writes_shanghai_times_and_text_as_text(client, settings) -> None:
    cid, headers = await tiered(client, settings)
    hostile = ['=HYPERLINK("http://evil.example","点此")', "+1+2", "-3+4", "@SUM(A1)"]
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/problems",
        headers=headers,
        json=[
            {"problem_id": f"p{n}", "kind": "weak", "description": text}
            for n, text in enumerate(hostile)
        ],
    )
    assert r.status_code == 200, r.text

    async def ledger() -> list[dict[str, Any]] | None:
        items = (await client.get(f"/campaigns/{cid}/villages/v00/ledger", headers=headers)).json()[
            "items"
        ]
        return items if sum(i["kind"] == "ProblemListed" for i in items) == 4 else None

    items = await eventually(ledger)
    assert items is not None
    r = await client.get(f"/campaigns/{cid}/ledger.xlsx", headers=headers)
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    problems = list(book["问题清单"].iter_rows(min_row=2))
    assert [row[3].value for row in problems] == hostile
    assert all(row[3].data_type == "s" and row[3].quotePrefix for row in problems)
    entries = list(book["台账记录"].iter_rows(values_only=True))
    assert entries[0][1] == "时间（北京时间）" and len(entries) > 4
    # the ledger as the API answers it (+08:00), read after the workbook: it holds every row
    items = (await client.get(f"/campaigns/{cid}/villages/v00/ledger", headers=headers)).json()[
        "items"
    ]
    answered = {(i["kind"], i["summary"]): dt.datetime.fromisoformat(i["at"]) for i in items}
    for village_id, written, kind, summary in entries[1:]:
        if village_id != "v00":
            continue
        at = answered[(kind, summary)]
        assert at.utcoffset() == dt.timedelta(hours=8)
        # Excel keeps times to the millisecond
        assert abs(written - at.replace(tzinfo=None)) < dt.timedelta(milliseconds=1), (kind, at)


async def test_a_team_reaches_only_the_targets_of_its_own_round(client, settings) -> None:
    """v00 carried over from round 3 into round 4: each round's team, same id as the round
    builder gave them, reports on its own round's target only."""
    county_id = f"c{uuid.uuid4().hex[:8]}"
    rounds: dict[int, tuple[str, str]] = {}
    for number in (3, 4):
        cid, headers = await tiered(client, settings, county_id=county_id, round_number=number)
        r = await client.post(
            f"/campaigns/{cid}/teams",
            headers=headers,
            json={
                "team_id": "team-v00",
                "level": "district",
                "village_ids": ["v00"],
                "departments": [
                    {"department_id": "zzb", "name": "区委组织部", "type": "party_committee"}
                ],
                "members": [{"person_id": f"m-r{number}", "name": "干部", "department_id": "zzb"}],
                "patrons": [{"person_id": "L1", "name": "区领导甲"}],
            },
        )
        assert r.status_code == 201, r.text
        target = f"{cid}-v00-C1"
        r = await client.post(
            f"/campaigns/{cid}/villages/v00/targets",
            headers=headers,
            json=[
                {
                    "target_id": target,
                    "title": "配齐两委班子",
                    "area": "班子队伍建设",
                    "task_kind": "配强班子",
                    "due_date": "2027-06-30",
                    "owner": "工作组",
                }
            ],
        )
        assert r.status_code == 200, r.text
        rounds[number] = (cid, target)
    (r3, target3), (r4, target4) = rounds[3], rounds[4]
    member3 = token(settings, sub="m-r3", roles=["work_team_member"])
    store = client.app.state.runtime.store
    before = await store.version(f"task:{target4}")

    # round 4's target is not reached through round 3's routes, by its own team's member
    for verb, body in [
        ("progress", {"percent": 30, "note": "越轮上报"}),
        ("completion", {"summary": "越轮销号"}),
    ]:
        r = await client.post(
            f"/campaigns/{r3}/teams/team-v00/targets/{target4}/{verb}", headers=member3, json=body
        )
        assert r.status_code == 404 and r.json()["field"] == "target_id", r.text
    # nor through round 4's, where the team of the same id is not theirs
    r = await client.post(
        f"/campaigns/{r4}/teams/team-v00/targets/{target4}/progress",
        headers=member3,
        json={"percent": 30, "note": "越轮上报"},
    )
    assert r.status_code == 403, r.text
    assert await store.version(f"task:{target4}") == before

    # each round's member reports on their own round's target
    r = await client.post(
        f"/campaigns/{r3}/teams/team-v00/targets/{target3}/progress",
        headers=member3,
        json={"percent": 30, "note": "本轮上报"},
    )
    assert r.status_code == 200 and r.json()["percent"] == 30, r.text
    member4 = token(settings, sub="m-r4", roles=["work_team_member"])
    r = await client.post(
        f"/campaigns/{r4}/teams/team-v00/targets/{target4}/progress",
        headers=member4,
        json={"percent": 10, "evidence": [{"kind": "file", "value": "javascript:alert(1)"}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "evidence.0.value", r.text
    r = await client.post(
        f"/campaigns/{r4}/teams/team-v00/targets/{target4}/progress",
        headers=member4,
        json={"percent": 10, "evidence": [{"kind": "file", "value": "https://pan.example/1.jpg"}]},
    )
    assert r.status_code == 200 and r.json()["percent"] == 10, r.text


async def test_a_register_of_20000_villages_reaches_the_read_models(client, settings) -> None:
    cid, headers = await opened(client, settings)
    rows = [f"r{i:05d},村{i},村,{T1 if i % 2 else T2}" for i in range(20_000)]
    text = "village_id,name,kind,township_id\n" + "\n".join(rows) + "\n"
    r = await client.post(
        f"/campaigns/{cid}/villages.csv",
        headers={**headers, "content-type": "text/csv"},
        content=text.encode(),
    )
    assert r.status_code == 200 and r.json()["registered"] == 20_000, r.text
    store = client.app.state.runtime.store
    pages = await store.pool.fetch(
        "SELECT event_id, jsonb_array_length(payload -> 'villages') AS n FROM "
        "rectification.events WHERE stream_id = $1 AND type = $2",
        campaign_stream_id(cid),
        "cunzhi.rectification.VillagesRegistered",
    )
    assert len(pages) > 1 and sum(p["n"] for p in pages) == 20_000
    ids = [p["event_id"] for p in pages]

    async def published() -> bool:
        sent = await store.pool.fetchval(
            "SELECT count(*) FROM rectification.outbox WHERE event_id = ANY($1::uuid[]) "
            "AND sent_at IS NOT NULL AND octet_length(payload) < 1048576",
            ids,
        )
        return sent == len(ids)

    assert await eventually(published, timeout=120)

    async def registered() -> int | None:
        d = (await client.get(f"/campaigns/{cid}/dashboard", headers=headers)).json()
        return d["registered"] if d["registered"] == 20_000 else None

    assert await eventually(registered, timeout=120) == 20_000
    page = (
        await client.get(f"/campaigns/{cid}/ranking", headers=headers, params={"limit": 1})
    ).json()
    assert page["total"] == 20_000


async def test_bad_input_changes_nothing(client, settings) -> None:
    cid, headers = await opened(client, settings)
    stream = campaign_stream_id(cid)
    r = await client.post(f"/campaigns/{cid}/ranking", headers=headers)
    assert r.status_code == 409 and "no villages" in r.json()["detail"]
    bad = csv(3) + "v01,重复,村,t-shidong\nv09,某村,村,nowhere\n"
    r = await client.post(
        f"/campaigns/{cid}/villages.csv",
        headers={**headers, "content-type": "text/csv"},
        content=bad.encode(),
    )
    assert r.status_code == 422 and r.json()["field"] == "file"
    assert (
        "line 5, column village_id: duplicate village id v01 (first on line 3)"
        in r.json()["detail"]
    )
    assert "line 6, column township_id: unknown township 'nowhere'" in r.json()["detail"]
    assert await version(client, stream) == 1
    elsewhere = county(settings, "another-county")
    r = await client.post(
        f"/campaigns/{cid}/villages.csv",
        headers={**elsewhere, "content-type": "text/csv"},
        content=csv(3).encode(),
    )
    assert r.status_code == 403
    r = await client.post(
        f"/campaigns/{cid}/assessments",
        headers=headers,
        json=[{"village_id": "v00", "last_year_score": 101}],
    )
    assert r.status_code == 422
    r = await client.post(
        "/campaigns",
        headers=headers,
        json={
            "county_id": cid.rsplit("-R", 1)[0],
            "round_number": 4,
            "name": "x",
            "start_date": "2026-09-01",
            "budget_per_year_yuan": 1,
            "townships": [{"township_id": T1, "name": "a"}],
            "settings": {"candidate_share": 2},
        },
    )
    assert r.status_code == 422 and "candidate_share" in str(r.json()["detail"])
    assert await version(client, stream) == 1


async def tiered(client, settings, **opening: Any) -> tuple[str, dict[str, str]]:
    """v00 district-level, v01 town-level (in T1), v02 removed."""
    cid, headers = await ranked(client, settings, **opening)
    for v, verdict in (("v00", "confirm"), ("v01", "confirm"), ("v02", "remove")):
        r = await client.post(
            f"/campaigns/{cid}/candidates/{v}/{verdict}", headers=headers, json={"reason": "核实"}
        )
        assert r.status_code == 200, r.text
    r = await client.post(f"/campaigns/{cid}/tiers", headers=headers)
    assert r.json() == {"district": ["v00"], "town": ["v01"]}
    return cid, headers


async def test_the_town_list_teams_sheets_and_graduation(client, settings, clock) -> None:
    clock.set(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))
    cid, headers = await tiered(client, settings)
    office = token(settings, sub="o1", roles=["party_building_office"], township_ids=[T1])

    # the township keeps its town list: v03 appears during the round, v01 leaves it
    r = await client.post(
        f"/campaigns/{cid}/town-list",
        headers=office,
        json={"village_id": "v03", "reason": "动态出现：两委矛盾激化"},
    )
    assert r.status_code == 200 and r.json() == {"village_id": "v03", "tier": "town"}
    r = await client.post(
        f"/campaigns/{cid}/town-list", headers=office, json={"village_id": "v04", "reason": "x"}
    )
    assert r.status_code == 403  # v04 lies in the other township
    r = await client.delete(
        f"/campaigns/{cid}/town-list/v01", headers=office, params={"reason": "班子调整到位"}
    )
    assert r.status_code == 200
    r = await client.delete(
        f"/campaigns/{cid}/town-list/v01", headers=office, params={"reason": "again"}
    )
    assert r.status_code == 409

    # a township working group, led by a leadership member
    r = await client.post(
        f"/campaigns/{cid}/teams",
        headers=office,
        json={
            "team_id": "group-v03",
            "level": "town",
            "village_ids": ["v03"],
            "departments": [
                {"department_id": "sd", "name": "市东街道党工委", "type": "party_committee"}
            ],
            "members": [
                {
                    "person_id": "w1",
                    "name": "副书记",
                    "department_id": "sd",
                    "age_band": "middle",
                    "role": "leader",
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/campaigns/{cid}/teams",
        headers=office,
        json={
            "team_id": "team-v00",
            "level": "district",
            "village_ids": ["v00"],
            "departments": [],
            "members": [{"person_id": "w2", "name": "x", "department_id": "sd"}],
        },
    )
    assert r.status_code == 403  # district-level teams are the county's

    # the township reports for its town-level village; a party member of the township cannot
    report = {"kind": "monthly_progress", "period": 1, "summary": "工作组进驻"}
    member = token(settings, sub="pm", roles=["party_member"], township_ids=[T1])
    r = await client.post(f"/campaigns/{cid}/villages/v03/reports", headers=member, json=report)
    assert r.status_code == 403
    r = await client.post(f"/campaigns/{cid}/villages/v03/reports", headers=office, json=report)
    assert r.status_code == 200 and r.json()["late"] is False

    # the sheet, and the review export for the township secretaries
    common = {
        c: 9
        for c in (
            "on_duty",
            "team_building",
            "conflicts",
            "collective_economy",
            "livelihood",
            "openness",
            "ledger",
            "satisfaction",
        )
    }
    r = await client.post(
        f"/campaigns/{cid}/teams/group-v03/assessments",
        headers=headers,
        json={"period": "2027H1", "common": common, "differentiated": 15, "bonus": 2, "penalty": 1},
    )
    assert r.status_code == 200 and r.json()["total"] == 72 + 15 + 2 - 1
    r = await client.post(
        f"/campaigns/{cid}/teams/group-v03/assessments",
        headers=headers,
        json={"period": "2027H2", "common": {**common, "ledger": 11}},
    )
    assert r.status_code == 422 and r.json()["field"] == "common"

    # graduation: v03 passes (摘帽, reviewed a year later), v00 is carried over
    r = await client.post(
        f"/campaigns/{cid}/villages/v03/evaluation",
        headers=headers,
        json={"score": 85, "dissatisfaction": 0.2, "on": "2028-08-20"},
    )
    assert r.json() == {"village_id": "v03", "outcome": "graduated"}
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/evaluation",
        headers=headers,
        json={"score": 65, "dissatisfaction": 0.1},
    )
    assert r.json()["outcome"] == "carried_over"
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/evaluation",
        headers=headers,
        json={"score": 90, "dissatisfaction": 0.1},
    )
    assert r.status_code == 409

    async def settled() -> bool:
        d = (await client.get(f"/campaigns/{cid}/dashboard", headers=headers)).json()
        return (d["graduated"], d["carried_over"], d["town_level"]) == (1, 1, 1)

    assert await eventually(settled)
    view = (await client.get(f"/campaigns/{cid}/townships/{T1}", headers=office)).json()
    assert {v["village_id"]: v["outcome"] for v in view["villages"]} == {"v03": "graduated"}
    card = (await client.get(f"/campaigns/{cid}/villages/v03", headers=office)).json()
    assert card["follow_up_review_on"] == "2029-08-20"
    review = (await client.get(f"/campaigns/{cid}/township-review", headers=office)).json()
    assert review["items"] == [
        {
            "township_id": T1,
            "teams": [
                {"team_id": "group-v03", "level": "town", "villages": ["v03"], "latest_total": 88.0}
            ],
            "teams_assessed": 1,
            "average_total": 88.0,
        }
    ]
    r = await client.get(f"/campaigns/{cid}/township-review.xlsx", headers=office)
    sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
    assert list(sheet.iter_rows(values_only=True))[1] == (T1, "group-v03", "town", "v03", 88, 88)
    r = await client.get(f"/campaigns/{cid}/dashboard", headers=token(settings, sub="x"))
    assert r.status_code == 403
    # the township sees its own villages only
    page = (await client.get(f"/campaigns/{cid}/ranking", headers=office)).json()
    assert page["total"] == 10 and {i["township_id"] for i in page["items"]} == {T1}


async def test_a_redelivered_event_changes_nothing(client, settings, clock) -> None:
    clock.set(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))
    cid, headers = await tiered(client, settings)
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/problems",
        headers=headers,
        json=[{"problem_id": "p1", "kind": "weak", "description": "班子软弱"}],
    )
    assert r.status_code == 200

    async def ledger() -> list[dict[str, Any]]:
        return (await client.get(f"/campaigns/{cid}/villages/v00/ledger", headers=headers)).json()[
            "items"
        ]

    async def listed() -> bool:
        return {"ProblemListed", "LightChanged"} <= {e["kind"] for e in await ledger()}

    assert await eventually(listed)
    before = await ledger()
    # publish the stored ProblemListed again, as a relay that crashed before marking it would
    rt = client.app.state.runtime
    (stored,) = [
        s
        for s in await rt.store.load(village_stream_id(cid, "v00"))
        if s.envelope.type.endswith("ProblemListed")
    ]
    await rt.broker.publish(
        stored.event.model_dump_json().encode(),
        rt.store.topic,
        key=stored.stream_id.encode(),
        headers={k: v.decode() for k, v in stored.envelope.to_headers()},
    )
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/problems",
        headers=headers,
        json=[{"problem_id": "p2", "kind": "poor", "description": "空壳"}],
    )

    async def second() -> bool:
        return sum(e["kind"] == "ProblemListed" for e in await ledger()) == 2

    assert await eventually(second)  # the redelivery was processed before, in partition order
    after = await ledger()
    assert [e for e in after if e["summary"] != "problem (poor): 空壳"] == before
    card = (await client.get(f"/campaigns/{cid}/villages/v00", headers=headers)).json()
    assert [p["problem_id"] for p in card["problems"]] == ["p1", "p2"]


async def test_the_read_model_rebuilds_to_the_same_rows(client, settings, clock) -> None:
    clock.set(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))
    cid, headers = await tiered(client, settings)
    r = await client.post(
        f"/campaigns/{cid}/villages/v00/problems",
        headers=headers,
        json=[{"problem_id": "p1", "kind": "poor", "description": "空壳村"}],
    )
    assert r.status_code == 200

    async def views() -> tuple[Any, ...]:
        get = client.get
        ledger = (await get(f"/campaigns/{cid}/villages/v00/ledger", headers=headers)).json()
        return (
            (await get(f"/campaigns/{cid}/ranking", headers=headers)).json(),
            (await get(f"/campaigns/{cid}/villages/v00", headers=headers)).json(),
            # entries of one instant (the test's clock stands still) in no particular order
            sorted(ledger["items"], key=lambda e: (e["at"], e["kind"], e["summary"])),
        )

    async def settled() -> bool:
        ranking, card, _ = await views()
        lights = {i["village_id"]: i["light"] for i in ranking["items"] if i["tier"]}
        return lights == {"v00": "green", "v01": "green"} and len(card["problems"]) == 1

    assert await eventually(settled)
    before = await views()
    folded = await rebuild(CAMPAIGN_PROJECTIONS[0], client.app.state.runtime.store)
    assert folded > 20
    assert await views() == before


async def test_ranking_asks_the_departments_and_reports_are_said_due_once(
    client, settings, clock
) -> None:
    clock.set(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))  # a Tuesday
    cid, _ = await tiered(client, settings)
    store = client.app.state.runtime.store

    async def events(stream: str, kind: str) -> list[Any]:
        return [s.event for s in await store.load(stream) if s.envelope.type.endswith(kind)]

    (asked,) = await events(campaign_stream_id(cid), "VerificationRequested")
    assert asked.village_ids == ("v02", "v01", "v00")
    assert asked.sources == ("discipline", "political_legal", "petitions")
    assert asked.respond_by == dt.date(2026, 9, 8)  # five working days on
    office = token(settings, sub="o1", roles=["party_building_office"], township_ids=[T1])
    r = await client.post(
        f"/campaigns/{cid}/teams",
        headers=office,
        json={
            "team_id": "group-v01",
            "level": "town",
            "village_ids": ["v01"],
            "departments": [{"department_id": "sd", "name": "市东街道", "type": "party_committee"}],
            "members": [
                {"person_id": "w1", "name": "副书记", "department_id": "sd", "role": "leader"}
            ],
        },
    )
    assert r.status_code == 201, r.text
    group = team_stream_id(cid, "group-v01")

    async def said(stream: str, kind: str, count: int = 1) -> list[Any]:
        async def found() -> list[Any] | None:
            got = await events(stream, kind)
            return got if len(got) >= count else None

        # the timer sweeps every round of the module's store when the clock moves: on a
        # loaded machine that takes longer than the usual wait
        got = await eventually(found, timeout=120)
        assert got is not None, f"no {kind} on {stream}"
        return got

    # the first week has ended: its on-duty report is due at 17:30, then late
    clock.set(dt.datetime(2026, 9, 8, 9, 0, tzinfo=SHANGHAI))
    (due,) = await said(group, "ReportDue")
    assert (due.kind, due.period, due.subject_id) == ("weekly_on_duty", 1, "group-v01")
    assert due.due_at == dt.datetime(2026, 9, 8, 17, 30, tzinfo=SHANGHAI)
    clock.set(dt.datetime(2026, 9, 8, 18, 0, tzinfo=SHANGHAI))
    (late,) = await said(group, "ReportLate")
    assert late.period == 1
    # v01's September summary comes in during September; v00's does not
    member = token(settings, sub="w1", roles=["work_team_member"])
    clock.set(dt.datetime(2026, 9, 29, 10, 0, tzinfo=SHANGHAI))
    r = await client.post(
        f"/campaigns/{cid}/villages/v01/reports",
        headers=member,
        json={"kind": "monthly_progress", "period": 1, "summary": "x", "team_id": "group-v01"},
    )
    assert r.status_code == 200, r.text
    clock.set(dt.datetime(2026, 10, 1, 9, 0, tzinfo=SHANGHAI))
    v00, v01 = village_stream_id(cid, "v00"), village_stream_id(cid, "v01")
    september = await said(v00, "ReportDue", count=2)  # the month's and the quarter's
    assert sorted((e.kind, e.period) for e in september) == [
        ("monthly_progress", 1),
        ("quarterly_visit", 1),
    ]
    clock.set(dt.datetime(2026, 10, 12, 9, 0, tzinfo=SHANGHAI))  # the month's is past due
    (late,) = await said(v00, "ReportLate")
    assert late.kind == "monthly_progress"
    assert len(await events(v00, "ReportDue")) == 2  # each said once
    # v01's summary is in: nothing due or late for September but the quarter's visit
    assert [(e.kind, e.period) for e in await events(v01, "ReportDue")] == [("quarterly_visit", 1)]
    assert await events(v01, "ReportLate") == []


async def test_an_event_of_a_round_this_store_does_not_hold_is_passed_over(client, settings):
    """Something else publishing under our types (a test double, a misrouted copy) must not
    hold up the lights: no retries, no dead letter, nothing recorded for it."""
    store = client.app.state.runtime.store
    event = WorkTeamFormed(
        campaign_id=f"nowhere-{uuid.uuid4().hex[:6]}",
        team_id="team-x",
        level="district",
        # a township of its own: the read-model checks compare only what the store holds
        township_id=f"t-{uuid.uuid4().hex[:6]}",
        village_ids=(),  # nor a line in any village's ledger, which has no township to scope
        departments=(),
        members=(Member(person_id="w9", name="组员", department_id="d1"),),
        patrons=(),
        township_assistant=None,
        warnings=(),
        formed_on=START,
    )
    env = Envelope.new(
        type=event.event_type,
        source="/cunzhi/rectification",
        subject="team-x",
        time=dt.datetime.now(SHANGHAI),
    )
    broker = make_broker(settings.kafka_bootstrap_servers, client_id="rectification-tests")
    await broker.start()
    try:
        await broker.publish(
            json.dumps(event.to_payload()).encode(),
            store.topic,
            key=b"team-x",
            headers={k: v.decode() for k, v in env.to_headers()},
        )
    finally:
        await broker.stop()
    marks = f'"{store.schema}"."campaign_lights__processed"'

    async def processed() -> bool:
        return bool(
            await store.pool.fetchval(f"SELECT true FROM {marks} WHERE event_id = $1", env.id)
        )

    assert await eventually(processed)
    watched = f'"{store.schema}"."watch_teams"'
    assert not await store.pool.fetchval(
        f"SELECT count(*) FROM {watched} WHERE campaign_id = $1", event.campaign_id
    )
    dead = await consume(settings.kafka_bootstrap_servers, dlq_for(store.topic), 10_000, timeout=5)
    assert env.id not in {dict(r.headers).get("ce_id", b"").decode() for r in dead}
