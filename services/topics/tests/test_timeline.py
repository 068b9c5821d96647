"""A topic's timeline in words (pure: which events are steps, and what they say)."""

from __future__ import annotations

import datetime as dt

from cunzhi_topics.adapters.timeline import step
from cunzhi_topics.events import TopicReferred
from cunzhi_topics.inbound import ForumHeld, ForumPlanned, TaskCompleted


def test_the_forum_held_on_a_topic_and_its_tasks_are_steps_in_words() -> None:
    held = ForumHeld(forum_id="f18", topic_id="t1", number=18, date=dt.date(2026, 11, 27))
    assert step(held) == ("forum_held", "第18期乡村干部论坛于2026-11-27召开，研究本议题")
    done = TaskCompleted(task_id="k1", forum_id="f18", township_id="guandi", summary="已拆除")
    assert step(done) == ("task_completed", "任务 k1 完成：已拆除")


def test_a_referral_says_to_whom_and_a_planned_forum_is_no_step() -> None:
    referred = TopicReferred(
        topic_id="t2",
        township_id="guandi",
        forum_id="f18",
        village_ids=["v01"],
        submitter_ids=["p-li"],
        department="县信访局",
        referred_by="p-secretary",
        referred_at=dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC),
    )
    assert step(referred) == ("referred", "转交县信访局办理")
    planned = ForumPlanned(forum_id="f19", township_id="guandi", date=dt.date(2026, 12, 31))
    assert step(planned) is None
