"""The topics API at its edge: client-chosen ids, bounded inputs, one error body, its document."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import pytest
from cunzhi_platform.edge import ID_PATTERN
from cunzhi_topics.domain import issue_stream_id, topic_stream_id

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow

DRAFT = {"title": "流动党员管理", "description": "外出务工党员", "category": "member_management"}
ISSUE = {"title": "路灯坏了", "description": "村东头路灯不亮"}


async def test_a_reused_topic_id_is_a_retry_only_with_the_same_content(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    wang = kit.secretary(town, village)
    url = f"/townships/{town}/calls/{forum}/topics"
    chosen = kit.fresh("topic")
    body = {**DRAFT, "topic_id": chosen, "village_ids": [village]}

    assert (await kit.post(url, wang, body)).json()["topic_id"] == chosen
    r = await kit.post(url, wang, body)
    assert r.status_code == 201 and r.json()["topic_id"] == chosen
    r = await kit.post(url, wang, {**body, "title": "另一个议题"})
    assert r.status_code == 409 and r.json()["field"] == "topic_id"
    assert "already used with other content" in r.json()["detail"]
    assert await kit.version(topic_stream_id(chosen)) == 1
    topic = await kit.topic(chosen, bool)
    assert topic["title"] == DRAFT["title"]

    # Two instances racing on one new id: the content decides, whoever wins the append.
    raced = kit.fresh("topic")
    same = {**body, "topic_id": raced}
    answers = await asyncio.gather(kit.post(url, wang, same), kit.post(url, wang, same))
    assert [r.status_code for r in answers] == [201, 201]
    other = kit.fresh("topic")
    answers = await asyncio.gather(
        kit.post(url, wang, {**body, "topic_id": other}),
        kit.post(url, wang, {**body, "topic_id": other, "description": "不同的内容"}),
    )
    assert sorted(r.status_code for r in answers) == [201, 409]
    assert await kit.version(topic_stream_id(other)) == 1


async def test_a_reused_issue_id_is_a_retry_only_with_the_same_content(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    chosen = kit.fresh("issue")
    url = f"/villages/{village}/issues"
    body = {**ISSUE, "issue_id": chosen}
    assert (await kit.post(url, cadre, body)).status_code == 201
    r = await kit.post(url, cadre, body)
    assert r.status_code == 201 and r.json() == {"issue_id": chosen}
    r = await kit.post(url, cadre, {**body, "description": "村西头"})
    assert r.status_code == 409 and r.json()["field"] == "issue_id"
    assert await kit.version(issue_stream_id(chosen)) == 1


async def test_text_that_cannot_be_stored_or_seen_is_refused(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    forum = await kit.open_call(town)
    before = await kit.events_of(town)

    async def post_raw(path: str, headers: dict[str, str], body: str) -> tuple[int, dict]:
        r = await kit.client.post(
            path,
            content=body.encode(),
            headers={**headers, "Content-Type": "application/json"},
        )
        return r.status_code, r.json()

    for bad in ("a\\u0000b", "a\\ud800b", "\\u202e\\u200b"):
        status, problem = await post_raw(
            f"/villages/{village}/issues",
            cadre,
            json.dumps({**ISSUE, "title": "X"}).replace('"X"', f'"{bad}"'),
        )
        assert (status, problem["field"]) == (422, "title"), problem
        status, problem = await post_raw(
            f"/townships/{town}/calls/{forum}/topics",
            cadre,
            json.dumps({**DRAFT, "description": "X", "village_ids": [village]}).replace(
                '"X"', f'"{bad}"'
            ),
        )
        assert (status, problem["field"]) == (422, "description"), problem
        status, problem = await post_raw(
            f"/townships/{town}/categories",
            kit.office(town),
            json.dumps({"code": "roads", "label": "X"}).replace('"X"', f'"{bad}"'),
        )
        assert (status, problem["field"]) == (422, "label"), problem
    assert await kit.events_of(town) == before  # nothing stored

    # Normalised: what is stored is NFC.
    r = await kit.post(f"/villages/{village}/issues", cadre, {**ISSUE, "title": "Cafe\u0301 路灯"})
    issue = await kit.until(f"/issues/{r.json()['issue_id']}", bool)
    assert issue["title"] == "Caf\u00e9 路灯"


async def test_dates_offsets_and_query_strings_are_bounded(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    for day in ("0001-01-01", "1999-12-31", "9999-12-31"):
        r = await kit.post(f"/villages/{village}/issues", cadre, {**ISSUE, "raised_on": day})
        assert r.status_code == 422 and r.json()["field"] == "raised_on"

    county = kit.county()
    for path in (
        "/topics",
        "/county/overview",
        f"/townships/{town}/pipeline",
        f"/villages/{village}/claims",
        f"/villages/{village}/history",
        "/party-members/p1/claims",
    ):
        r = await kit.client.get(path, params={"offset": 2**63}, headers=county)
        assert r.status_code == 422 and r.json()["field"] == "offset", (path, r.text)
        r = await kit.client.get(path, params={"offset": 1_000_000}, headers=county)
        assert r.status_code == 200, (path, r.text)
    for params in ({"category": "a\x00b"}, {"village_id": "v\x00"}, {"township_id": "t'--"}):
        r = await kit.client.get("/topics", params=params, headers=county)
        assert r.status_code == 422 and r.json()["field"] == next(iter(params))


async def test_a_body_error_outside_ones_jurisdiction_answers_403(kit: Kit) -> None:
    town, other, village = kit.fresh("town"), kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(other)
    cadre = kit.secretary(town, village)
    bad = {"title": "", "colour": "red"}
    r = await kit.post(f"/townships/{other}/calls/{forum}/topics", cadre, bad)
    assert r.status_code == 403 and r.json()["field"] == "township_id"
    r = await kit.post(f"/villages/{kit.fresh('v')}/issues", cadre, bad)
    assert r.status_code == 403 and r.json()["field"] == "village_id"
    r = await kit.post(f"/townships/{other}/calls/{forum}/selection", kit.committee(town), bad)
    assert r.status_code == 403
    r = await kit.post("/topics/merge", cadre, bad)
    assert r.status_code == 403 and "party_building_office" in r.json()["detail"]


async def test_times_are_rfc3339_in_shanghai(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    topic_id = await kit.submit(town, forum, kit.secretary(town, village), village_ids=[village])
    topic = await kit.topic(topic_id, bool)
    assert topic["submitted_at"].endswith("+08:00"), topic
    call = (await kit.client.get(f"/townships/{town}/calls/{forum}", headers=kit.county())).json()
    times = [v for v in call.values() if isinstance(v, str) and "T" in v and ":" in v]
    assert times and all(t.endswith("+08:00") for t in times), call


async def test_the_document_names_every_status_and_links_the_steps(kit: Kit) -> None:
    document = (await kit.client.get("/openapi.json")).json()
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "security" not in operation:
                continue
            responses = operation["responses"]
            assert {"401", "403", "422", "503"} <= set(responses), (method, path)
            if method != "get":
                assert "409" in responses, (method, path)
            for status in ("401", "403", "422", "503"):
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == problem, (method, path, status)
    submit = document["paths"]["/townships/{township_id}/calls/{forum_id}/topics"]["post"]
    links = submit["responses"]["201"]["links"]
    assert links["read"] == {
        "operationId": "get_topic",
        "parameters": {"topic_id": "$response.body#/topic_id"},
    }
    operation_ids = {
        op["operationId"] for item in document["paths"].values() for op in item.values()
    }
    raise_issue = document["paths"]["/villages/{village_id}/issues"]["post"]
    assert set(raise_issue["responses"]["201"]["links"]) >= {"read", "claim", "promote"}
    linked = {
        link["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        for answer in op["responses"].values()
        for link in answer.get("links", {}).values()
    }
    assert linked <= operation_ids
    assert {"get_topic", "shortlist_topic", "claim_issue", "promote_issue"} <= operation_ids


async def test_a_repeated_promotion_is_a_retry_only_with_the_same_content(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    issue_id = (await kit.post(f"/villages/{village}/issues", cadre, ISSUE)).json()["issue_id"]
    forum = await kit.open_call(town)
    await kit.until(f"/townships/{town}/calls/{forum}", lambda c: c["state"] == "open")
    chosen = kit.fresh("topic")
    body = {"category": "collective_economy", "topic_id": chosen}
    url = f"/issues/{issue_id}/promote"
    r = await kit.post(url, cadre, body)
    assert r.status_code == 201, r.text
    r = await kit.post(url, cadre, body)
    assert r.status_code == 201 and r.json() == {"topic_id": chosen, "forum_id": forum}
    r = await kit.post(url, cadre, {**body, "category": "member_management"})
    assert r.status_code == 409 and r.json()["field"] == "topic_id"
    assert await kit.version(topic_stream_id(chosen)) == 1


async def test_the_document_says_what_the_server_accepts(kit: Kit) -> None:
    """Regressions of the contract fuzz (positive data refused): keys of a selection's
    dispositions and topics merged once each, as the server checks them."""
    schemas = (await kit.client.get("/openapi.json")).json()["components"]["schemas"]
    dispositions = schemas["Selection"]["properties"]["dispositions"]
    assert dispositions["propertyNames"]["pattern"] == ID_PATTERN
    assert "patternProperties" not in dispositions  # it left every other key free
    assert schemas["Merge"]["properties"]["merged_topic_ids"]["uniqueItems"] is True
