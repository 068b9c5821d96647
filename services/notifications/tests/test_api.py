"""Preferences, templates and digests through the API; topic progress to submitters; the stream."""

from __future__ import annotations

import asyncio

import httpx


def topic_event(kit, township: str, topic: str, submitters: list[str], **fields):
    return {
        "topic_id": topic,
        "township_id": township,
        "forum_id": "f1",
        "village_ids": [],
        "submitter_ids": submitters,
        **fields,
    }


async def test_preferences_defaults_and_refusals(kit):
    township = kit.fresh("tw")
    p = await kit.person(township, phone="13812345678")
    r = await kit.client.put(
        f"/people/{p}/preferences/forum_notice/sms", json={"enabled": False}, headers=kit.me(p)
    )
    assert r.status_code == 422 and r.json()["field"] == "enabled" and "mandatory" in r.text
    r = await kit.client.put(
        f"/people/{p}/preferences/topic_progress/sms",
        json={"enabled": True, "digest": True},
        headers=kit.me(p),
    )
    assert r.status_code == 200, r.text
    other = await kit.client.put(
        f"/people/{p}/preferences/topic_progress/sms",
        json={"enabled": False},
        headers=kit.me(kit.fresh("p")),
    )
    assert other.status_code == 403
    r = await kit.client.get(f"/people/{p}/preferences", headers=kit.me(p))
    prefs = {(x["kind"], x["channel"]): x for x in r.json()}
    assert prefs[("forum_notice", "sms")]["mandatory"] and prefs[("forum_notice", "sms")]["enabled"]
    assert prefs[("topic_progress", "sms")] | {} == {
        "kind": "topic_progress",
        "label": "议题进展",
        "channel": "sms",
        "enabled": True,
        "digest": True,
        "mandatory": False,
        "default": False,
    }
    bad = await kit.client.put(
        f"/people/{p}/schedule", json={"quiet_start": "22:00"}, headers=kit.me(p)
    )
    assert bad.status_code == 422 and bad.json()["field"] == "quiet_end"


async def test_topic_progress_digested_by_sms_and_the_group_gets_one_message(kit):
    township = kit.fresh("tw")
    p = await kit.person(township, phone="13812345678")
    r = await kit.client.put(
        f"/people/{p}/preferences/topic_progress/sms",
        json={"enabled": True, "digest": True},
        headers=kit.me(p),
    )
    assert r.status_code == 200
    topics = [kit.fresh("t") for _ in range(3)]
    for t in topics:
        await kit.publish(
            "topics",
            "TopicSubmitted",
            topic_event(
                kit,
                township,
                t,
                [p],
                title=f"议题{t[-4:]}",
                description="d",
                category="c",
                submitted_by=p,
                submitter_role="village_secretary",
                submitted_at=kit.start.isoformat(),
            ),
            f"topic:{t}",
        )
    await kit.publish(
        "topics",
        "TopicDeclined",
        topic_event(
            kit,
            township,
            topics[0],
            [p],
            reason="已有政策覆盖",
            declined_by="c",
            declined_at=kit.start.isoformat(),
        ),
        f"topic:{topics[0]}",
    )
    await kit.publish(
        "topics",
        "TopicDeferred",
        topic_event(
            kit, township, topics[1], [p], deferred_by="c", deferred_at=kit.start.isoformat()
        ),
        f"topic:{topics[1]}",
    )
    await kit.publish(
        "topics",
        "TopicReferred",
        topic_event(
            kit,
            township,
            topics[2],
            [p],
            department="县信访局",
            referred_by="c",
            referred_at=kit.start.isoformat(),
        ),
        f"topic:{topics[2]}",
    )
    rows = await kit.until_rows(
        "kind = 'topic_progress' AND recipient_id = $1",
        p,
        check=lambda rows: len(rows) == 6 and sum(r["status"] == "sent" for r in rows) == 3,
    )
    digested = [r for r in rows if r["channel"] == "sms"]
    assert all(r["digest"] and r["status"] == "pending" for r in digested)
    assert {r["not_before"] for r in digested} == {kit.start.replace(hour=18)}
    inbox = await kit.client.get("/inbox", headers=kit.me(p))
    bodies = " ".join(i["body"] for i in inbox.json()["items"])
    assert "未被采纳" in bodies and "已有政策覆盖" in bodies and "县信访局" in bodies
    kit.clock.set(kit.start.replace(hour=18, minute=1))
    rows = await kit.settled("kind = 'topic_progress' AND recipient_id = $1", p, count=6)
    sms = kit.channels["sms"].to("13812345678")
    assert len(sms) == 1 and "3条" in sms[0].subject  # one digest, not three texts
    digests = [d for d in await kit.events("DigestSent") if d["recipient_id"] == p]
    assert len(digests) == 1 and len(digests[0]["delivery_ids"]) == 3


async def test_templates_preview_replace_and_refuse(kit):
    office = await kit.client.post(
        "/templates/forum_notice/sms/preview", json={}, headers=kit.office("tw")
    )
    assert office.status_code == 403  # a template is code the service runs: administrators'
    r = await kit.client.post("/templates/forum_notice/sms/preview", json={}, headers=kit.admin())
    assert r.status_code == 200 and r.json()["sms_parts"] == 1 and "第18期" in r.json()["body"]
    bad = await kit.client.put(
        "/templates/forum_notice/sms",
        json={"subject": "x", "body": "{{ nickname }}"},
        headers=kit.admin(),
    )
    assert bad.status_code == 422 and "nickname" in bad.json()["detail"]
    long = await kit.client.put(
        "/templates/forum_notice/sms",
        json={"subject": "x", "body": "长" * 600},
        headers=kit.admin(),
    )
    assert long.status_code == 422
    not_admin = await kit.client.put(
        "/templates/forum_notice/sms",
        json={"subject": "x", "body": "{{ name }}开会"},
        headers=kit.office("tw"),
    )
    assert not_admin.status_code == 403
    ok = await kit.client.put(
        "/templates/forum_notice/sms",
        json={"subject": "论坛", "body": "{{ name }}：{{ date }}开会"},
        headers=kit.admin(),
    )
    assert ok.status_code == 200 and ok.json()["preview"]["body"] == "王书记：10月30日开会"
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    p = await kit.person(township, name="周书记", phone="13812345678")
    await kit.publish(
        "meetings", "ForumNoticeIssued", kit.forum_notice(forum, township, [kit.attendee(p)]), forum
    )
    await kit.settled("kind = 'forum_notice' AND recipient_id = $1", p, count=2)
    assert kit.channels["sms"].to("13812345678")[0].body == "周书记：10月30日开会"
    listing = {
        (t["kind"], t["channel"]): t
        for t in (await kit.client.get("/templates", headers=kit.admin())).json()
    }
    assert (
        listing[("forum_notice", "sms")]["custom"]
        and not listing[("forum_notice", "email")]["custom"]
    )
    unknown = await kit.client.get("/templates/nothing/sms", headers=kit.admin())
    assert unknown.status_code == 422 and unknown.json()["field"] == "kind_code"


HOSTILE = {
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "huge multiplication": "{{ name }}{{ 'x' * 10**10 }}",
    "huge output": "{% for i in range(100000) %}{{ name }}{% endfor %}",
    "padding": "{{ name | center(10**9) }}",
    "doubling": "{% set ns = namespace(s=name) %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
}


async def test_hostile_templates_are_refused_quickly_while_the_service_answers(kit):
    """A template that loops, multiplies or pads without end: 422 naming the part and why,
    previewed or saved, nothing stored; other requests are answered meanwhile."""

    async def preview(source: str) -> httpx.Response:
        return await kit.client.post(
            "/templates/forum_notice/email/preview",
            json={"template": {"subject": "通知", "body": source}},
            headers=kit.admin(),
        )

    for name, source in HOSTILE.items():
        meanwhile = kit.client.get("/templates/forum_notice/email", headers=kit.admin())
        answer, other = await asyncio.gather(preview(source), meanwhile)
        assert answer.status_code == 422 and answer.json()["field"] == "body", (name, answer.text)
        assert "模板" in answer.json()["detail"], name
        assert other.status_code == 200 and not other.json()["custom"]
        saved = await kit.client.put(
            "/templates/forum_notice/email",
            json={"subject": "通知", "body": source},
            headers=kit.admin(),
        )
        assert saved.status_code == 422 and saved.json()["field"] == "body", (name, saved.text)
    subject = await kit.client.put(
        "/templates/forum_notice/email",
        json={"subject": "{{ 'x' * 10**10 }}", "body": "{{ name }}"},
        headers=kit.admin(),
    )
    assert subject.status_code == 422 and subject.json()["field"] == "subject"
    stored = await kit.client.get("/templates/forum_notice/email", headers=kit.admin())
    assert not stored.json()["custom"]


async def test_endpoints_are_the_administrators_and_refuse_bad_input(kit):
    body = {
        "url": "https://oa.county.example/hooks",
        "secret": "whsec_" + "A" * 32,
        "event_types": ["cunzhi.notifications.NotificationSent"],
    }
    office = await kit.client.put("/endpoints/oa", json=body, headers=kit.office("tw"))
    assert office.status_code == 403
    bad = await kit.client.put(
        "/endpoints/oa",
        json={**body, "event_types": ["cunzhi.nothing.Happened"]},
        headers=kit.admin(),
    )
    assert bad.status_code == 422 and "unknown event types" in bad.text
    ftp = await kit.client.put(
        "/endpoints/oa", json={**body, "url": "ftp://x/y"}, headers=kit.admin()
    )
    assert ftp.status_code == 422
    ok = await kit.client.put("/endpoints/oa", json=body, headers=kit.admin())
    assert ok.status_code == 200 and "secret" not in ok.json()
    gone = await kit.client.delete("/endpoints/oa", headers=kit.admin())
    assert gone.status_code == 204
    listing = (await kit.client.get("/endpoints", headers=kit.admin())).json()
    assert [(e["endpoint_id"], e["active"]) for e in listing] == [("oa", False)]
    missing = await kit.client.delete("/endpoints/none", headers=kit.admin())
    assert missing.status_code == 404
