"""When reminders fall due (提醒): working days, Asia/Shanghai.

Ours, not the source reports': a reminder goes out at 09:00 on its day, the start of the
township's working day.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.clock import SHANGHAI, working_days_after, working_days_before

REMIND_AT = dt.time(9, 0)


def working_day_before(day: dt.date) -> dt.datetime:
    """09:00 on the working day before ``day`` (holidays and adjusted work days counted)."""
    return dt.datetime.combine(working_days_before(day, 1), REMIND_AT, SHANGHAI)


def eve_of(moment: dt.datetime) -> dt.datetime:
    """09:00 on the working day before the day of ``moment``."""
    return working_day_before(moment.astimezone(SHANGHAI).date())


def call_closing_due(closes_at: dt.datetime) -> dt.datetime:
    """The working day before the call for topics closes."""
    return eve_of(closes_at)


def waking(moment: dt.datetime) -> dt.datetime:
    """``moment``, or 09:00 that day if it is earlier: a reminder wakes no one (ours).

    A report's period ends at midnight, when rectification says it is due.
    """
    local = moment.astimezone(SHANGHAI)
    if local.time() >= REMIND_AT:
        return moment
    return dt.datetime.combine(local.date(), REMIND_AT, SHANGHAI)


def report_due(due_at: dt.datetime) -> dt.datetime:
    """Ours: a campaign report is recalled the working day before it is due."""
    return eve_of(due_at)


def forum_eve_due(forum_date: dt.date) -> dt.datetime:
    """The working day before the forum."""
    return working_day_before(forum_date)


def task_due(due_on: dt.date, days: int) -> dt.datetime:
    """``days`` working days before a task's due day."""
    return dt.datetime.combine(working_days_before(due_on, days), REMIND_AT, SHANGHAI)


ISSUE_UNCLAIMED_DAYS = 3
"""Ours: an issue nobody claimed within 3 working days is brought to the village secretary."""


def issue_unclaimed_due(raised_on: dt.date) -> dt.datetime:
    return dt.datetime.combine(
        working_days_after(raised_on, ISSUE_UNCLAIMED_DAYS), REMIND_AT, SHANGHAI
    )


def day_text(day: dt.date) -> str:
    """How a date reads in a notice: 10月30日."""
    return f"{day.month}月{day.day}日"


def moment_text(moment: dt.datetime) -> str:
    local = moment.astimezone(SHANGHAI)
    return f"{day_text(local.date())} {local:%H:%M}"
