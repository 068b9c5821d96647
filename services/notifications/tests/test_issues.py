"""Speak-up issues (逢五说事, 领办): unclaimed ones reach the village secretary; progress too."""

from __future__ import annotations

import datetime as dt


def raised(township: str, village: str, issue: str) -> dict:
    return {
        "issue_id": issue,
        "township_id": township,
        "village_id": village,
        "title": "村东路灯不亮",
        "description": "d",
        "raised_by": "grid-1",
        "raised_on": "2026-10-21",
        "speak_up_day": "2026-10-25",
        "on_speak_up_day": False,
    }


async def test_an_unclaimed_issue_reaches_the_secretary_a_claimed_one_does_not(kit):
    township, village = kit.fresh("tw"), kit.fresh("v")
    secretary = await kit.person(township, village_id=village, phone="13812349999")
    waiting, claimed = kit.fresh("i"), kit.fresh("i")
    for issue in (waiting, claimed):
        await kit.publish("topics", "IssueRaised", raised(township, village, issue), issue)
    await kit.publish(
        "topics",
        "IssueClaimed",
        {
            "issue_id": claimed,
            "township_id": township,
            "village_id": village,
            "claimant_id": "member-1",
            "claimed_at": kit.start.isoformat(),
        },
        claimed,
    )
    due = dt.datetime(2026, 10, 26, 9, 0, tzinfo=kit.start.tzinfo)  # 3 working days after Wed
    keys = [f"issue:{waiting}", f"issue:{claimed}"]

    async def scheduled_and_cancelled():
        rows = await kit.pool.fetch(
            f"SELECT cancel_key, status, due_at FROM {kit.s}.reminders WHERE cancel_key = ANY($1)",
            keys,
        )
        states = {r["cancel_key"]: (r["status"], r["due_at"]) for r in rows}
        return states == {keys[0]: ("scheduled", due), keys[1]: ("cancelled", due)}

    await kit.until_ready(scheduled_and_cancelled)
    kit.clock.set(due + dt.timedelta(minutes=1))
    rows = await kit.settled("kind = 'issue_unclaimed' AND recipient_id = $1", secretary, count=2)
    inbox = next(r for r in rows if r["channel"] == "inbox")
    assert "村东路灯不亮" in inbox["body"] and "无人领办" in inbox["body"]
    fired = await kit.pool.fetch(
        f"SELECT cancel_key, status FROM {kit.s}.reminders WHERE cancel_key = ANY($1)",
        keys,
    )
    assert {f["cancel_key"]: f["status"] for f in fired} == {
        f"issue:{waiting}": "fired",
        f"issue:{claimed}": "cancelled",
    }

    await kit.publish(
        "topics",
        "IssueClosed",
        {
            "issue_id": claimed,
            "township_id": township,
            "village_id": village,
            "claimant_id": "member-1",
            "outcome": "已更换灯具",
            "closed_at": kit.start.isoformat(),
        },
        claimed,
    )
    (done,) = await kit.settled("kind = 'issue_progress' AND recipient_id = $1", secretary, count=1)
    assert "已办结" in done["body"] and "已更换灯具" in done["body"]
