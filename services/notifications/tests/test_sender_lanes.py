"""The sender's lanes: a channel that hangs holds up only its own deliveries, and a provider
asked for status reports is asked with no transaction of ours open."""

from __future__ import annotations

import asyncio


class Hanging:
    """A webhook channel whose endpoint takes the request and never answers."""

    name, max_batch, at_most_once = "webhook", 1, False

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def send(self, messages):
        self.reached.set()
        await asyncio.Event().wait()

    async def receipt(self, message, provider_id):
        return None


async def test_a_hanging_webhook_endpoint_does_not_hold_up_a_later_sms_or_inbox_notice(
    start_kit,
):
    hanging = Hanging()
    async with start_kit(
        start_kit.fresh("nlane").replace("-", ""), channels={"webhook": hanging}
    ) as kit:
        r = await kit.client.put(
            "/endpoints/slow",
            json={
                "url": "https://oa.example.cn/hook",
                "event_types": ["cunzhi.notifications.NotificationRequested"],
                "secret": "s" * 32,
            },
            headers=kit.admin(),
        )
        assert r.status_code == 200, r.text
        township = kit.fresh("tw")
        first, later = kit.fresh("p"), kit.fresh("p")
        for p in (first, later):
            await kit.person(township, person_id=p, phone="13812345678")
        forum = kit.fresh("forum")
        notice = kit.forum_notice(forum, township, [kit.attendee(first)])
        await kit.publish("meetings", "ForumNoticeIssued", notice, forum)
        await asyncio.wait_for(hanging.reached.wait(), 90)
        forum = kit.fresh("forum")
        notice = kit.forum_notice(forum, township, [kit.attendee(later)])
        event_id = await kit.publish("meetings", "ForumNoticeIssued", notice, forum)
        rows = await kit.settled("source_event_id = $1 AND channel <> 'webhook'", event_id, count=2)
        assert {(r["channel"], r["status"]) for r in rows} == {("inbox", "sent"), ("sms", "sent")}
        # the endpoint's deliveries wait on it, claimed and unanswered
        webhook = await kit.rows("channel = 'webhook'")
        assert webhook and "sending" in {r["status"] for r in webhook}


async def test_status_reports_are_asked_for_with_no_transaction_of_the_service_open(
    start_kit, pool
):
    """The provider holds the question until the test has looked at every session of the
    database: none idle in a transaction begun before the provider was asked."""
    found: list[list[dict]] = []

    class Reports(start_kit.recorder):
        async def receipt(self, message, provider_id):
            if not found:
                asked = await pool.fetchval("SELECT clock_timestamp()")
                found.append(await _idle_in_transaction_since(pool, asked))
            return await super().receipt(message, provider_id)

    sms = Reports("sms", report_delivered=True)
    async with start_kit(start_kit.fresh("nrcpt").replace("-", ""), channels={"sms": sms}) as kit:
        p = kit.fresh("p")
        township, forum = kit.fresh("tw"), kit.fresh("forum")
        await kit.person(township, person_id=p, phone="13812345678")
        notice = kit.forum_notice(forum, township, [kit.attendee(p)])
        event_id = await kit.publish("meetings", "ForumNoticeIssued", notice, forum)
        await kit.until_rows(
            "source_event_id = $1 AND channel = 'sms'",
            event_id,
            check=lambda rows: bool(rows) and rows[0]["status"] == "delivered",
        )
    assert found == [[]]


async def _idle_in_transaction_since(pool, asked) -> list[dict]:
    """Sessions idle in a transaction begun before ``asked`` that stay so: looked at twice, a
    moment apart, so that another job's transaction caught between two statements is not
    counted."""
    query = """SELECT pid, xact_start, query FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND state = 'idle in transaction' AND xact_start < $1"""
    first = {(r["pid"], r["xact_start"]): dict(r) for r in await pool.fetch(query, asked)}
    await asyncio.sleep(0.5)
    again = {(r["pid"], r["xact_start"]) for r in await pool.fetch(query, asked)}
    return [first[k] for k in sorted(first.keys() & again)]


async def test_the_sender_renders_off_the_event_loop(start_kit, monkeypatch):
    """A stored template may take up to its bound (a second) to render: the sender renders in
    a worker thread, never on the loop that answers requests."""
    import threading

    from cunzhi_notifications.adapters import sender

    threads: list[threading.Thread] = []
    rendering = sender.render

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread())
        return rendering(*args, **kwargs)

    monkeypatch.setattr(sender, "render", recorded)
    async with start_kit(start_kit.fresh("nrend").replace("-", "")) as kit:
        township, forum, p = kit.fresh("tw"), kit.fresh("forum"), kit.fresh("p")
        await kit.person(township, person_id=p, phone="13812345678")
        notice = kit.forum_notice(forum, township, [kit.attendee(p)])
        event_id = await kit.publish("meetings", "ForumNoticeIssued", notice, forum)
        await kit.settled("source_event_id = $1", event_id, count=2)
    assert threads and threading.main_thread() not in threads
