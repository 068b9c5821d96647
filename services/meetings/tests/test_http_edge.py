"""The meetings API at its edge: ids, jurisdiction before the body, bounded text and dates."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import pytest
import pytest_asyncio
from cunzhi_meetings.service import build_service
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.testing import eventually, every_page, running, token

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI)
ROSTER = [
    {"person_id": "p-lead", "name": "王书记", "role": "leadership"},
    {"person_id": "s-1", "name": "李书记", "role": "village_secretary", "village_id": "v1"},
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(settings):
    async with running(build_service(), settings, ManualClock(START)) as c:
        yield c


@pytest.fixture
def township() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def office(settings, township: str, **claims) -> dict[str, str]:
    return token(
        settings,
        sub=f"office-{township}",
        roles=["party_building_office"],
        township_ids=[township],
        **claims,
    )


def county(settings) -> dict[str, str]:
    return token(settings, sub="county", roles=["county_organisation_department"])


async def post_raw(client, path: str, headers: dict[str, str], body: str):
    return await client.post(
        path, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )


async def planned(client, settings, township: str) -> str:
    r = await client.post(
        f"/townships/{township}/roster", json=ROSTER, headers=office(settings, township)
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/townships/{township}/forums",
        json={"place": "镇政府"},
        headers=office(settings, township),
    )
    assert r.status_code == 201, r.text
    forum_id: str = r.json()["forum_id"]
    return forum_id


async def test_township_ids_follow_the_one_pattern(client, settings):
    for bad in ("t';drop table x;--", "t x", "t%00x", "-t", "t" * 65):
        headers = office(settings, bad)
        r = await client.post(f"/townships/{bad}/forums", json={"place": "x"}, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "township_id", (bad, r.text)
        for path in ("roster", "forums", "record", "attendance"):
            r = await client.get(f"/townships/{bad}/{path}", headers=county(settings))
            assert r.status_code == 422 and r.json()["field"] == "township_id", (bad, path)


async def test_jurisdiction_is_decided_before_the_body_is_read(client, settings, township):
    outsider = office(settings, f"{township}x")
    r = await client.post(
        f"/townships/{township}/forums", json={"place": "", "mode": "?"}, headers=outsider
    )
    assert r.status_code == 403 and r.json()["field"] == "township_id"
    # The roster file is not even parsed for someone outside the township.
    r = await client.post(
        f"/townships/{township}/roster.csv",
        content=b"person_id,name\r\x00\xff garbage",
        headers={**outsider, "Content-Type": "text/csv"},
    )
    assert r.status_code == 403
    forum_id = await planned(client, settings, township)
    r = await client.post(f"/forums/{forum_id}/postpone", json={"date": "x"}, headers=outsider)
    assert r.status_code == 403
    r = await client.post(f"/forums/{forum_id}/resolutions", json={}, headers=outsider)
    assert r.status_code == 403


async def test_a_roster_file_that_is_not_csv_is_refused_with_the_reason(client, settings, township):
    headers = {**office(settings, township), "Content-Type": "text/csv"}
    url = f"/townships/{township}/roster.csv"
    r = await client.post(url, content=b"person_id,name\rrole,village_id\n", headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    rows = "person_id,name,role,village_id,phone\ns-9,陈\x00书记,支部书记,v1,\n"
    r = await client.post(url, content=rows.encode(), headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "file" and "U+0000" in r.json()["detail"]
    rows = "person_id,name,role,village_id,phone\ns 9,陈书记,支部书记,v1,\n"
    r = await client.post(url, content=rows.encode(), headers=headers)
    assert r.status_code == 422 and "person_id" in r.json()["detail"]


async def test_a_roster_village_outside_the_token_is_refused(client, settings, township):
    headers = office(settings, township, village_ids=["v2"])
    r = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    assert r.status_code == 403 and "v1" in r.json()["detail"]
    headers = office(settings, township, village_ids=["v1", "v2"])
    r = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    assert r.status_code == 200


async def test_text_that_cannot_be_stored_or_seen_is_refused(client, settings, township):
    forum_id = await planned(client, settings, township)
    headers = office(settings, township)
    for bad in ("a\\u0000b", "a\\udc00", "\\u200b\\u202e"):
        r = await post_raw(
            client, f"/townships/{township}/forums", headers, f'{{"place": "{bad}"}}'
        )
        assert r.status_code == 422 and r.json()["field"] == "place", r.text
        r = await post_raw(
            client,
            f"/forums/{forum_id}/invitees",
            headers,
            f'{{"name": "{bad}", "role": "专家"}}',
        )
        assert r.status_code == 422 and r.json()["field"] == "name", r.text
        r = await post_raw(client, f"/forums/{forum_id}/cancel", headers, f'{{"reason": "{bad}"}}')
        assert r.status_code == 422 and r.json()["field"] == "reason", r.text
        r = await post_raw(
            client,
            f"/townships/{township}/roster",
            headers,
            json.dumps([{**ROSTER[0], "name": "X"}]).replace('"X"', f'"{bad}"'),
        )
        assert r.status_code == 422 and r.json()["field"] == "0.name", r.text
    r = await client.delete(
        f"/townships/{township}/roster/p-lead", params={"reason": "a\x00b"}, headers=headers
    )
    assert r.status_code == 422 and r.json()["field"] == "reason"


async def test_dates_stay_in_a_plausible_window(client, settings, township):
    forum_id = await planned(client, settings, township)
    headers = office(settings, township)
    for day in ("0001-01-01", "9999-12-31"):
        r = await client.post(
            f"/townships/{township}/forums", json={"place": "x", "date": day}, headers=headers
        )
        assert r.status_code == 422 and r.json()["field"] == "date"
        r = await client.post(
            f"/forums/{forum_id}/postpone", json={"date": day, "reason": "x"}, headers=headers
        )
        assert r.status_code == 422 and r.json()["field"] == "date"
        r = await client.post(
            "/villages/v1/speak-up-sessions",
            json={
                "township_id": township,
                "date": day,
                "attendance_count": 3,
                "hosted_by": "李书记",
            },
            headers=headers,
        )
        assert r.status_code == 422 and r.json()["field"] == "date"
    r = await client.get(f"/townships/{township}/forums", params={"offset": 2**63}, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "offset"


async def test_times_are_rfc3339_in_shanghai(client, settings, township):
    headers = office(settings, township)
    r = await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    r = await client.post(f"/townships/{township}/forums", json={"place": "x"}, headers=headers)
    assert r.status_code == 201 and r.json()["notice_due_at"].endswith("+08:00"), r.text
    forum_id = r.json()["forum_id"]

    async def record():
        r = await client.get(f"/forums/{forum_id}", headers=headers)
        return r.json() if r.status_code == 200 else None

    view = await eventually(record)
    times = [v for v in view.values() if isinstance(v, str) and re.match(r"\d{4}-.*T", v)]
    assert times and all(t.endswith("+08:00") for t in times), view


async def test_the_document_links_a_forum_from_plan_to_close(client):
    document = (await client.get("/openapi.json")).json()
    plan = document["paths"]["/townships/{township_id}/forums"]["post"]
    links = plan["responses"]["201"]["links"]
    assert {links[name]["operationId"] for name in links} == {
        "forum_record",
        "add_invitee",
        "issue_notice",
        "postpone",
        "cancel",
        "hold",
        "adopt_resolutions",
    }
    for item in document["paths"].values():
        for operation in item.values():
            if "security" in operation:
                assert {"401", "403", "422", "503"} <= set(operation["responses"])


async def test_a_forum_command_answers_the_fields_of_the_record_in_the_same_shapes(
    client, settings, township
):
    headers = office(settings, township)
    await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    plan = {"place": "某村", "mode": "field_visit", "host_unit": "党建办"}
    r = await client.post(f"/townships/{township}/forums", json=plan, headers=headers)
    answer = r.json()
    assert r.status_code == 201, answer

    async def record():
        r = await client.get(f"/forums/{answer['forum_id']}", headers=headers)
        return r.json() if r.status_code == 200 else None

    view = await eventually(record)
    shared = set(answer) - {"version"}
    assert shared <= set(view), shared - set(view)
    assert {k: answer[k] for k in shared} == {k: view[k] for k in shared}


async def test_the_document_says_what_the_server_accepts(client, settings, township):
    document = (await client.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    upload = paths["/townships/{township_id}/roster.csv"]["post"]["requestBody"]
    assert upload["required"] is True
    assert upload["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    assert upload["content"]["text/csv"]["schema"]["minLength"] == 1
    assert schemas["ContestIn"]["properties"]["ranking"]["uniqueItems"] is True
    # The year to plan: this year or next on the service's clock, as the server decides.
    year = schemas["PlanYear"]["properties"]["year"]
    assert (year["minimum"], year["maximum"]) == (START.year, START.year + 1)
    headers = office(settings, township)
    await client.post(f"/townships/{township}/roster", json=ROSTER, headers=headers)
    url = f"/townships/{township}/forums/year"
    r = await client.post(url, json={"year": START.year - 1, "place": "会议室"}, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "year"
    r = await client.post(url, json={"year": START.year + 1, "place": "会议室"}, headers=headers)
    assert r.status_code == 201, r.text
    for path in ("/townships/{township_id}/roster", "/townships/{township_id}/attendance"):
        names = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {"limit", "offset"} <= names, path


async def test_a_roster_of_more_than_one_page_is_read_whole_by_following_pages(
    client, settings, township
):
    headers = office(settings, township)
    members = [
        {"person_id": f"s-{i}", "name": f"书记{i}", "role": "village_secretary", "village_id": "v1"}
        for i in range(5)
    ]
    r = await client.post(f"/townships/{township}/roster", json=members, headers=headers)
    assert r.status_code == 200, r.text

    async def first_page():
        r = await client.get(f"/townships/{township}/roster?limit=2", headers=headers)
        return r.json() if r.json()["total"] == 5 else None

    page = await eventually(first_page)
    assert page is not None and len(page["items"]) == 2 and page["limit"] == 2
    whole = await every_page(client, f"/townships/{township}/roster", headers, limit=2)
    assert [m["person_id"] for m in whole] == [f"s-{i}" for i in range(5)]
    r = await client.get(f"/townships/{township}/roster?limit=501", headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "limit"
