"""``cunzhi simulate`` on a small county: two townships, twenty villages, two months.

The simulation runs the four services on the session's infrastructure (each run in a county
of its own), so its summary is read back from the same read models the suite uses; the
rebuild check covers the simulation's townships.
"""

from __future__ import annotations

import uuid

import pytest
from cunzhi_platform.settings import Settings

from cunzhi_cli.simulate import Options, forum_plan, report, simulate

pytestmark = pytest.mark.slow

SMALL = {"seed": 7, "townships": 2, "villages": 20, "months": 2}


def test_a_seed_gives_the_same_plan_and_another_seed_another() -> None:
    plans = [forum_plan(7, "t-1", m, 10) for m in (1, 2)]
    assert plans == [forum_plan(7, "t-1", m, 10) for m in (1, 2)]
    assert plans != [forum_plan(8, "t-1", m, 10) for m in (1, 2)]
    assert plans[0] != plans[1]


async def test_a_small_county_through_two_months(settings: Settings) -> None:
    first = await simulate(settings, Options(**SMALL, run=f"sim{uuid.uuid4().hex[:6]}"))
    again = await simulate(settings, Options(**SMALL, run=f"sim{uuid.uuid4().hex[:6]}"))

    s, tally = first.summary, first.tally
    assert not first.differences, first.differences
    assert report(first)[-1] == "every read model equals its rebuild from the event store"
    # A forum a month in each township, each from its own call with a merged duplicate.
    assert s["forums held"] == tally.forums == 2 * 2
    assert tally.merged > 0 and tally.submissions > tally.forums
    # January's tasks are done on time, late or never by the end of February.
    tasks = s["forum tasks"]
    assert sum(tasks[k] for k in ("completed", "open", "overdue")) == sum(tally.tasks.values())
    assert tasks["completed"] > 0 and s["problems solved"] <= s["forums held"]
    # Lights of every village of the round; its reports and targets go on.
    assert sum(s["lights"].values()) > 0 and s["campaign"]["targets"] > 0
    assert tally.reports["weekly_on_duty"] > 0 and tally.reports["monthly_progress"] > 0
    assert tally.sessions > 0 and tally.issues_raised >= tally.sessions
    # Every notice reached its provider once: as many SMS and e-mails at the fakes as
    # deliveries the ledger counts sent there.
    deliveries, fakes = s["deliveries"], s["at the fake providers"]
    assert fakes["sms"] == deliveries.get("sms delivered", 0) > 0
    assert fakes["email"] == deliveries.get("email delivered", 0) > 0
    # (a robot takes a message a minute: what waited for it goes as one digest)
    assert 0 < fakes["dingtalk"] <= deliveries.get("dingtalk delivered", 0)
    assert not any(k.endswith("failed") for k in deliveries)
    assert first.events > 0 and first.gauges.peak_outbox > 0
    # The same seed, the same year.
    assert again.summary == first.summary
