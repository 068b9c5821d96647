"""Topics through HTTP → event store → Kafka → read models, on the real embedded stack."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cunzhi_topics.domain import Category, categories_stream_id, topic_stream_id

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow


async def test_submit_revise_withdraw(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    wang = kit.secretary(town, village)

    topic_id = await kit.submit(town, forum, wang, village_ids=[village], topic_id=kit.fresh("t"))
    topic = await kit.topic(topic_id, lambda t: t["state"] == "submitted")
    assert topic["forum_id"] == forum and topic["village_ids"] == [village]
    assert topic["submitter_role"] == "village_secretary"

    # A retry with the same id is answered with the same topic and stores nothing more.
    assert await kit.submit(town, forum, wang, village_ids=[village], topic_id=topic_id) == topic_id
    assert await kit.version(topic_stream_id(topic_id)) == 1

    r = await kit.client.patch(
        f"/topics/{topic_id}", json={"title": "流动党员纳入网格管理"}, headers=wang
    )
    assert r.status_code == 200, r.text
    await kit.topic(topic_id, lambda t: t["title"] == "流动党员纳入网格管理")

    r = await kit.post(f"/topics/{topic_id}/withdraw", wang, {"reason": "已在村内解决"})
    assert r.status_code == 200, r.text
    topic = await kit.topic(topic_id, lambda t: t["state"] == "withdrawn")
    assert topic["reason"] == "已在村内解决"

    r = await kit.client.patch(f"/topics/{topic_id}", json={"title": "再改"}, headers=wang)
    assert r.status_code == 409
    assert "withdrawn" in r.json()["detail"]
    assert await kit.version(topic_stream_id(topic_id)) == 3

    history = await kit.until(
        f"/villages/{village}/history", lambda h: h["total"] == 3, kit.secretary(town, village)
    )
    assert [h["event"] for h in history["items"]] == [
        "TopicWithdrawn",
        "TopicRevised",
        "TopicSubmitted",
    ]
    assert history["items"][0]["title"] == "流动党员纳入网格管理"


async def test_refusals_say_why_and_store_nothing(kit: Kit) -> None:
    town, other_town = kit.fresh("town"), kit.fresh("town")
    v1, v2 = kit.fresh("v"), kit.fresh("v")
    forum = await kit.open_call(town)
    other_forum = await kit.open_call(other_town)
    late_forum = await kit.schedule(town, kit.forum_date(open_now=True) - dt.timedelta(days=6))
    wang = kit.secretary(town, v1)
    topic_id = await kit.submit(town, forum, wang, village_ids=[v1])
    before = await kit.events_of(town), await kit.events_of(other_town)

    # Another village only: forbidden, and the field says where.
    r = await kit.post(
        f"/townships/{town}/calls/{forum}/topics",
        wang,
        {"title": "x", "description": "y", "category": "disputes_petitions", "village_ids": [v2]},
    )
    assert r.status_code == 403
    assert v1 in r.json()["detail"] and r.json()["field"] == "village_ids"

    # Another township's call.
    r = await kit.post(
        f"/townships/{other_town}/calls/{other_forum}/topics",
        wang,
        {"title": "x", "description": "y", "category": "disputes_petitions", "village_ids": [v1]},
    )
    assert r.status_code == 403
    assert other_town in r.json()["detail"]

    # A call whose deadline has passed: refused with the deadline, not carried over.
    r = await kit.post(
        f"/townships/{town}/calls/{late_forum}/topics",
        wang,
        {"title": "x", "description": "y", "category": "disputes_petitions", "village_ids": [v1]},
    )
    assert r.status_code == 409
    assert "closed at" in r.json()["detail"] and "next call" in r.json()["detail"]

    # Invalid input: 422 naming the field.
    r = await kit.post(
        f"/townships/{town}/calls/{forum}/topics",
        wang,
        {"title": "", "description": "y", "category": "disputes_petitions", "village_ids": [v1]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "title"
    r = await kit.post(
        f"/townships/{town}/calls/{forum}/topics",
        wang,
        {"title": "x", "description": "y", "category": "weather", "village_ids": [v1]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "category" and "village_governance" in r.json()["detail"]

    # Consolidation is the office's, and only its own township's.
    r = await kit.post(f"/topics/{topic_id}/shortlist", wang)
    assert r.status_code == 403 and "party_building_office" in r.json()["detail"]
    r = await kit.post(f"/topics/{topic_id}/shortlist", kit.office(other_town))
    assert r.status_code == 403 and town in r.json()["detail"]

    # Someone else's topic cannot be withdrawn.
    r = await kit.post(f"/topics/{topic_id}/withdraw", kit.secretary(town, v1), {})
    assert r.status_code == 403

    assert (await kit.events_of(town), await kit.events_of(other_town)) == before
    assert await kit.version(topic_stream_id(topic_id)) == 1


async def test_merge_keeps_every_source_and_supporter(kit: Kit) -> None:
    town, other_town = kit.fresh("town"), kit.fresh("town")
    v1, v2, v3, v4 = (kit.fresh("v") for _ in range(4))
    forum = await kit.open_call(town)
    wang = kit.secretary(town, v1)
    a = await kit.submit(town, forum, wang, village_ids=[v1])
    b = await kit.submit(town, forum, kit.secretary(town, v2), village_ids=[v2])
    head = kit.as_(["station_head"], town, station_ids=["sifasuo"], sub="head")  # 司法所
    c = await kit.submit(town, forum, head, village_ids=[v3], station_id="sifasuo")
    zhao = kit.secretary(town, v4, sub=kit.fresh("zhao"))
    r = await kit.post(f"/topics/{b}/support", zhao, {})
    assert r.status_code == 200, r.text

    office = kit.office(town, other_town)
    r = await kit.post("/topics/merge", office, {"survivor_id": a, "merged_topic_ids": [b, c]})
    assert r.status_code == 200, r.text

    survivor = await kit.topic(a, lambda t: len(t["sources"]) == 3)
    assert {s["topic_id"] for s in survivor["sources"]} == {a, b, c}
    assert {s["submitter_role"] for s in survivor["sources"]} == {
        "village_secretary",
        "station_head",
    }
    assert [s["village_id"] for s in survivor["supporters"]] == [v4]
    assert set(survivor["village_ids"]) == {v1, v2, v3}
    assert survivor["merged_topic_ids"] == [b, c]
    for merged in (b, c):
        gone = await kit.topic(merged, lambda t: t["state"] == "merged")
        assert gone["merged_into"] == a

    # The submitter can no longer change what others' submissions went into.
    r = await kit.client.patch(f"/topics/{a}", json={"title": "改"}, headers=wang)
    assert r.status_code == 409 and "party-building office" in r.json()["detail"]

    # Topics of two townships do not merge, and nothing is stored.
    other_forum = await kit.open_call(other_town)
    vx = kit.fresh("v")
    x = await kit.submit(other_town, other_forum, kit.secretary(other_town, vx), village_ids=[vx])
    versions = [await kit.version(topic_stream_id(t)) for t in (a, x)]
    r = await kit.post("/topics/merge", office, {"survivor_id": a, "merged_topic_ids": [x]})
    assert r.status_code == 422
    assert r.json()["field"] == "merged_topic_ids" and "same township" in r.json()["detail"]
    assert [await kit.version(topic_stream_id(t)) for t in (a, x)] == versions


async def test_merging_another_townships_topic_is_forbidden_and_tells_nothing_of_it(
    kit: Kit,
) -> None:
    town, other_town, v, vx = kit.fresh("town"), kit.fresh("town"), kit.fresh("v"), kit.fresh("v")
    a = await kit.submit(town, await kit.open_call(town), kit.secretary(town, v), village_ids=[v])
    secret = "外乡镇的保密议题"
    x = await kit.submit(
        other_town, await kit.open_call(other_town), kit.secretary(other_town, vx),
        village_ids=[vx], title=secret,
    )  # fmt: skip
    versions = [await kit.version(topic_stream_id(t)) for t in (a, x)]

    r = await kit.post(
        "/topics/merge", kit.office(town), {"survivor_id": a, "merged_topic_ids": [x]}
    )

    assert r.status_code == 403, r.text
    assert r.json()["field"] == "merged_topic_ids"
    assert other_town not in r.text and secret not in r.text
    assert [await kit.version(topic_stream_id(t)) for t in (a, x)] == versions


async def test_a_submission_retried_with_its_idempotency_key_is_stored_once(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    url = f"/townships/{town}/calls/{forum}/topics"
    body = {
        "title": "2026-01-01T00:00:00Z",  # text that looks like a time stays as written
        "description": "外出务工党员长期不参加组织生活",
        "category": "member_management",
        "village_ids": [village],
    }
    wang = kit.secretary(town, village)
    keyed = {**wang, "Idempotency-Key": kit.fresh("submission")}
    before = await kit.events_of(town)

    first = await kit.client.post(url, json=body, headers=keyed)
    assert first.status_code == 201, first.text
    again = await kit.client.post(url, json=body, headers=keyed)
    assert (again.status_code, again.content) == (201, first.content)
    assert await kit.events_of(town) == before + 1
    topic = await kit.topic(first.json()["topic_id"], bool)
    assert topic["title"] == "2026-01-01T00:00:00Z"

    r = await kit.client.post(url, json={**body, "title": "另一个议题"}, headers=keyed)
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key", r.text
    assert await kit.events_of(town) == before + 1

    # Without the key each call is a submission, as before.
    for _ in range(2):
        assert (await kit.client.post(url, json=body, headers=wang)).status_code == 201
    assert await kit.events_of(town) == before + 3


async def test_shortlist_select_dispose_and_carry_over(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    wang = kit.secretary(town, village)
    a, b, c, d, e = [
        await kit.submit(town, forum, wang, village_ids=[village], title=f"议题{i}")
        for i in range(5)
    ]
    assert (await kit.post(f"/topics/{e}/withdraw", wang, {})).status_code == 200
    office, committee = kit.office(town), kit.committee(town)
    r = await kit.post(f"/topics/{b}/recategorise", office, {"category": "collective_economy"})
    assert r.status_code == 200, r.text
    for topic_id in (a, b):
        assert (await kit.post(f"/topics/{topic_id}/shortlist", office)).status_code == 200
    await kit.topic(
        b, lambda t: (t["state"], t["category"]) == ("shortlisted", "collective_economy")
    )
    selection = f"/townships/{town}/calls/{forum}/selection"
    dispositions = {
        b: {"kind": "defer"},
        c: {"kind": "refer", "department": "乡司法所"},
        d: {"kind": "decline", "reason": "属个人诉求"},
    }

    # Not before the deadline, so that no submission is left out.
    r = await kit.post(selection, committee, {"topic_id": a, "dispositions": dispositions})
    assert r.status_code == 409 and "open until" in r.json()["detail"]

    times = await kit.call_times(town, forum)
    kit.clock.set(times.closes_at)
    await kit.until(f"/townships/{town}/calls/{forum}", lambda c: c["state"] == "closed")
    versions = {t: await kit.version(topic_stream_id(t)) for t in (a, b, c, d, e)}

    r = await kit.post(selection, committee, {"topic_id": e, "dispositions": {}})
    assert r.status_code == 409 and "withdrawn" in r.json()["detail"]
    r = await kit.post(
        selection, committee, {"topic_id": a, "dispositions": {b: {"kind": "defer"}}}
    )
    assert r.status_code == 422 and r.json()["field"] == "dispositions"
    assert c in r.json()["detail"] and d in r.json()["detail"]
    r = await kit.post(selection, office, {"topic_id": a, "dispositions": dispositions})
    assert r.status_code == 403
    assert {t: await kit.version(topic_stream_id(t)) for t in versions} == versions

    r = await kit.post(selection, committee, {"topic_id": a, "dispositions": dispositions})
    assert r.status_code == 200, r.text
    call = await kit.until(f"/townships/{town}/calls/{forum}", lambda c: c["state"] == "decided")
    assert call["selected_topic_id"] == a
    states = {t: (await kit.topic(t, lambda x: x["state"] != "submitted"))["state"] for t in (c, d)}
    assert states == {c: "referred", d: "declined"}
    assert (await kit.topic(c, bool))["department"] == "乡司法所"
    assert (await kit.topic(d, bool))["reason"] == "属个人诉求"

    r = await kit.post(selection, committee, {"topic_id": b, "dispositions": {}})
    assert r.status_code == 409 and "exactly one topic" in r.json()["detail"]

    # Meetings learns the forum's topic from TopicSelected.
    (selected,) = await kit.published("cunzhi.topics.TopicSelected", topic_id=a)
    assert selected["forum_id"] == forum and selected["township_id"] == town
    assert selected["title"] == "议题0"

    # The deferred topic goes into the township's next call when it opens.
    next_forum = await kit.schedule(town, kit.forum_date(open_now=False))
    await kit.topic(b, lambda t: t["state"] == "deferred")
    kit.clock.set((await kit.call_times(town, next_forum)).opens_at)
    carried = await kit.topic(b, lambda t: t["forum_id"] == next_forum)
    assert carried["state"] == "submitted" and carried["carried_over_from"] == [forum]

    # The department the topic was referred to answers; the submitter sees the answer.
    sifa = kit.as_(["county_department"], department_ids=["乡司法所"])
    r = await kit.client.get(f"/topics/{c}", headers=sifa)
    assert r.status_code == 200, "a department reads the topics referred to it"
    answer = f"/topics/{c}/referral-answer"
    elsewhere = kit.as_(["county_department"], department_ids=["县信访局"])
    r = await kit.post(answer, elsewhere, {"answer": "accepted"})
    assert r.status_code == 403 and "乡司法所" in r.json()["detail"]
    r = await kit.post(answer, sifa, {"answer": "done"})
    assert r.status_code == 422 and r.json()["field"] == "note"
    assert (await kit.post(answer, sifa, {"answer": "accepted"})).status_code == 200
    r = await kit.post(answer, sifa, {"answer": "done", "note": "已调解，双方签订协议"})
    assert r.status_code == 200, r.text
    done = await kit.topic(c, lambda t: t["referral_answer"] == "done")
    assert (done["state"], done["referral_note"]) == ("referred", "已调解，双方签订协议")
    timeline = await kit.until(f"/topics/{c}/timeline", lambda p: p["total"] == 4, wang)
    assert timeline["items"][-1]["description"] == "乡司法所答复：已办结（已调解，双方签订协议）"
    assert (await kit.post(answer, sifa, {"answer": "accepted"})).status_code == 409


async def test_queries_filter_paginate_and_count(kit: Kit) -> None:
    town, other_town = kit.fresh("town"), kit.fresh("town")
    v1, v2 = kit.fresh("v"), kit.fresh("v")
    forum = await kit.open_call(town)
    wang, li = kit.secretary(town, v1), kit.secretary(town, v2)
    ids = [await kit.submit(town, forum, wang, village_ids=[v1]) for _ in range(3)]
    ids += [
        await kit.submit(town, forum, li, village_ids=[v2], category="collective_economy")
        for _ in range(2)
    ]
    assert (await kit.post(f"/topics/{ids[0]}/shortlist", kit.office(town))).status_code == 200
    await kit.topic(ids[0], lambda t: t["state"] == "shortlisted")
    await kit.topic(ids[-1], bool)
    mine = kit.secretary(town, v1)

    first = await kit.until(f"/topics?township_id={town}&limit=2", lambda p: p["total"] == 5, mine)
    last = await kit.until(f"/topics?township_id={town}&limit=2&offset=4", bool, mine)
    past = await kit.until(f"/topics?township_id={town}&offset=9", bool, mine)
    assert (len(first["items"]), len(last["items"]), past["items"], past["total"]) == (2, 1, [], 5)
    assert {t["topic_id"] for t in first["items"]}.isdisjoint(t["topic_id"] for t in last["items"])

    async def ids_of(query: str) -> set[str]:
        page = await kit.until(f"/topics?township_id={town}&{query}", bool, mine)
        return {t["topic_id"] for t in page["items"]}

    assert await ids_of("category=collective_economy") == set(ids[3:])
    assert await ids_of(f"village_id={v2}") == set(ids[3:])
    assert await ids_of("state=shortlisted") == {ids[0]}
    assert await ids_of(f"forum_id={forum}&state=submitted&category=member_management") == set(
        ids[1:3]
    )
    r = await kit.client.get("/topics?state=pondering", headers=mine)
    assert r.status_code == 422

    # Others read only their own township; without a filter they see none of this one.
    stranger = kit.secretary(other_town, kit.fresh("v"))
    r = await kit.client.get(f"/topics?township_id={town}", headers=stranger)
    assert r.status_code == 403
    assert town not in {
        t["township_id"]
        for t in (await kit.client.get("/topics", headers=stranger)).json()["items"]
    }
    assert (await kit.client.get(f"/topics/{ids[0]}", headers=stranger)).status_code == 403

    pipeline = await kit.until(f"/townships/{town}/pipeline", bool, mine)
    (cycle,) = pipeline["items"]
    assert cycle["forum_id"] == forum and cycle["state"] == "open"
    assert cycle["topics_by_state"] == {"submitted": 4, "shortlisted": 1}

    openapi = (await kit.client.get("/openapi.json")).json()
    assert {"/topics", "/townships/{township_id}/pipeline", "/county/overview"} <= set(
        openapi["paths"]
    )

    r = await kit.client.get("/county/overview", headers=kit.office(town))
    assert r.status_code == 403
    overview = await kit.until("/county/overview?limit=500", lambda p: p["total"] >= 1)
    (row,) = [t for t in overview["items"] if t["township_id"] == town]
    assert row["topics_by_state"] == {"submitted": 4, "shortlisted": 1}
    assert row["latest_call"]["forum_id"] == forum


async def test_a_township_adds_a_category_its_own_topics_may_use(kit: Kit) -> None:
    town, other_town = kit.fresh("town"), kit.fresh("town")
    village, other_village = kit.fresh("v"), kit.fresh("v")
    forum, other_forum = await kit.open_call(town), await kit.open_call(other_town)
    wang, zhou = kit.secretary(town, village), kit.secretary(other_town, other_village)
    office = kit.office(town)
    path = f"/townships/{town}/categories"
    certificates = {"code": "mobile_member_certificates", "label": "流动党员活动证"}
    before = await kit.events_of(town), await kit.events_of(other_town)

    # Adding is the office's, and only for its own township; codes are new snake_case ones.
    r = await kit.post(path, wang, certificates)
    assert r.status_code == 403 and "party_building_office" in r.json()["detail"]
    r = await kit.post(path, kit.office(other_town), certificates)
    assert r.status_code == 403 and r.json()["field"] == "township_id"
    r = await kit.post(path, office, {"code": "member_management", "label": "党员管理"})
    assert r.status_code == 422 and r.json()["field"] == "code"
    assert "built-in" in r.json()["detail"]
    r = await kit.post(path, office, {**certificates, "code": "Mobile-Members"})
    assert r.status_code == 422 and r.json()["field"] == "code"
    assert (await kit.events_of(town), await kit.events_of(other_town)) == before

    r = await kit.post(path, office, certificates)
    assert r.status_code == 201, r.text
    assert r.json() == {"township_id": town, "code": "mobile_member_certificates"}
    # A retry stores nothing more; another label for the same code is refused.
    assert (await kit.post(path, office, certificates)).status_code == 201
    r = await kit.post(path, office, {**certificates, "label": "党员证"})
    assert r.status_code == 409 and r.json()["field"] == "code"
    assert await kit.version(categories_stream_id(town)) == 1

    listed = await kit.until(
        f"/categories?township_id={town}", lambda c: len(c) == len(Category) + 1, wang
    )
    assert listed[-1] == {**certificates, "own": True}
    assert [c["code"] for c in listed if not c["own"]] == [c.value for c in Category]
    r = await kit.client.get("/categories", headers=zhou)
    assert r.status_code == 200 and len(r.json()) == len(Category)
    assert (
        await kit.client.get(f"/categories?township_id={town}", headers=zhou)
    ).status_code == 403

    # The township's topics use it; another township's do not have it.
    topic_id = await kit.submit(
        town, forum, wang, village_ids=[village], category="mobile_member_certificates"
    )
    await kit.topic(topic_id, lambda t: t["category"] == "mobile_member_certificates")
    other_before = await kit.events_of(other_town)
    r = await kit.post(
        f"/townships/{other_town}/calls/{other_forum}/topics",
        zhou,
        {
            "title": "流动党员活动证发放",
            "description": "外出党员未领活动证",
            "category": "mobile_member_certificates",
            "village_ids": [other_village],
        },
    )
    assert r.status_code == 422 and r.json()["field"] == "category"
    assert await kit.events_of(other_town) == other_before

    # The office re-categorises into it too.
    moved = await kit.submit(town, forum, wang, village_ids=[village])
    r = await kit.post(f"/topics/{moved}/recategorise", office, {"category": certificates["code"]})
    assert r.status_code == 200, r.text
    await kit.topic(moved, lambda t: t["category"] == "mobile_member_certificates")


async def test_a_topic_submitted_at_the_last_moment_still_needs_a_disposition(kit: Kit) -> None:
    """The committee's selection sees every topic of the call from the event store, even one
    the read model has not applied yet."""
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    wang = kit.secretary(town, village)
    chosen = await kit.submit(town, forum, wang, village_ids=[village], title="早提交的议题")
    assert (await kit.post(f"/topics/{chosen}/shortlist", kit.office(town))).status_code == 200
    times = await kit.call_times(town, forum)
    kit.clock.set(times.closes_at - dt.timedelta(seconds=1))
    late = await kit.submit(town, forum, wang, village_ids=[village], title="最后一刻的议题")
    kit.clock.set(times.closes_at)

    selection = f"/townships/{town}/calls/{forum}/selection"
    r = await kit.post(selection, kit.committee(town), {"topic_id": chosen, "dispositions": {}})
    assert r.status_code == 422 and r.json()["field"] == "dispositions"
    assert late in r.json()["detail"]


async def test_a_township_station_submits_a_topic_about_no_particular_village(kit: Kit) -> None:
    """站所 (农经站, 司法所…) are asked for topics too; theirs are township-wide."""
    town = kit.fresh("town")
    forum = await kit.open_call(town)
    head = kit.as_(["station_head"], town, station_ids=["caizhengsuo"], sub=kit.fresh("head"))
    topic_id = await kit.submit(
        town, forum, head, station_id="caizhengsuo", title="村级财务公开不规范"
    )
    topic = await kit.topic(topic_id, bool)
    assert topic["village_ids"] == []
    assert topic["sources"][0]["station_id"] == "caizhengsuo"
    r = await kit.client.post(
        f"/townships/{town}/calls/{forum}/topics",
        json={"title": "t", "description": "d", "category": "village_governance"},
        headers=kit.secretary(town, kit.fresh("v")),
    )
    assert r.status_code == 422 and r.json()["field"] == "village_ids"
    r = await kit.client.post(
        f"/townships/{town}/calls/{forum}/topics",
        json={
            "title": "t",
            "description": "d",
            "category": "village_governance",
            "station_id": "nongjingzhan",
        },
        headers=head,
    )
    assert r.status_code == 403 and "nongjingzhan" in r.json()["detail"]
