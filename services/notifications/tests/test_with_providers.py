"""The service with the real channel adapters against the local fake providers over HTTP/SMTP.

Exactly once to our side of each provider: every phone, mailbox, robot and endpoint gets each
notice once, through a provider outage, a lost answer, and a webhook endpoint that is gone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter

import pytest_asyncio
from cunzhi_notifications.channels.registry import build_channels
from cunzhi_notifications.fakes import Fault


@pytest_asyncio.fixture
async def live(settings, pool, clock, start_kit, fakes):
    channels = build_channels(fakes.settings(sms="aliyun", sms_timeout_s=0.5, robot_timeout_s=0.5))
    try:
        async with start_kit(
            start_kit.fresh("nlive").replace("-", ""), channels=dict(channels)
        ) as kit:
            yield kit
    finally:
        await channels.aclose()


async def subscribe(kit, fakes, *types: str) -> tuple[str, str]:
    url, secret = fakes.webhooks.add_endpoint()
    endpoint = kit.fresh("ep")
    r = await kit.client.put(
        f"/endpoints/{endpoint}",
        json={"url": url, "event_types": list(types), "secret": secret},
        headers=kit.admin(),
    )
    assert r.status_code == 200, r.text
    return endpoint, url


async def test_a_forum_notice_through_every_real_channel_once(live, fakes):
    kit = live
    _, hook = await subscribe(
        kit,
        fakes,
        "cunzhi.notifications.NotificationRequested",
        "cunzhi.notifications.NotificationRead",
    )
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    wang = await kit.person(township, phone="13811110001", email="wang@qianguandi.example.cn")
    li = await kit.person(township, name="李书记", phone="13811110002")
    robot = fakes.dingtalk.add_robot(secret="SEC" + "x" * 40)
    r = await kit.client.put(
        f"/groups/{township}-dj",
        json={
            "name": "关堤乡党建群",
            "township_id": township,
            "channel": "dingtalk",
            "webhook_url": robot,
            "secret": "SEC" + "x" * 40,
        },
        headers=kit.office(township),
    )
    assert r.status_code == 200, r.text
    event_id = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(wang), kit.attendee(li, "李书记")]),
        forum,
    )
    rows = await kit.settled("source_event_id = $1", event_id, count=6)
    assert {r["status"] for r in rows} <= {"sent", "delivered"}, [dict(r) for r in rows]
    for phone in ("13811110001", "13811110002"):
        (sms,) = fakes.aliyun.sent_to(phone)
        ours = next(
            r for r in rows if r["channel"] == "sms" and sms.context == str(r["delivery_id"])
        )
        assert ours["provider_id"] == sms.provider_id
    # the provider's status reports say the phones got them
    kit.clock.advance(dt.timedelta(minutes=6))
    await kit.until_rows(
        "source_event_id = $1 AND channel = 'sms'",
        event_id,
        check=lambda rows: {r["status"] for r in rows} == {"delivered"},
    )
    delivered = [
        e for e in await kit.events("NotificationDelivered") if e["source_event_id"] == event_id
    ]
    assert sorted(e["channel"] for e in delivered) == ["sms", "sms"]
    (mail,) = fakes.smtp.to("wang@qianguandi.example.cn")
    assert "第18期" in mail["Subject"]
    key = robot.rsplit("=", 1)[1]
    assert len(fakes.dingtalk.messages[key]) == 1  # one message for the group
    r = await kit.client.post("/inbox/read-all", headers=kit.me(li))
    assert r.json()["marked"] == 1

    async def hooks():
        # this notice's events (the service also replays the session's older notices)
        got = [
            d
            for d in fakes.webhooks.for_path(hook)
            if json.loads(d.body)["data"]["source_event_id"] == event_id
        ]
        return got if len(got) == 2 else None

    got = await kit.until_ready(hooks)
    assert all(d.verified for d in got)
    types = sorted(json.loads(d.body)["type"] for d in got)
    assert types == [
        "cunzhi.notifications.NotificationRead",
        "cunzhi.notifications.NotificationRequested",
    ]
    assert len({d.webhook_id for d in got}) == 2


async def test_a_provider_down_for_a_while_then_every_notice_once(live, fakes):
    kit = live
    fakes.aliyun.fail_always(Fault(status=503))
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    phones = [f"1381111{n:04d}" for n in range(10, 15)]
    people = [await kit.person(township, phone=p) for p in phones]
    event_id = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(p) for p in people]),
        forum,
    )
    try:
        await kit.until_rows(
            "source_event_id = $1 AND channel = 'sms'",
            event_id,
            check=lambda rows: (
                len(rows) == 5
                and all(r["attempts"] >= 2 for r in rows)
                and all(r["status"] == "pending" for r in rows)
            ),
            advance=lambda: kit.clock.advance(dt.timedelta(minutes=5)),
        )
    finally:
        fakes.aliyun.heal()
    kit.clock.advance(dt.timedelta(hours=2))
    rows = await kit.settled("source_event_id = $1 AND channel = 'sms'", event_id, count=5)
    assert {r["status"] for r in rows} <= {"sent", "delivered"}
    counts = Counter(s.phone[-11:] for s in fakes.aliyun.sent)
    assert all(counts[p] == 1 for p in phones), counts


async def test_a_lost_answer_is_checked_against_the_provider_not_sent_again(live, fakes):
    kit = live
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    p = await kit.person(township, phone="13811119999")
    fakes.aliyun.fail(Fault(delay_s=1.5, accept=True))  # the provider acts, the answer is late
    event_id = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(p)]),
        forum,
    )
    await kit.until_rows(
        "source_event_id = $1 AND channel = 'sms'",
        event_id,
        check=lambda rows: rows and rows[0]["unclear"] and rows[0]["status"] == "pending",
    )
    await asyncio.sleep(1.5)  # the late answer has come and gone
    kit.clock.advance(dt.timedelta(hours=1))
    (row,) = await kit.settled("source_event_id = $1 AND channel = 'sms'", event_id, count=1)
    assert row["status"] == "delivered" and row["attempts"] == 2
    assert len(fakes.aliyun.sent_to("13811119999")) == 1


async def test_a_robot_that_answers_too_late_is_not_posted_to_again(live, fakes):
    """Ours: a robot has no receipt and takes no idempotency key, so an unclear post is recorded
    as sent, unconfirmed, and never repeated: the group sees each notice once at most."""
    kit = live
    township = kit.fresh("tw")
    secretary = await kit.person(township)
    robot = fakes.wecom.add_robot()
    key = robot.rsplit("=", 1)[1]
    r = await kit.client.put(
        f"/groups/{township}-wx",
        json={
            "name": "关堤乡书记群",
            "township_id": township,
            "channel": "wecom",
            "webhook_url": robot,
        },
        headers=kit.office(township),
    )
    assert r.status_code == 200, r.text
    fakes.wecom.fail(Fault(delay_s=1.5))  # the robot posts it, its answer comes too late
    first = kit.fresh("forum")
    notice = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(first, township, [kit.attendee(secretary)]),
        first,
    )
    (row,) = await kit.settled("source_event_id = $1 AND channel = 'wecom'", notice, count=1)
    assert (row["status"], row["unclear"], row["attempts"]) == ("sent", True, 1)
    assert "unconfirmed" in row["last_error"]

    async def landed() -> bool:
        return len(fakes.wecom.messages[key]) == 1

    assert await kit.until_ready(landed)  # it did reach the group
    (sent,) = [
        e
        for e in await kit.events("NotificationSent")
        if e["delivery_id"] == str(row["delivery_id"])
    ]
    assert sent["unconfirmed"] is True
    r = await kit.client.get(f"/subjects/forum:{first}/deliveries", headers=kit.office(township))
    told = {d["channel"]: d for p in r.json()["recipients"] for d in p["deliveries"]}
    assert told["wecom"]["unconfirmed"] and not told["inbox"]["unconfirmed"]
    # the next notice to the group is posted once, and the first never again
    kit.clock.advance(dt.timedelta(hours=1))
    second = kit.fresh("forum")
    again = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(second, township, [kit.attendee(secretary)]),
        second,
    )
    (row,) = await kit.settled("source_event_id = $1 AND channel = 'wecom'", again, count=1)
    assert (row["status"], row["unclear"]) == ("sent", False)
    posted = [m["markdown"]["content"] for m in fakes.wecom.messages[key]]
    assert len(posted) == 2 and all("第18期" in text for text in posted)


async def test_an_endpoint_that_is_gone_is_disabled(live, fakes):
    kit = live
    endpoint, hook = await subscribe(kit, fakes, "cunzhi.notifications.NotificationRequested")
    fakes.webhooks.gone.add("/" + hook.removeprefix(fakes.webhooks.url).lstrip("/"))
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    p = await kit.person(township)
    await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(p)]),
        forum,
    )
    disabled = await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT disabled_reason FROM {kit.s}.endpoints WHERE endpoint_id = $1 AND NOT active",
            endpoint,
        )
    )
    assert "410" in disabled
    events = [
        e for e in await kit.events("WebhookEndpointDisabled") if e["endpoint_id"] == endpoint
    ]
    assert len(events) == 1
    r = await kit.client.get("/endpoints", headers=kit.admin())
    assert {e["endpoint_id"]: e["active"] for e in r.json()}[endpoint] is False


async def test_addresses_the_channels_would_never_send_to_are_refused_when_registered(live, fakes):
    """Found operating it: an endpoint on the cloud metadata address or a robot URL off the
    provider's host was stored (200) and only failed at the first notice."""
    kit = live
    township = kit.fresh("tw")
    body = {
        "event_types": ["cunzhi.notifications.NotificationRequested"],
        "secret": "whsec_" + "k" * 32,
    }
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.5/hook"):
        r = await kit.client.put(
            f"/endpoints/{kit.fresh('ep')}", json={**body, "url": url}, headers=kit.admin()
        )
        assert r.status_code == 422 and r.json()["field"] == "url", r.text
        assert "CUNZHI_WEBHOOK_ALLOW" in r.json()["detail"]
    hook, _ = fakes.webhooks.add_endpoint()
    ok = await kit.client.put(
        f"/endpoints/{kit.fresh('ep')}", json={**body, "url": hook}, headers=kit.admin()
    )
    assert ok.status_code == 200, ok.text
    listed = (await kit.client.get("/endpoints", headers=kit.admin())).json()
    assert {e["url"] for e in listed} & {"http://169.254.169.254/latest/meta-data"} == set()

    group = {"name": "党建群", "township_id": township, "channel": "dingtalk"}
    elsewhere = "http://169.254.169.254/robot/send?access_token=abc"
    r = await kit.client.put(
        f"/groups/{township}-a", json={**group, "webhook_url": elsewhere}, headers=kit.admin()
    )
    assert r.status_code == 422 and r.json()["field"] == "webhook_url", r.text
    r = await kit.client.put(
        f"/groups/{township}-b",
        json={**group, "webhook_url": fakes.dingtalk.add_robot()},
        headers=kit.admin(),
    )
    assert r.status_code == 200, r.text
