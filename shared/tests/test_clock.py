import datetime as dt

from cunzhi_platform.clock import (
    SHANGHAI,
    ManualClock,
    is_speak_up_day,
    is_working_day,
    last_working_day_of_month,
    lunar_day,
    next_speak_up_day,
    on_or_before_working_day,
    today,
    working_days_before,
)


def test_holidays_and_adjusted_work_days_come_from_the_calendar():
    assert not is_working_day(dt.date(2026, 10, 1))  # National Day
    assert is_working_day(dt.date(2026, 9, 30))
    assert not is_working_day(dt.date(2026, 11, 22))  # an ordinary Sunday


def test_last_working_day_of_month_skips_weekends():
    assert last_working_day_of_month(2026, 10) == dt.date(2026, 10, 30)  # 31st is a Saturday
    assert last_working_day_of_month(2026, 11) == dt.date(2026, 11, 30)
    assert last_working_day_of_month(2026, 5) == dt.date(2026, 5, 29)  # 30/31 weekend


def test_years_beyond_the_installed_calendar_fall_back_to_weekdays():
    assert last_working_day_of_month(2099, 1) == dt.date(2099, 1, 30)


def test_working_days_before_crosses_the_national_day_holiday():
    # Oct 1-7 are rest days; Oct 8 works: three working days before Oct 9 is Sep 29.
    assert working_days_before(dt.date(2026, 10, 9), 3) == dt.date(2026, 9, 29)
    assert on_or_before_working_day(dt.date(2026, 10, 4)) == dt.date(2026, 9, 30)


def test_speak_up_days_follow_the_lunar_month():
    assert lunar_day(dt.date(2026, 11, 23)) == 15
    assert is_speak_up_day(dt.date(2026, 11, 23))
    assert not is_speak_up_day(dt.date(2026, 11, 24))
    assert next_speak_up_day(dt.date(2026, 11, 24)) == dt.date(2026, 12, 3)  # lunar 10/25


def test_manual_clock_is_in_shanghai():
    clock = ManualClock(dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC))
    assert clock.now().tzinfo == SHANGHAI
    assert today(clock) == dt.date(2026, 11, 24)
    clock.advance(dt.timedelta(days=1))
    assert today(clock) == dt.date(2026, 11, 25)
