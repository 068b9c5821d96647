"""Pure rules: preferences, quiet hours, digests, backoff, templates, masking, reminders."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from cunzhi_notifications.domain.errors import InvalidPreference, TemplateError
from cunzhi_notifications.domain.kinds import KINDS, Kind
from cunzhi_notifications.domain.privacy import mask_email, mask_phone, mask_url
from cunzhi_notifications.domain.reminders import call_closing_due, forum_eve_due
from cunzhi_notifications.domain.routing import (
    Backoff,
    Person,
    Preference,
    QuietHours,
    bundles,
    channels_for,
    check_preference,
    routes,
)
from cunzhi_notifications.domain.templates import (
    SMS_MAX,
    Template,
    all_defaults,
    check,
    render,
    sample,
    sms_parts,
)
from cunzhi_notifications.readers import meetings, rectification, topics
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.events import merge, reader_breaks

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"
EVERYWHERE = frozenset({"inbox", "sms", "email", "wecom", "dingtalk"})
NOTICE, PROGRESS = KINDS["forum_notice"], KINDS["topic_progress"]
RED = Kind("red_light", "亮红灯", ("inbox", "sms"), mandatory=True, urgent=True)
NIGHT = QuietHours(dt.time(22, 0), dt.time(7, 0))


def at(hour: int, minute: int = 0, day: int = 27) -> dt.datetime:
    return dt.datetime(2026, 10, day, hour, minute, tzinfo=SHANGHAI)


def person(**kw: object) -> Person:
    return Person("p1", kw.pop("addresses", EVERYWHERE), **kw)  # type: ignore[arg-type]


# -- preferences --------------------------------------------------------------------------------


def test_defaults_per_kind_where_the_person_has_an_address():
    assert channels_for(NOTICE, person()) == ["inbox", "sms", "email"]
    assert channels_for(NOTICE, person(addresses=frozenset({"inbox", "sms"}))) == ["inbox", "sms"]
    assert channels_for(PROGRESS, person()) == ["inbox"]


def test_a_person_adds_and_removes_channels_of_an_optional_kind():
    prefs = {
        ("topic_progress", "inbox"): Preference(False),
        ("topic_progress", "wecom"): Preference(True),
    }
    assert channels_for(PROGRESS, person(preferences=prefs)) == ["wecom"]


def test_a_mandatory_kind_cannot_be_switched_off():
    with pytest.raises(InvalidPreference, match="mandatory"):
        check_preference(NOTICE, "sms", Preference(False))
    # even a stored preference (from before the kind became mandatory) does not count
    stale = {("forum_notice", "sms"): Preference(False)}
    assert "sms" in channels_for(NOTICE, person(preferences=stale))
    check_preference(NOTICE, "wecom", Preference(False))  # not a default channel: fine


def test_time_critical_kinds_and_the_inbox_are_never_digested():
    with pytest.raises(InvalidPreference, match="time-critical"):
        check_preference(NOTICE, "email", Preference(True, digest=True))
    with pytest.raises(InvalidPreference, match="inbox"):
        check_preference(PROGRESS, "inbox", Preference(True, digest=True))
    with pytest.raises(InvalidPreference, match="channel"):
        check_preference(PROGRESS, "fax", Preference(True))


# -- quiet hours and digests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (at(21, 59), False),
        (at(22, 0), True),
        (at(23, 30), True),
        (at(0, 0), True),
        (at(6, 59), True),
        (at(7, 0), False),
        (at(12, 0), False),
    ],
)
def test_quiet_hours_wrap_past_midnight(moment, inside):
    assert NIGHT.contains(moment.time()) is inside


def test_a_daytime_window_does_not_wrap():
    lunch = QuietHours(dt.time(12, 0), dt.time(14, 0))
    assert lunch.contains(dt.time(13, 0)) and not lunch.contains(dt.time(23, 0))


def test_a_notice_in_quiet_hours_is_held_until_they_end_not_dropped():
    late, early = (
        routes(NOTICE, person(quiet=NIGHT), at(23, 10)),
        routes(NOTICE, person(quiet=NIGHT), at(5, 0, day=28)),
    )
    for got in (late, early):
        by = {r.channel: r for r in got}
        assert by["sms"].held and by["sms"].not_before == at(7, 0, day=28)
        assert by["email"].held
        assert not by["inbox"].held  # the inbox interrupts no one
        assert by["inbox"].not_before in (at(23, 10), at(5, 0, day=28))


def test_urgent_kinds_go_through_quiet_hours():
    got = routes(RED, person(quiet=NIGHT), at(23, 10))
    assert all(not r.held and r.not_before == at(23, 10) for r in got)


def test_digested_kinds_wait_for_the_chosen_time_then_quiet_hours():
    prefs = {("topic_progress", "email"): Preference(True, digest=True)}
    got = {r.channel: r for r in routes(PROGRESS, person(preferences=prefs), at(9, 0))}
    assert got["email"].digest and got["email"].not_before == at(18, 0)
    assert not got["inbox"].digest and got["inbox"].not_before == at(9, 0)
    after = {r.channel: r for r in routes(PROGRESS, person(preferences=prefs), at(19, 0))}
    assert after["email"].not_before == at(18, 0, day=28)
    # a digest time inside quiet hours waits for them to end
    sleepy = person(preferences=prefs, quiet=NIGHT, digest_at=dt.time(23, 0))
    got = {r.channel: r for r in routes(PROGRESS, sleepy, at(9, 0))}
    assert got["email"].not_before == at(7, 0, day=28) and got["email"].held


def test_groups_and_digests_are_bundled_people_sent_singly():
    singles, grouped = bundles(
        [
            ("d1", "p1", "sms", False),
            ("d2", "group:g1", "dingtalk", False),
            ("d3", "group:g1", "dingtalk", False),
            ("d4", "p1", "email", True),
            ("d5", "p1", "email", True),
            ("d6", "group:g2", "dingtalk", False),
            ("d7", "p2", "sms", False),
        ]
    )
    assert singles == ["d1", "d7"]
    assert grouped == {
        ("group:g1", "dingtalk"): ["d2", "d3"],
        ("p1", "email"): ["d4", "d5"],
        ("group:g2", "dingtalk"): ["d6"],
    }


# -- retries ------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    backoff = Backoff(base_s=10, cap_s=100, max_attempts=6)
    rng = random.Random(7)
    for attempt, full in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100)]:
        delays = {backoff.delay(attempt, rng) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered, not marching together


def test_the_last_attempt_gives_up_and_a_providers_wait_is_honoured():
    backoff = Backoff(base_s=10, cap_s=100, max_attempts=3)
    assert backoff.next_try(3, None) is None
    assert backoff.next_try(1, 600) == 600
    assert 5 <= (backoff.next_try(1, 1) or 0) <= 10


# -- templates ----------------------------------------------------------------------------------


def test_every_default_template_renders_with_its_sample_and_sms_fit():
    for (kind_code, channel), template in all_defaults().items():
        out = render(template, channel, sample(kind_code))
        assert out.body and "{{" not in out.body
        if channel == "sms":
            assert out.sms_parts is not None and out.sms_parts <= 2


def test_sms_parts_and_length_limit():
    assert sms_parts("短" * 66) == 1  # 4 for 【村治】 + 66 = 70
    assert sms_parts("短" * 67) == 2
    with pytest.raises(TemplateError, match=str(SMS_MAX)):
        check("forum_notice", "sms", Template("x", "长" * SMS_MAX))


def test_a_template_that_does_not_render_is_refused_with_why():
    with pytest.raises(TemplateError, match="nickname"):
        check("forum_notice", "inbox", Template("通知", "{{ nickname }}你好"))
    with pytest.raises(TemplateError, match="无法渲染"):
        check("forum_notice", "inbox", Template("通知", "{% for %}"))
    with pytest.raises(TemplateError):  # sandboxed: no reaching into Python internals
        render(Template("x", "{{ ''.__class__.__mro__ }}"), "inbox", {})


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "步|秒",
        ),
        (
            "{% set s = 'x' * 60000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
            "步|秒",
        ),
        ("{{ 'x' * 10**10 }}", "过大"),
        ("{{ [1] * 10**9 }}", "过大"),
        ("{{ 7 ** 1000000 }}", "过大"),
        ("{{ '%0999999999d' % 1 }}", "过大"),
        ("{{ 'x' | center(10**9) }}", "过大"),
        ("{{ ('x' * 60000) | replace('', 'y' * 60000) }}", "过大"),
        ("{{ range(60000) | join('y' * 60000) }}", "过大"),
        ("{{ range(60000) | map('string') | join('y' * 60000) }}", "过大|步|秒"),
        ("{{ range(100000) | map('center', 60000) | list | length }}", "计算量|步|秒"),
        ("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", "输出"),
        (  # ~ joins in one C call, past the binop hook: each level ten times the last
            "{% set a = 'x' * 60000 %}{% set b = a~a~a~a~a~a~a~a~a~a %}"
            "{% set c = b~b~b~b~b~b~b~b~b~b %}{{ c | length }}",
            "~",
        ),
        (
            "{% macro m(n) %}{% if n %}{% set a = m(n-1) %}{{ a }}{{ a }}{% endif %}x{% endmacro %}"
            "{{ m(60) }}",
            "宏",
        ),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "无法渲染"),
        ("{{ 'x'.center(10**9) }}", "unsafe"),
        ("{{ '{:>999999999}'.format(1) }}", "unsafe"),
        ("{% set l = [] %}{% for i in range(100) %}{{ l.append(l) }}{% endfor %}", "unsafe"),
        ("{{ lipsum(100000) }}", "lipsum"),
        ("{{ [1] | tojson(indent=100000) }}", "tojson"),
    ],
)
def test_a_template_that_would_run_or_grow_without_end_is_refused(source, reason):
    with pytest.raises(TemplateError, match=reason) as refused:
        render(Template("通知", source), "inbox", {})
    assert refused.value.field == "body"


def test_the_bounds_leave_ordinary_templates_alone():
    source = (
        "{{ name }}：{{ amount | int }}元，{{ title | replace('村', '社区') | truncate(10) }}"
        "{% for item in items %}{{ loop.index }}.{{ item | upper }}{% endfor %}"
        "{{ items | join('、') }}{{ '%s期' % period }}"
    )
    context = {"name": "王书记", "amount": 1_200_000, "title": "后关堤村路灯", "items": ["a", "b"]}
    out = render(Template("第{{ period }}期", source), "inbox", {**context, "period": 3})
    assert out.subject == "第3期"
    assert out.body == "王书记：1200000元，后关堤社区路灯1.A2.Ba、b3期"


# -- personal data, reminders, readers ------------------------------------------------------------


def test_masking():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_email("wang.shuji@example.cn") == "w***@example.cn"
    assert mask_url("https://oapi.dingtalk.com/robot/send?access_token=abc") == (
        "https://oapi.dingtalk.com/…"
    )


def test_reminders_fall_on_the_working_day_before():
    # National Day 2026: 1–7 October off, Saturday 10 October a working day
    assert forum_eve_due(dt.date(2026, 10, 8)) == dt.datetime(2026, 9, 30, 9, 0, tzinfo=SHANGHAI)
    assert forum_eve_due(dt.date(2026, 10, 12)) == dt.datetime(2026, 10, 10, 9, 0, tzinfo=SHANGHAI)
    closes = dt.datetime(2026, 10, 23, 17, 30, tzinfo=SHANGHAI)
    assert call_closing_due(closes) == dt.datetime(2026, 10, 22, 9, 0, tzinfo=SHANGHAI)


def test_readers_agree_with_what_topics_and_meetings_publish():
    assert reader_breaks(merge([topics, meetings, rectification]), DOCS) == []
