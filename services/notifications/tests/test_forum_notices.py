"""The forum notice on the real stack: every attendee on each channel, once; read receipts."""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.testing import eventually


async def test_the_forum_notice_reaches_every_attendee_once_on_each_channel(kit):
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    wang = await kit.person(township, phone="13812345678", email="wang@example.cn")
    li = await kit.person(township, name="李书记", phone="13900000001")
    guest = kit.fresh("guest")  # invited, unknown to the directory: inbox only
    r = await kit.client.put(
        f"/groups/{township}-dj",
        json={
            "name": "关堤乡党建群",
            "township_id": township,
            "channel": "dingtalk",
            "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t1",
        },
        headers=kit.office(township),
    )
    assert r.status_code == 200, r.text
    payload = kit.forum_notice(
        forum,
        township,
        [kit.attendee(wang), kit.attendee(li, "李书记"), kit.attendee(guest, "孙队长")],
    )
    event_id = await kit.publish("meetings", "ForumNoticeIssued", payload, forum)

    # wang: inbox, sms, email; li: inbox, sms; guest: inbox; the group: one message
    rows = await kit.settled("source_event_id = $1", event_id, count=7)
    assert {r["status"] for r in rows} == {"sent"}
    assert len(kit.channels["sms"].accepted) == 2
    sms = kit.channels["sms"].to("13812345678")[0]
    assert "第18期" in sms.body and "请准备发言" in sms.body and sms.body.startswith("王书记")
    assert (
        sms.template_code == "CUNZHI_FORUM_NOTICE" and sms.template_params["place"] == "关堤乡政府"
    )
    assert len(kit.channels["email"].accepted) == 1
    robot = kit.channels["dingtalk"].accepted
    assert len(robot) == 1 and "关堤乡党建群" in robot[0].body  # one per group, not per person

    # the same event delivered again: nothing planned or sent twice
    await kit.publish("meetings", "ForumNoticeIssued", payload, forum, event_id=event_id)
    marker = await kit.publish(
        "meetings",
        "ForumCancelled",
        {"forum_id": kit.fresh("other"), "township_id": kit.fresh("tw"), "reason": "x"},
        forum,
    )
    await kit.until_rows("source_event_id = $1", marker, check=lambda rows: True)
    assert await eventually(
        lambda: kit.pool.fetchval(
            f"SELECT true FROM {kit.s}.notices WHERE source_event_id = $1", marker
        )
    )
    assert len(await kit.rows("source_event_id = $1", event_id)) == 7
    assert len(kit.channels["sms"].accepted) == 2 and len(robot) == 1
    requested = await kit.events("NotificationRequested")
    assert [e["kind"] for e in requested if e["source_event_id"] == event_id] == ["forum_notice"]
    sent = await kit.events("NotificationSent")
    assert len([e for e in sent if e["source_event_id"] == event_id]) == 7

    # li reads the notice in the app
    r = await kit.client.get("/inbox", headers=kit.me(li))
    assert r.json()["unread"] == 1
    item = r.json()["items"][0]
    assert item["kind"] == "forum_notice" and "流动党员管理" in item["body"]
    r = await kit.client.post(f"/inbox/{item['delivery_id']}/read", headers=kit.me(li))
    assert r.json() == {"marked": 1, "unread": 0}
    again = await kit.client.post(f"/inbox/{item['delivery_id']}/read", headers=kit.me(li))
    assert again.json()["marked"] == 0
    # someone else's notice is not theirs to read
    other = await kit.client.post(f"/inbox/{item['delivery_id']}/read", headers=kit.me(wang))
    assert other.status_code == 404
    read = await kit.events("NotificationRead")
    assert [e["recipient_id"] for e in read if e["source_event_id"] == event_id] == [li]

    # who has been told about the forum, on which channel, who has read it
    r = await kit.client.get(f"/subjects/forum:{forum}/deliveries", headers=kit.office(township))
    assert r.status_code == 200, r.text
    told = r.json()
    assert told["read"] == 1 and told["by_status"] == {"sent": 7}
    assert (told["total"], told["limit"], told["offset"]) == (len(told["recipients"]), 100, 0)
    channels = {
        e["recipient_id"]: sorted(d["channel"] for d in e["deliveries"]) for e in told["recipients"]
    }
    assert channels[wang] == ["email", "inbox", "sms"] and channels[guest] == ["inbox"]
    assert channels[f"group:{township}-dj"] == ["dingtalk"]
    # a page of recipients; the counts are the whole subject's
    pages = [
        (
            await kit.client.get(
                f"/subjects/forum:{forum}/deliveries?limit=2&offset={offset}",
                headers=kit.office(township),
            )
        ).json()
        for offset in range(0, told["total"], 2)
    ]
    assert [e for page in pages for e in page["recipients"]] == told["recipients"]
    assert all(len(page["recipients"]) <= 2 for page in pages)
    assert {(page["total"], page["read"]) for page in pages} == {(told["total"], 1)}
    assert pages[-1]["by_status"] == {"sent": 7}
    too_far = await kit.client.get(
        f"/subjects/forum:{forum}/deliveries?limit=501", headers=kit.office(township)
    )
    assert too_far.status_code == 422 and too_far.json()["field"] == "limit"
    outsider = await kit.client.get(
        f"/subjects/forum:{forum}/deliveries", headers=kit.office(kit.fresh("tw"))
    )
    assert outsider.status_code == 403


async def test_quiet_hours_hold_sms_until_they_end_while_the_inbox_gets_it(kit):
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    night_owl = await kit.person(township, phone="13812340000")
    r = await kit.client.put(
        f"/people/{night_owl}/schedule",
        json={"quiet_start": "09:00", "quiet_end": "12:00"},
        headers=kit.me(night_owl),
    )
    assert r.status_code == 200, r.text
    event_id = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(night_owl)]),
        forum,
    )
    rows = await kit.until_rows(
        "source_event_id = $1",
        event_id,
        check=lambda rows: len(rows) == 2 and any(r["status"] == "sent" for r in rows),
    )
    sms = next(r for r in rows if r["channel"] == "sms")
    assert sms["status"] == "pending" and sms["held"]
    assert sms["not_before"] == kit.start.replace(hour=12)
    assert kit.channels["sms"].accepted == []
    kit.clock.advance(dt.timedelta(hours=2, minutes=1))
    await kit.settled("source_event_id = $1", event_id, count=2)
    assert len(kit.channels["sms"].to("13812340000")) == 1


async def test_a_group_gets_at_most_one_message_a_minute_with_everything_due(kit):
    township = kit.fresh("tw")
    r = await kit.client.put(
        f"/groups/{township}-dj",
        json={
            "name": "关堤乡党建群",
            "township_id": township,
            "channel": "dingtalk",
            "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t2",
        },
        headers=kit.admin(),
    )
    assert r.status_code == 200
    group = f"group:{township}-dj"
    for n in range(3):
        await kit.publish(
            "meetings",
            "ForumCancelled",
            {"forum_id": kit.fresh("f"), "township_id": township, "reason": f"原因{n}"},
            f"forum-{n}",
        )
    first = await kit.until_rows(
        "recipient_id = $1",
        group,
        check=lambda rows: len(rows) == 3 and any(r["status"] == "sent" for r in rows),
    )
    sent_at_once = sum(r["status"] == "sent" for r in first)
    messages = kit.channels["dingtalk"].accepted
    assert len(messages) == 1
    kit.clock.advance(dt.timedelta(seconds=61))
    rows = await kit.settled("recipient_id = $1", group, count=3)
    assert {r["status"] for r in rows} == {"sent"}
    # three notices, at most two messages: what waited went out together
    assert len(messages) == (1 if sent_at_once == 3 else 2)
    if sent_at_once < 3:
        assert "汇总" in messages[1].subject
