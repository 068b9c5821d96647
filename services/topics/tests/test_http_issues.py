"""Speak-up issues (逢五说事), claims (领办) and promotion to a topic, through HTTP."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from cunzhi_meetings.events import SpeakUpSessionHeld
from cunzhi_platform.clock import is_speak_up_day, next_speak_up_day, today
from cunzhi_topics.domain import issue_stream_id

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow


def ordinary_day(kit: Kit) -> dt.date:
    """The latest day up to today that is not a lunar 5th, 15th or 25th."""
    day = today(kit.clock)
    while is_speak_up_day(day):
        day -= dt.timedelta(days=1)
    return day


async def test_issue_raised_claimed_reported_and_closed(kit: Kit) -> None:
    town, village, elsewhere = kit.fresh("town"), kit.fresh("v"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    raised_on = ordinary_day(kit)
    body = {"title": "路灯坏了", "description": "村东头路灯不亮", "raised_on": str(raised_on)}

    r = await kit.post(f"/villages/{village}/issues", cadre, {**body, "title": " "})
    assert r.status_code == 422 and r.json()["field"] == "title"
    r = await kit.post(f"/villages/{elsewhere}/issues", cadre, body)
    assert r.status_code == 403 and elsewhere in r.json()["detail"]

    r = await kit.post(f"/villages/{village}/issues", cadre, {**body, "villager_name": "张大爷"})
    assert r.status_code == 201, r.text
    issue_id = r.json()["issue_id"]
    issue = await kit.until(f"/issues/{issue_id}", bool)
    # Not a speak-up day: accepted all the same, to be heard at the next session.
    assert issue["on_speak_up_day"] is False
    assert issue["speak_up_day"] == str(next_speak_up_day(raised_on)) > str(raised_on)
    assert issue["session_id"] is None

    # Meetings records the session that heard it, naming it: the issue links back.
    heard = next_speak_up_day(raised_on)
    session = SpeakUpSessionHeld(
        session_id=f"{village}-{heard}",
        village_id=village,
        township_id=town,
        date=heard,
        lunar_day=5,
        attendance_count=30,
        issues_raised=("路灯坏了",),
        hosted_by="村书记",
        issue_ids=(issue_id,),
    )
    await kit.publish("cunzhi.meetings.events", session, f"speakup:{village}:{heard}")
    linked = await kit.until(f"/issues/{issue_id}", lambda i: i["session_id"] is not None)
    assert (linked["session_id"], linked["session_date"]) == (f"{village}-{heard}", str(heard))
    claim_list = f"/villages/{village}/claims"
    listed = await kit.until(claim_list, lambda p: p["total"] == 1, cadre)
    assert listed["items"][0]["villager_name"] == "张大爷"

    liu_id = kit.fresh("liu")
    liu = kit.member(town, village, liu_id)
    chen = kit.member(town, village, kit.fresh("chen"))
    outsider = kit.member(town, elsewhere, kit.fresh("wu"))
    r = await kit.post(f"/issues/{issue_id}/claim", outsider)
    assert r.status_code == 403 and village in r.json()["detail"]
    r = await kit.post(f"/issues/{issue_id}/claim", kit.office(kit.fresh("town")))
    assert r.status_code == 403, "a cadre of another township"
    r = await kit.post(f"/issues/{issue_id}/claim", liu)
    assert r.status_code == 200, r.text
    r = await kit.post(f"/issues/{issue_id}/claim", chen)
    assert r.status_code == 409 and "already claimed" in r.json()["detail"]
    assert await kit.version(issue_stream_id(issue_id)) == 2

    r = await kit.post(f"/issues/{issue_id}/progress", chen, {"note": "我来修"})
    assert r.status_code == 403
    r = await kit.post(f"/issues/{issue_id}/progress", liu, {"note": "已联系电工"})
    assert r.status_code == 200, r.text
    r = await kit.post(f"/issues/{issue_id}/close", liu, {"outcome": "更换灯泡, 路灯已亮"})
    assert r.status_code == 200, r.text

    issue = await kit.until(f"/issues/{issue_id}", lambda i: i["state"] == "closed")
    assert [p["note"] for p in issue["progress"]] == ["已联系电工"]
    assert issue["outcome"] == "更换灯泡, 路灯已亮"
    # Closed issues leave the open list but can be asked for.
    assert (await kit.until(claim_list, bool, cadre))["total"] == 0
    closed = await kit.until(f"{claim_list}?state=closed&state=claimed", bool, cadre)
    assert [i["issue_id"] for i in closed["items"]] == [issue_id]

    claims = await kit.until(f"/party-members/{liu_id}/claims", bool, cadre)
    assert (claims["total"], claims["closed"]) == (1, 1)


async def test_issue_promoted_to_a_topic_of_the_open_call(kit: Kit) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    body = {"title": "集体经济薄弱", "description": "村集体年收入不足五万元"}
    issue_id = (await kit.post(f"/villages/{village}/issues", cadre, body)).json()["issue_id"]

    # No call open in the township yet.
    r = await kit.post(f"/issues/{issue_id}/promote", cadre, {"category": "collective_economy"})
    assert r.status_code == 409 and "no open call" in r.json()["detail"]

    forum = await kit.open_call(town)
    await kit.until(f"/townships/{town}/calls/{forum}", lambda c: c["state"] == "open")
    r = await kit.post(f"/issues/{issue_id}/promote", cadre, {"category": "collective_economy"})
    assert r.status_code == 201, r.text
    assert r.json()["forum_id"] == forum
    topic = await kit.topic(r.json()["topic_id"], bool)
    assert (topic["source_issue_id"], topic["title"], topic["village_ids"]) == (
        issue_id,
        "集体经济薄弱",
        [village],
    )
    issue = await kit.until(f"/issues/{issue_id}", lambda i: i["state"] == "promoted")
    assert issue["promoted_topic_id"] == topic["topic_id"]

    r = await kit.post(f"/issues/{issue_id}/claim", kit.member(town, village, "p-liu"))
    assert r.status_code == 409 and "promoted" in r.json()["detail"]


async def test_cadres_claim_too_a_village_secretary_and_a_township_cadre(kit: Kit) -> None:
    """The claim list is for 党员干部: party members and cadres alike."""
    town, village = kit.fresh("town"), kit.fresh("v")
    cadre = kit.secretary(town, village)
    body = {"title": "排水沟堵塞", "description": "雨后积水", "raised_on": str(ordinary_day(kit))}
    claimed_by = []
    for claimant in (cadre, kit.office(town)):
        r = await kit.post(f"/villages/{village}/issues", cadre, body)
        assert r.status_code == 201, r.text
        issue_id = r.json()["issue_id"]
        await kit.until(f"/issues/{issue_id}", bool)
        r = await kit.post(f"/issues/{issue_id}/claim", claimant)
        assert r.status_code == 200, r.text
        claimed_by.append(
            (await kit.until(f"/issues/{issue_id}", lambda i: i["claimant_id"]))["claimant_id"]
        )
    assert len(set(claimed_by)) == 2
