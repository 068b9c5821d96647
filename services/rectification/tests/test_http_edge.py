"""The rectification API at its edge: jurisdiction decided before the body is validated, and
uploaded files held to the same rules as JSON (regressions of the contract fuzz)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.edge import ID_PATTERN
from cunzhi_platform.testing import running, token
from cunzhi_rectification.application.campaign import campaign
from cunzhi_rectification.domain.campaign_ids import campaign_stream_id
from cunzhi_rectification.domain.campaign_settings import COMMON_INDICATORS
from cunzhi_rectification.service import build_service

pytestmark = pytest.mark.slow

T1, T2 = "t-east", "t-west"
VILLAGES = [f"v{i}" for i in range(7)]  # v0 scores worst: the one candidate, district-level
HEAD = "village_id,name,kind,township_id\n"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(settings):
    clock = ManualClock(dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI))
    async with running(build_service(), settings, clock) as c:
        yield c


@dataclass(frozen=True)
class Round:
    campaign_id: str
    county_id: str
    county: dict[str, str]


async def post(client, path: str, headers: dict[str, str], body: Any = None) -> Any:
    r = await client.post(path, headers=headers, json=body)
    assert r.status_code < 300, (path, r.text)
    return r.json()


async def opened(client, settings) -> Round:
    county_id = f"c{uuid.uuid4().hex[:8]}"
    county = token(
        settings, sub="org", roles=["county_organisation_department"], county_id=county_id
    )
    opened = await post(
        client,
        "/campaigns",
        county,
        {
            "county_id": county_id,
            "round_number": 1,
            "name": "薄弱村集中整顿",
            "start_date": "2026-09-01",
            "budget_per_year_yuan": 1000,
            "townships": [{"township_id": T1, "name": "东镇"}, {"township_id": T2, "name": "西镇"}],
            "settings": {"district_level_count": 1},
        },
    )
    return Round(opened["campaign_id"], county_id, county)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tiered(client, settings) -> Round:
    """A round with v0 district-level (in T1), its team ``team-1`` (member ``m1``) and one
    target, the task ``{campaign}-g1``."""
    r = await opened(client, settings)
    base = f"/campaigns/{r.campaign_id}"
    villages = [{"village_id": v, "name": f"{v}村", "township_id": T1} for v in VILLAGES]
    await post(client, f"{base}/villages", r.county, villages)
    scores = [{"village_id": v, "last_year_score": 40 + i} for i, v in enumerate(VILLAGES)]
    await post(client, f"{base}/assessments", r.county, scores)
    await post(client, f"{base}/ranking", r.county)
    await post(client, f"{base}/candidates/v0/confirm", r.county, {"reason": "核实"})
    await post(client, f"{base}/tiers", r.county)
    team = {
        "team_id": "team-1",
        "level": "district",
        "village_ids": ["v0"],
        "departments": [{"department_id": "zzb", "name": "组织部", "type": "party_committee"}],
        "members": [{"person_id": "m1", "name": "张干部", "department_id": "zzb"}],
        "patrons": [{"person_id": "L1", "name": "区领导"}],
    }
    await post(client, f"{base}/teams", r.county, team)
    target = {
        "target_id": f"{r.campaign_id}-g1",
        "title": "配齐两委班子",
        "area": "班子队伍建设",
        "task_kind": "配强班子",
        "due_date": "2027-06-30",
        "owner": "m1",
    }
    await post(client, f"{base}/villages/v0/targets", r.county, [target])
    return r


async def test_outside_ones_jurisdiction_a_bad_body_answers_403_not_422(
    client, settings, tiered: Round
) -> None:
    cid, base = tiered.campaign_id, f"/campaigns/{tiered.campaign_id}"
    other_county = token(
        settings, sub="o", roles=["county_organisation_department"], county_id="elsewhere"
    )
    other_office = token(settings, sub="w", roles=["party_building_office"], township_ids=["t9"])
    other_verifier = token(settings, sub="j", roles=["discipline_commission"], county_id="x")
    stranger = token(settings, sub="m9", roles=["work_team_member"])
    member = token(settings, sub="m1", roles=["work_team_member"])
    bad: dict[str, Any] = {"unknown": "\x00"}
    refused = [
        ("/campaigns", token(settings, sub="p", roles=["party_member"])),
        (f"{base}/villages", other_county),
        (f"{base}/assessments", other_county),
        (f"{base}/sending-units", other_county),
        (f"{base}/candidates/v0/confirm", other_county),
        (f"{base}/candidates/v0/remove", other_county),
        (f"{base}/candidates/v0/opinions", other_verifier),
        (f"{base}/candidates/v0/opinions", other_office),
        (f"{base}/villages/v0/problems", other_office),
        (f"{base}/villages/v0/targets", other_office),
        (f"{base}/villages/v0/reports", other_office),
        (f"{base}/villages/v0/evaluation", other_county),
        (f"{base}/town-list", other_office),
        (f"{base}/team-proposals", other_office),
        (f"{base}/teams", other_office),
        (f"{base}/teams/team-1/on-duty", stranger),
        (f"{base}/teams/team-1/assessments", other_county),
        (f"{base}/teams/team-1/targets/{cid}-g1/progress", stranger),
        (f"{base}/teams/team-1/targets/{cid}-g1/completion", stranger),
    ]
    for path, outsider in refused:
        r = await client.post(path, headers=outsider, json=bad)
        assert r.status_code == 403, (path, r.text)
    # the same bodies from those whose jurisdiction it is: what is wrong with them
    allowed = [
        ("/campaigns", tiered.county),
        (f"{base}/villages", tiered.county),
        (f"{base}/candidates/v0/opinions", tiered.county),
        (f"{base}/villages/v0/problems", tiered.county),
        (f"{base}/teams", tiered.county),
        (f"{base}/teams/team-1/on-duty", member),
        (f"{base}/teams/team-1/targets/{cid}-g1/progress", member),
    ]
    for path, insider in allowed:
        r = await client.post(path, headers=insider, json=bad)
        assert r.status_code == 422 and r.json()["errors"], (path, r.text)
    r = await client.request(
        "DELETE", f"{base}/town-list/v0", headers=other_office, params={"reason": "\x00"}
    )
    assert r.status_code == 403


async def test_a_register_file_is_read_only_for_the_campaigns_county(
    client, settings, tiered: Round
) -> None:
    other_county = token(
        settings, sub="o", roles=["county_organisation_department"], county_id="elsewhere"
    )
    r = await client.post(
        f"/campaigns/{tiered.campaign_id}/villages.csv",
        content=b"village_id,name\r\x00\xff garbage",
        headers={**other_county, "Content-Type": "text/csv"},
    )
    assert r.status_code == 403 and r.json()["field"] == "campaign_id"


async def upload(client, r: Round, text: str, content_type: str = "text/csv") -> Any:
    return await client.post(
        f"/campaigns/{r.campaign_id}/villages.csv",
        content=text.encode(),
        headers={**r.county, "Content-Type": content_type},
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # a NUL cannot be stored (PostgreSQL's jsonb): it answered 500
        (
            HEAD + "v1,王\x00庄,村,t-east\n",
            "line 2, column name: holds the control character U+0000",
        ),
        (
            HEAD + "v1,王庄\x1b,村,t-east\n",
            "line 2, column name: holds the control character U+001B",
        ),
        (HEAD + "v1,\u200b,村,t-east\n", "line 2, column name: shows nothing"),
        # a bare CR (old Mac Excel) in the header line
        ("village_id,name\rkind,township_id\nv1,王庄,村,t-east\n", "line 1: unreadable CSV"),
        (HEAD + "v1,王庄,村,t-east\rv2,李庄,村,t-east\n", "line 2: unreadable CSV"),
        # a village id becomes part of a stream id: the same pattern as everywhere
        (HEAD + "v:1,王庄,村,t-east\n", "line 2, column village_id: 'v:1' is not a village id"),
        (HEAD + "v1,王庄,村,t-east,extra\n", "line 2: 5 values but the header has 4 columns"),
        ("village_id,name,kind,township,township_id\n", "unknown column 'township'"),
    ],
)
async def test_register_file_cells_follow_the_text_rules(client, settings, text, words) -> None:
    r = await opened(client, settings)
    answer = await upload(client, r, text)
    assert answer.status_code == 422 and answer.json()["field"] == "file", answer.text
    assert words in answer.json()["detail"]
    assert await client.app.state.runtime.store.version(campaign_stream_id(r.campaign_id)) == 1


async def test_a_register_file_may_come_as_a_form_upload_in_gb18030(client, settings) -> None:
    r = await opened(client, settings)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="v.csv"\r\n\r\n'
        + (HEAD + " v1 , 王庄 ,村,t-east\nv2,李庄,居,t-west\n").encode("gb18030")
        + b"\r\n--b--\r\n"
    )
    answer = await client.post(
        f"/campaigns/{r.campaign_id}/villages.csv",
        content=form,
        headers={**r.county, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert answer.status_code == 200 and answer.json()["registered"] == 2, answer.text
    stored = await campaign(client.app.state.runtime.store, r.campaign_id)
    assert [(v.village_id, v.name, v.kind) for v in stored.villages.values()] == [
        ("v1", "王庄", "village"),
        ("v2", "李庄", "community"),
    ]


async def test_the_flows_are_linked_in_the_openapi_document(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    def targets(path: str, method: str, status: str) -> set[str]:
        found = paths[path][method]["responses"][status].get("links", {})
        return {link["operationId"] for link in found.values()}

    assert {"register_villages", "assess", "rank", "tier"} <= targets("/campaigns", "post", "201")
    assert {"give_opinion", "confirm", "remove"} <= targets(
        "/campaigns/{campaign_id}/ranking", "get", "200"
    )
    assert {"list_problems", "set_targets", "village_card"} <= targets(
        "/campaigns/{campaign_id}/tiers", "post", "200"
    )
    assert {"team_card", "submit_on_duty", "assess_team"} <= targets(
        "/campaigns/{campaign_id}/teams", "post", "201"
    )
    assert {"task_card", "report_progress", "complete"} <= targets(
        "/campaigns/{campaign_id}/villages/{village_id}/targets", "post", "200"
    )
    assert {"task_card", "complete", "history"} <= targets(
        "/tasks/{task_id}/progress", "post", "200"
    )
    ids = {op["operationId"] for item in paths.values() for op in item.values()}
    for item in paths.values():
        for op in item.values():
            for response in op["responses"].values():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in ids, link


@pytest.mark.parametrize(
    ("settings_", "field"),
    [
        ({"areas": ["班子\x00建设"]}, "settings.areas.0"),
        ({"symptoms": [{"code": "a:b", "name": "x"}]}, "settings.symptoms.0.code"),
        # a due time a billion working days on: the calendar would work for ever
        ({"report_due_working_days": {"monthly_progress": 10**9}}, "settings"),
        ({"no_such_setting": 1}, "settings.no_such_setting"),
    ],
)
async def test_a_rounds_settings_are_bounded_like_any_field(
    client, settings, settings_, field
) -> None:
    county = token(settings, sub="org", roles=["county_organisation_department"], county_id="s")
    body = {
        "county_id": "s",
        "round_number": 1,
        "name": "整顿",
        "start_date": "2026-09-01",
        "budget_per_year_yuan": 1,
        "townships": [{"township_id": T1, "name": "东镇"}],
        "settings": settings_,
    }
    r = await client.post("/campaigns", headers=county, json=body)
    assert r.status_code == 422 and r.json()["field"].startswith(field), r.text


async def test_the_document_says_what_the_server_accepts(client) -> None:
    """Regressions of the contract fuzz (positive data refused): keys of the dictionaries,
    the eight common indicators, the register upload's file, pages."""
    document = (await client.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    for model, field in (("AssessmentIn", "symptoms"), ("OnDutyIn", "on_duty_days")):
        keys = schemas[model]["properties"][field]
        assert keys["propertyNames"]["pattern"] == ID_PATTERN, model
        assert "patternProperties" not in keys, model
    common = schemas["SheetIn"]["properties"]["common"]
    eight = [i.code for i in COMMON_INDICATORS]
    assert common["propertyNames"]["enum"] == eight and common["required"] == eight
    overrides = schemas["SettingsIn"]["properties"]["common_indicators"]["anyOf"][0]
    assert overrides["propertyNames"]["enum"] == eight
    upload = paths["/campaigns/{campaign_id}/villages.csv"]["post"]["requestBody"]
    assert upload["required"] is True
    assert upload["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    for path in ("/campaigns/{campaign_id}/patrons", "/campaigns/{campaign_id}/township-review"):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"limit", "offset"} <= names, path


async def test_a_round_renames_and_remarks_the_eight_common_indicators_by_code(
    client, settings
) -> None:
    county = token(settings, sub="org", roles=["county_organisation_department"], county_id="k")
    body = {
        "county_id": "k",
        "round_number": 1,
        "name": "薄弱村集中整顿",
        "start_date": "2026-09-01",
        "budget_per_year_yuan": 1000,
        "townships": [{"township_id": T1, "name": "东镇"}],
        "settings": {"common_indicators": {"ledger": {"name": "整顿台账规范", "max_points": 15}}},
    }
    r = await client.post("/campaigns", headers=county, json=body)
    assert r.status_code == 201, r.text
    rules = (await campaign(client.app.state.runtime.store, r.json()["campaign_id"])).rules()
    indicators = {i.code: (i.name, i.max_points) for i in rules.common_indicators}
    assert indicators["ledger"] == ("整顿台账规范", 15)
    assert indicators["on_duty"] == ("驻村在岗", 10) and len(indicators) == 8
    body["round_number"] = 2
    body["settings"] = {"common_indicators": {"made_up": {"name": "自定", "max_points": 5}}}
    r = await client.post("/campaigns", headers=county, json=body)
    assert r.status_code == 422 and r.json()["field"].startswith("settings.common_indicators")
