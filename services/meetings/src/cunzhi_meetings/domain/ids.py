"""Stream ids and public ids of the meetings aggregates.

A forum's number is sequential per township and part of its stream id: the application layer
appends ``ForumPlanned`` expecting version 0, so two planners racing for the same number
conflict and the loser retries with the next number.
"""

from __future__ import annotations

import datetime as dt


def roster_stream_id(township_id: str) -> str:
    return f"roster:{township_id}"


def parse_roster_stream_id(value: str) -> str:
    prefix, sep, township_id = value.partition(":")
    if prefix != "roster" or not sep or not township_id:
        raise ValueError(f"{value!r} is not a roster stream id like 'roster:guandi'")
    return township_id


def forum_stream_id(township_id: str, number: int) -> str:
    return f"forum:{township_id}:{number}"


def forum_id(township_id: str, number: int) -> str:
    """The id people and other services use: ``guandi-F018`` for Guandi's 18th forum."""
    return f"{township_id}-F{number:03d}"


MAX_ID_LENGTH = 64
"""The longest id other services accept (the platform's shared id pattern)."""


def task_id(forum_id: str, given: str) -> str:
    """A resolution's task id, unique county-wide: the forum's id, a dash, the id given.

    Rectification tracks every task of every forum under its id, so ``T1`` of two forums must
    not be the same task. An id that already begins with the forum's id is kept as it is.
    """
    prefix = f"{forum_id}-"
    return given if given.startswith(prefix) else prefix + given


def parse_forum_id(value: str) -> tuple[str, int]:
    """``(township_id, number)`` of a forum id, e.g. from a rectification ``TaskCompleted``."""
    township_id, sep, number = value.rpartition("-F")
    if not sep or not township_id or not number.isdigit():
        raise ValueError(f"{value!r} is not a forum id like 'guandi-F018'")
    return township_id, int(number)


def parse_forum_stream_id(value: str) -> tuple[str, int]:
    prefix, _, rest = value.partition(":")
    township_id, sep, number = rest.rpartition(":")
    if prefix != "forum" or not sep or not township_id or not number.isdigit():
        raise ValueError(f"{value!r} is not a forum stream id like 'forum:guandi:18'")
    return township_id, int(number)


def speak_up_stream_id(village_id: str, day: dt.date) -> str:
    return f"speakup:{village_id}:{day.isoformat()}"


def parse_speak_up_stream_id(value: str) -> tuple[str, dt.date]:
    prefix, _, rest = value.partition(":")
    village_id, sep, day = rest.rpartition(":")
    if prefix != "speakup" or not sep or not village_id:
        raise ValueError(f"{value!r} is not a speak-up stream id like 'speakup:v01:2026-05-21'")
    return village_id, dt.date.fromisoformat(day)


def contest_stream_id(township_id: str, year: int, quarter: int) -> str:
    return f"contest:{township_id}:{year}Q{quarter}"


def parse_contest_stream_id(value: str) -> tuple[str, int, int]:
    prefix, _, rest = value.partition(":")
    township_id, sep, period = rest.rpartition(":")
    year, q, quarter = period.partition("Q")
    if (
        prefix != "contest"
        or not sep
        or not township_id
        or not q
        or not year.isdigit()
        or quarter not in {"1", "2", "3", "4"}
    ):
        raise ValueError(f"{value!r} is not a contest stream id like 'contest:guandi:2026Q2'")
    return township_id, int(year), int(quarter)


def quarter_of(day: dt.date) -> int:
    return (day.month - 1) // 3 + 1
