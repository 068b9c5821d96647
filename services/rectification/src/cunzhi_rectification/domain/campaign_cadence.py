"""The cadence of reports (日常跟踪管理) and their due times.

Seed 003: weekly on-duty count per team (每周统计在岗), monthly progress summary (每月汇总进展),
quarterly unannounced field visit (每季度“四不两直”实地调研), half-year full assessment by a
joint panel (每半年联合考核组评估). Ours: periods count from the round's start (weeks of seven
days; calendar months, quarters and half-years, the first one partial), and a report is due at
17:30 Asia/Shanghai on the N-th working day after its period ends (N a setting).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cunzhi_platform.clock import SHANGHAI, working_days_after

from ..events.campaign import ReportKind

DUE_TIME = dt.time(17, 30)
MONTHS: dict[ReportKind, int] = {"monthly_progress": 1, "quarterly_visit": 3, "half_year_review": 6}
TEAM_KINDS: frozenset[ReportKind] = frozenset({"weekly_on_duty"})
VILLAGE_KINDS: frozenset[ReportKind] = frozenset(MONTHS)


@dataclass(frozen=True, slots=True)
class Period:
    kind: ReportKind
    index: int
    start: dt.date
    end: dt.date
    due_at: dt.datetime


def _due(end: dt.date, due_days: int) -> dt.datetime:
    return dt.datetime.combine(working_days_after(end, due_days), DUE_TIME, tzinfo=SHANGHAI)


def _month_start(day: dt.date, months: int) -> dt.date:
    """The first day of the calendar block of ``months`` after the one holding ``day``."""
    index = (day.year * 12 + day.month - 1) // months * months + months
    return dt.date(index // 12, index % 12 + 1, 1)


@functools.lru_cache(maxsize=65_536)  # the timer asks for the same periods every tick
def period(
    kind: ReportKind, index: int, start: dt.date, end: dt.date, due_days: int
) -> Period | None:
    """Period ``index`` (from 1) of the round ``start``–``end``, or None past the end."""
    if index < 1:
        return None
    if kind == "weekly_on_duty":
        first = start + dt.timedelta(days=7 * (index - 1))
        last = first + dt.timedelta(days=6)
    else:
        first = start
        for _ in range(index - 1):
            first = _month_start(first, MONTHS[kind])
        last = _month_start(first, MONTHS[kind]) - dt.timedelta(days=1)
    if first > end:
        return None
    last = min(last, end)
    return Period(kind, index, first, last, _due(last, due_days))


def periods_ended(
    kind: ReportKind, start: dt.date, end: dt.date, due_days: int, now: dt.datetime
) -> list[Period]:
    """Every period of the round that has ended by ``now``: its report is owed."""
    day = now.astimezone(SHANGHAI).date()
    found: list[Period] = []
    index = 1
    while (p := period(kind, index, start, end, due_days)) is not None and p.end < day:
        found.append(p)
        index += 1
    return found


def periods_due(
    kind: ReportKind, start: dt.date, end: dt.date, due_days: int, now: dt.datetime
) -> list[Period]:
    """Every period of the round whose report was due by ``now``."""
    return [p for p in periods_ended(kind, start, end, due_days, now) if p.due_at <= now]
