"""The sender against scripted channels: throttling, refusals, unclear sends; reminders moved."""

from __future__ import annotations

import datetime as dt

from cunzhi_notifications.channels.base import Outcome, SendResult


async def notice_to(kit, *people: str) -> tuple[str, str, str]:
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    for p in people:
        await kit.person(township, person_id=p, phone="13812345678")
    payload = kit.forum_notice(forum, township, [kit.attendee(p) for p in people])
    event_id = await kit.publish("meetings", "ForumNoticeIssued", payload, forum)
    return township, forum, event_id


async def test_throttled_sends_wait_at_least_the_providers_retry_after(kit):
    tries: list[str] = []

    def throttle_once(message):
        tries.append(message.delivery_id)
        if len(tries) == 1:
            return SendResult(Outcome.RETRY, error="isv.BUSINESS_LIMIT_CONTROL", retry_after_s=600)
        return None

    kit.channels["sms"].script = throttle_once
    p = kit.fresh("p")
    _, _, event_id = await notice_to(kit, p)
    rows = await kit.until_rows(
        "source_event_id = $1 AND channel = 'sms'",
        event_id,
        check=lambda rows: rows and rows[0]["attempts"] == 1 and rows[0]["status"] == "pending",
    )
    assert rows[0]["not_before"] >= kit.start + dt.timedelta(seconds=600)
    assert rows[0]["last_error"] == "isv.BUSINESS_LIMIT_CONTROL"
    kit.clock.advance(dt.timedelta(seconds=601))
    rows = await kit.settled("source_event_id = $1 AND channel = 'sms'", event_id, count=1)
    assert rows[0]["status"] == "sent" and rows[0]["attempts"] == 2
    assert len(kit.channels["sms"].accepted) == 1


async def test_a_refusal_fails_for_good_and_the_last_retry_gives_up_with_the_reason(kit):
    kit.channels["sms"].script = lambda m: SendResult(
        Outcome.FAILED, error="isv.MOBILE_NUMBER_ILLEGAL"
    )
    kit.channels["email"].script = lambda m: SendResult(Outcome.RETRY, error="421 try later")
    township = kit.fresh("tw")
    p = await kit.person(township, phone="13812345678", email="p@example.cn")
    forum = kit.fresh("forum")
    event_id = await kit.publish(
        "meetings", "ForumNoticeIssued", kit.forum_notice(forum, township, [kit.attendee(p)]), forum
    )
    rows = await kit.until_rows(
        "source_event_id = $1 AND channel = 'sms'",
        event_id,
        check=lambda rows: rows and rows[0]["status"] == "failed",
    )
    assert rows[0]["last_error"] == "isv.MOBILE_NUMBER_ILLEGAL" and rows[0]["attempts"] == 1
    for _ in range(6):  # the default backoff allows six attempts
        kit.clock.advance(dt.timedelta(hours=2))
        await kit.until_rows(
            "source_event_id = $1 AND channel = 'email'",
            event_id,
            # waiting for the next try, or failed for good
            check=lambda rows: (
                bool(rows)
                and (
                    rows[0]["status"] == "failed"
                    or (rows[0]["status"] == "pending" and rows[0]["not_before"] > kit.clock.now())
                )
            ),
        )
    rows = await kit.settled("source_event_id = $1 AND channel = 'email'", event_id, count=1)
    assert rows[0]["status"] == "failed" and rows[0]["attempts"] == 6
    assert rows[0]["last_error"] == "gave up after 6 attempts: 421 try later"
    failed = [e for e in await kit.events("NotificationFailed") if e["source_event_id"] == event_id]
    assert sorted(e["channel"] for e in failed) == ["email", "sms"]
    r = await kit.client.get(
        f"/townships/{township}/deliveries?status=failed", headers=kit.office(township)
    )
    assert sorted(d["channel"] for d in r.json()) == ["email", "sms"]
    mine = await kit.client.get("/failures", headers=kit.office(township))
    assert sorted(d["channel"] for d in mine.json()) == ["email", "sms"]
    others = await kit.client.get("/failures", headers=kit.office(kit.fresh("tw")))
    assert others.status_code == 200 and others.json() == []
    health = await kit.client.get("/channels/health", headers=kit.admin())
    by = {h["channel"]: h for h in health.json()}
    assert by["email"]["failed_24h"] >= 1 and by["inbox"]["sent_24h"] >= 1


async def test_an_unclear_send_is_checked_against_the_receipt_not_sent_again(kit):
    kit.channels["sms"].script = lambda m: SendResult(Outcome.UNCLEAR, error="read timeout")
    p = kit.fresh("p")
    _, _, event_id = await notice_to(kit, p)
    await kit.until_rows(
        "source_event_id = $1 AND channel = 'sms'",
        event_id,
        check=lambda rows: rows and rows[0]["unclear"] and rows[0]["status"] == "pending",
    )
    kit.channels["sms"].script = None
    kit.channels["sms"].report_delivered = True
    kit.clock.advance(dt.timedelta(hours=1))
    rows = await kit.settled("source_event_id = $1 AND channel = 'sms'", event_id, count=1)
    assert rows[0]["status"] == "delivered" and not rows[0]["unclear"]
    delivered = [
        e for e in await kit.events("NotificationDelivered") if e["source_event_id"] == event_id
    ]
    assert [e["delivery_id"] for e in delivered] == [str(rows[0]["delivery_id"])]
    assert len(kit.channels["sms"].to("13812345678")) == 1


async def test_postponed_moves_the_eve_reminder_and_cancelled_removes_it(kit):
    p = kit.fresh("p")
    township, forum, _ = await notice_to(kit, p)
    key = f"forum:{forum}"

    async def reminder():
        return await kit.pool.fetchrow(
            f"SELECT * FROM {kit.s}.reminders WHERE cancel_key = $1", key
        )

    first = await kit.until_ready(reminder)
    assert first["due_at"] == dt.datetime(2026, 10, 29, 9, 0, tzinfo=kit.start.tzinfo)
    await kit.publish(
        "meetings",
        "ForumPostponed",
        {
            "forum_id": forum,
            "township_id": township,
            "previous_date": "2026-10-30",
            "date": "2026-11-06",
            "reason": "上级检查",
            "attendees_to_inform": [kit.attendee(p)],
        },
        forum,
    )
    moved = await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT due_at FROM {kit.s}.reminders WHERE cancel_key = $1 AND due_at > '2026-11-01'",
            key,
        )
    )
    assert moved == dt.datetime(2026, 11, 5, 9, 0, tzinfo=kit.start.tzinfo)
    told = await kit.until_rows(
        "kind = 'forum_postponed' AND recipient_id = $1",
        p,
        check=lambda rows: len(rows) == 2 and all(r["status"] == "sent" for r in rows),
    )
    # sends are batched, not ordered: the postponement is among what the phone got
    assert told and any("11月6日" in m.body for m in kit.channels["sms"].to("13812345678"))
    # nothing fires at the old time
    kit.clock.set(dt.datetime(2026, 10, 29, 9, 30, tzinfo=kit.start.tzinfo))
    await kit.publish(
        "meetings",
        "ForumCancelled",
        {
            "forum_id": forum,
            "township_id": township,
            "reason": "议题已统一部署",
            "attendees_to_inform": [kit.attendee(p)],
        },
        forum,
    )
    await kit.until_rows(
        "kind = 'forum_cancelled' AND recipient_id = $1",
        p,
        check=lambda rows: len(rows) == 2 and all(r["status"] == "sent" for r in rows),
    )
    assert (await reminder())["status"] == "cancelled"
    kit.clock.set(dt.datetime(2026, 11, 5, 10, 0, tzinfo=kit.start.tzinfo))
    await kit.publish(  # a later marker: once it is planned, the timer has run past the time
        "meetings",
        "ForumCancelled",
        {
            "forum_id": kit.fresh("f"),
            "township_id": township,
            "reason": "x",
            "attendees_to_inform": [kit.attendee(p)],
        },
        forum,
    )
    await kit.until_rows(
        "kind = 'forum_cancelled' AND recipient_id = $1", p, check=lambda rows: len(rows) == 4
    )
    assert await kit.rows("kind = 'forum_eve' AND recipient_id = $1", p) == []


async def test_a_forum_moved_so_its_eve_has_passed_drops_the_reminder_and_a_later_move_rearms_it(
    kit,
):
    """Ours: a reminder moved to a moment already passed is dropped and kept as the record of
    it, not sent late as if on time (the postponement's notice tells the attendees)."""
    p = kit.fresh("p")
    township, forum, _ = await notice_to(kit, p)
    key = f"forum:{forum}"
    shanghai = kit.start.tzinfo

    def moved(previous: str, date: str) -> dict:
        return {
            "forum_id": forum,
            "township_id": township,
            "previous_date": previous,
            "date": date,
            "reason": "镇里统一安排",
            "attendees_to_inform": [kit.attendee(p)],
        }

    def reminder(status: str):
        return lambda: kit.pool.fetchrow(
            f"SELECT * FROM {kit.s}.reminders WHERE cancel_key = $1 AND status = $2", key, status
        )

    await kit.until_ready(reminder("scheduled"))
    # on Wednesday at 10:00 the forum is brought forward to Thursday: its eve, 09:00 today, is past
    await kit.publish("meetings", "ForumPostponed", moved("2026-10-30", "2026-10-22"), forum)
    dropped = await kit.until_ready(reminder("dropped"))
    assert dropped["due_at"] == dt.datetime(2026, 10, 21, 9, 0, tzinfo=shanghai)
    assert (dropped["context"]["date"], dropped["dropped_at"]) == ("10月22日", kit.clock.now())
    await kit.until_rows(
        "kind = 'forum_postponed' AND recipient_id = $1",
        p,
        check=lambda rows: len(rows) == 2 and all(r["status"] == "sent" for r in rows),
    )
    # moved again, to a day whose eve is ahead: due again, with the new date in its words
    await kit.publish("meetings", "ForumPostponed", moved("2026-10-22", "2026-11-06"), forum)
    rearmed = await kit.until_ready(reminder("scheduled"))
    assert rearmed["due_at"] == dt.datetime(2026, 11, 5, 9, 0, tzinfo=shanghai)
    assert rearmed["dropped_at"] is None
    kit.clock.set(dt.datetime(2026, 11, 5, 9, 5, tzinfo=shanghai))
    rows = await kit.settled("kind = 'forum_eve' AND recipient_id = $1", p, count=2)
    assert all("11月6日" in r["body"] for r in rows)
