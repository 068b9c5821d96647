"""Faults: a service killed mid-delivery, a redelivered batch, restarts around a reminder.

Each ends with every notice delivered exactly once to our side of the provider: the test
channels outlive the service instances, as a provider outlives our processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

import pytest
from cunzhi_notifications.channels.registry import build_channels
from cunzhi_platform.testing import consume


class Hang:
    """A channel that passes messages to ``inner`` and then never answers (the process dies
    before it can record the outcome)."""

    def __init__(self, inner, send_first: bool, answered: int = 0) -> None:
        self.inner, self.send_first = inner, send_first
        self.answered = answered
        """Calls answered before it hangs."""
        self.name, self.max_batch = inner.name, inner.max_batch
        self.at_most_once = inner.at_most_once
        self.send_ids = getattr(inner, "send_ids", None)
        self.reached = asyncio.Event()

    async def send(self, messages):
        if self.answered:
            self.answered -= 1
            return await self.inner.send(messages)
        if self.send_first:
            await self.inner.send(messages)
        self.reached.set()
        await asyncio.Event().wait()

    async def receipt(self, message, provider_id):
        return await self.inner.receipt(message, provider_id)


async def _through_a_sender_that_dies(start_kit, clock, name, hang, channels, addresses):
    """A forum notice to one person per address (``{"phone": [...]}`` or ``{"email": [...]}``)
    sent through ``hang`` by an instance that dies there, then finished by the next instance
    with ``channels`` once the lease ran out; the ledger rows of the channel."""
    [(field, values)] = addresses.items()
    channel = "sms" if field == "phone" else field
    async with start_kit(name, channels={channel: hang}) as a:
        township, forum = a.fresh("tw"), a.fresh("forum")
        people = [await a.person(township, **{field: value}) for value in values]
        event_id = await a.publish(
            "meetings",
            "ForumNoticeIssued",
            a.forum_notice(forum, township, [a.attendee(p) for p in people]),
            forum,
        )
        await asyncio.wait_for(hang.reached.wait(), 90)
    clock.advance(dt.timedelta(minutes=3))
    async with start_kit(name, channels=dict(channels)) as b:
        return await b.settled(
            "source_event_id = $1 AND channel = $2", event_id, channel, count=len(values)
        )


@pytest.mark.parametrize("sent_before_death", [False, True])
async def test_killed_between_claiming_and_marking_sends_once(
    settings, pool, clock, start_kit, sent_before_death
):
    name = "nkill" + ("a" if sent_before_death else "b") + start_kit.fresh("x")[-8:]
    sms = start_kit.recorder("sms")
    hang = Hang(sms, send_first=sent_before_death)
    async with start_kit(name, channels={"sms": hang}) as a:
        township, forum = a.fresh("tw"), a.fresh("forum")
        people = [await a.person(township, phone=f"1380000{n:04d}") for n in range(5)]
        event_id = await a.publish(
            "meetings",
            "ForumNoticeIssued",
            a.forum_notice(forum, township, [a.attendee(p) for p in people]),
            forum,
        )
        await asyncio.wait_for(hang.reached.wait(), 90)
        claimed = await a.rows("source_event_id = $1 AND channel = 'sms'", event_id)
        assert {r["status"] for r in claimed} == {"sending"}
    # the first instance is gone with its claims; its lease runs out
    clock.advance(dt.timedelta(minutes=3))
    async with start_kit(name, channels={"sms": sms}) as b:
        rows = await b.settled("source_event_id = $1", event_id, count=10)
    assert {r["status"] for r in rows} == {"sent"}
    assert len(sms.accepted) == 5 and sms.doubles() == {}
    # each one asked about before sending again (and status reports asked for after)
    assert sms.receipts >= 5
    assert all(r["attempts"] == 2 for r in rows if r["channel"] == "sms")


async def test_an_sms_batch_held_by_a_sender_that_died_is_found_at_the_provider(
    settings, pool, clock, start_kit, fakes
):
    """Alibaba's SendBatchSms carries one OutId, the first message's: the others of a batch
    whose sender died after sending are found under it, not sent again (found by operating it:
    a notice to 300 people, the service killed mid-send, 165 SMS twice)."""
    channels = build_channels(fakes.settings(sms="aliyun"))
    hang = Hang(channels["sms"], send_first=True)
    name = "nbatch" + start_kit.fresh("x")[-8:]
    phones = [f"1370000{n:04d}" for n in range(5)]
    try:
        rows = await _through_a_sender_that_dies(
            start_kit, clock, name, hang, channels, {"phone": phones}
        )
    finally:
        await channels.aclose()
    assert {r["status"] for r in rows} <= {"sent", "delivered"}
    assert sorted(s.phone for s in fakes.aliyun.sent if s.phone in phones) == phones


async def test_mail_already_answered_is_not_sent_again_after_the_sender_dies(
    settings, pool, clock, start_kit, fakes
):
    """Outcomes are recorded per provider call: a sender that dies on its second call of
    e-mails leaves only that call's mails to send again, not the first call's."""
    channels = build_channels(fakes.settings())
    hang = Hang(channels["email"], send_first=True, answered=1)
    name = "nmail" + start_kit.fresh("x")[-8:]
    count = channels["email"].max_batch + 5
    addresses = [f"{name}-{n}@example.cn" for n in range(count)]
    try:
        rows = await _through_a_sender_that_dies(
            start_kit, clock, name, hang, channels, {"email": addresses}
        )
    finally:
        await channels.aclose()
    assert {r["status"] for r in rows} == {"sent"}
    received = Counter(m["To"] for m in fakes.smtp.messages if m["To"] in addresses)
    twice = [a for a, n in received.items() if n > 1]
    assert sorted(received) == sorted(addresses)
    # only the call in flight at the death is sent again (same Message-ID, ours: CHANNELS.md)
    assert len(twice) <= count - channels["email"].max_batch, twice


async def test_a_robot_post_held_by_a_sender_that_died_is_not_posted_again(
    settings, pool, clock, start_kit
):
    """Ours: a robot keeps no receipt, so the next sender records it sent, unconfirmed."""
    name = "nkillrobot" + start_kit.fresh("x")[-8:]
    robot = start_kit.recorder("dingtalk")
    hang = Hang(robot, send_first=True)
    async with start_kit(name, channels={"dingtalk": hang}) as a:
        township, forum = a.fresh("tw"), a.fresh("forum")
        r = await a.client.put(
            f"/groups/{township}-dd",
            json={
                "name": "党建群",
                "township_id": township,
                "channel": "dingtalk",
                "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t1",
            },
            headers=a.office(township),
        )
        assert r.status_code == 200, r.text
        event_id = await a.publish(
            "meetings",
            "ForumNoticeIssued",
            a.forum_notice(forum, township, [a.attendee(await a.person(township))]),
            forum,
        )
        await asyncio.wait_for(hang.reached.wait(), 90)
    clock.advance(dt.timedelta(minutes=3))
    async with start_kit(name, channels={"dingtalk": robot}) as b:
        (row,) = await b.settled("source_event_id = $1 AND channel = 'dingtalk'", event_id, count=1)
    assert (row["status"], row["unclear"], row["attempts"]) == ("sent", True, 2)
    assert len(robot.accepted) == 1 and robot.receipts == 0


async def test_a_redelivered_batch_plans_and_sends_nothing_twice(kit):
    township = kit.fresh("tw")
    people = [await kit.person(township, phone=f"1390000{n:04d}") for n in range(3)]
    events = []
    for n in range(4):
        forum = kit.fresh("forum")
        payload = kit.forum_notice(forum, township, [kit.attendee(p) for p in people], number=n)
        events.append(
            (forum, payload, await kit.publish("meetings", "ForumNoticeIssued", payload, forum))
        )
    ids = [e[2] for e in events]
    await kit.settled("source_event_id = ANY($1::uuid[])", ids, count=24)
    # the consumer forgets it processed them (a restore, a rebuild gone wrong) and they come back
    await kit.pool.execute(f"DELETE FROM {kit.s}.planner__processed")
    for forum, payload, event_id in events:
        await kit.publish("meetings", "ForumNoticeIssued", payload, forum, event_id=event_id)
    await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT count(*) = 4 FROM {kit.s}.planner__processed WHERE event_id = ANY($1::uuid[])",
            ids,
        )
    )
    rows = await kit.settled("source_event_id = ANY($1::uuid[])", ids, count=24)
    assert {r["status"] for r in rows} == {"sent"}
    assert len(kit.channels["sms"].accepted) == 12 and kit.channels["sms"].doubles() == {}
    requested = [
        e for e in await kit.events("NotificationRequested") if e["source_event_id"] in ids
    ]
    assert len(requested) == 4


async def test_a_reminder_survives_restarts_and_fires_once(settings, pool, clock, start_kit):
    name = "nrem" + start_kit.fresh("x")[-8:]
    sms = start_kit.recorder("sms")
    async with start_kit(name, channels={"sms": sms}) as a:
        township, forum = a.fresh("tw"), a.fresh("forum")
        p = await a.person(township, phone="13812345678")
        await a.publish(
            "meetings",
            "ForumNoticeIssued",
            a.forum_notice(forum, township, [a.attendee(p)]),
            forum,
        )
        await a.until_rows(
            "kind = 'forum_notice' AND recipient_id = $1", p, check=lambda rows: len(rows) == 2
        )
    clock.set(dt.datetime(2026, 10, 29, 9, 1, tzinfo=clock.now().tzinfo))
    async with start_kit(name, channels={"sms": sms}) as b:
        await b.settled("kind = 'forum_eve' AND recipient_id = $1", p, count=2)
    async with start_kit(name, channels={"sms": sms}) as c:
        clock.advance(dt.timedelta(days=1))
        await c.settled("kind = 'forum_eve' AND recipient_id = $1", p, count=2)
        status = await c.pool.fetchval(
            f"SELECT status FROM {c.s}.reminders WHERE cancel_key = $1", f"forum:{forum}"
        )
    assert status == "fired"
    eve = [m for m in sms.to("13812345678") if m.subject == "明日论坛提醒"]
    assert len(eve) == 1 and sms.doubles() == {}


async def test_a_poison_event_is_dead_lettered_and_the_next_one_planned(kit, settings):
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    p = await kit.person(township)
    bad = kit.forum_notice(forum, township, [kit.attendee(p)])
    del bad["attendees"]  # a producer bug: the notice names nobody
    bad_id = await kit.publish("meetings", "ForumNoticeIssued", bad, forum)
    good_id = await kit.publish(
        "meetings",
        "ForumNoticeIssued",
        kit.forum_notice(forum, township, [kit.attendee(p)]),
        forum,
    )
    await kit.settled("source_event_id = $1", good_id, count=1)
    assert await kit.rows("source_event_id = $1", bad_id) == []
    dlq = await consume(
        settings.kafka_bootstrap_servers, "cunzhi.meetings.events.dlq", 10_000, timeout=10
    )
    ours = [
        dict((k, v.decode()) for k, v in r.headers)
        for r in dlq
        if dict(r.headers).get("ce_id", b"").decode() == bad_id
    ]
    assert [h["dlq_reason"] for h in ours if h["dlq_consumer"].startswith(f"cunzhi.{kit.name}.")]
