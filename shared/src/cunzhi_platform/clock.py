"""Time as the townships live it: Asia/Shanghai, Chinese working days, lunar dates.

Working days come from ``chinese-calendar`` (State Council holiday arrangements, including
adjusted weekend work days). The State Council publishes a year's arrangement each November,
so for a year the installed library does not know yet we fall back to Monday–Friday and say so
in the log once; upgrading the package fixes it with no code change.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

import chinese_calendar
import structlog
from lunardate import LunarDate

SHANGHAI = ZoneInfo("Asia/Shanghai")
SPEAK_UP_LUNAR_DAYS = (5, 15, 25)
"""逢五说事: villagers speak up on the 5th, 15th and 25th of every lunar month."""

_log = structlog.get_logger(__name__)
_years_warned: set[int] = set()


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(SHANGHAI)


class ManualClock:
    """A clock tests and the demo move by hand."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            start = start.replace(tzinfo=SHANGHAI)
        self._now = start.astimezone(SHANGHAI)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = (when if when.tzinfo else when.replace(tzinfo=SHANGHAI)).astimezone(SHANGHAI)

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta


def today(clock: Clock) -> dt.date:
    return clock.now().astimezone(SHANGHAI).date()


def is_working_day(day: dt.date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _years_warned:
            _years_warned.add(day.year)
            _log.warning("holiday_calendar_missing_year", year=day.year, fallback="mon-fri")
        return day.weekday() < 5


def calendar_years() -> frozenset[int]:
    """The years whose arrangement the installed ``chinese-calendar`` holds; working days of
    any other year are the Monday–Friday fallback, so what was computed for one of them may
    change once the package learns it."""
    return frozenset(day.year for day in chinese_calendar.constants.holidays)


def last_working_day_of_month(year: int, month: int) -> dt.date:
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    while not is_working_day(day):
        day -= dt.timedelta(days=1)
    return day


def working_days_before(day: dt.date, count: int) -> dt.date:
    """The date ``count`` working days before ``day`` (``day`` itself not counted)."""
    return _working_days(day, count, -1)


def working_days_after(day: dt.date, count: int) -> dt.date:
    """The date ``count`` working days after ``day`` (``day`` itself not counted)."""
    return _working_days(day, count, 1)


def _working_days(day: dt.date, count: int, step: int) -> dt.date:
    current = day
    while count > 0:
        current += dt.timedelta(days=step)
        if is_working_day(current):
            count -= 1
    return current


def on_or_before_working_day(day: dt.date) -> dt.date:
    """A deadline that falls on a rest day moves back to the previous working day."""
    while not is_working_day(day):
        day -= dt.timedelta(days=1)
    return day


def lunar_day(day: dt.date) -> int:
    return int(LunarDate.from_solar_date(day.year, day.month, day.day).day)


def is_speak_up_day(day: dt.date) -> bool:
    return lunar_day(day) in SPEAK_UP_LUNAR_DAYS


def next_speak_up_day(day: dt.date) -> dt.date:
    """The first speak-up day on or after ``day``."""
    while not is_speak_up_day(day):
        day += dt.timedelta(days=1)
    return day
