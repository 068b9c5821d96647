"""Command handlers: load the aggregate, let the domain decide, append at the loaded version.

Handlers know nothing of HTTP or Kafka: the adapters authorise the caller, translate the
request and pass the time (``today``/``now``) and the ``CommandContext``. A policy reacting to
another service's event passes ``conn`` so its events commit with the consumer's processed mark.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import asyncpg
from cunzhi_platform.aggregate import InvalidTransition, NotFound
from cunzhi_platform.application import execute, load
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import ConcurrencyError, EventStore

from .domain import (
    AttendanceMark,
    Contest,
    Forum,
    RaisedIssue,
    ResolutionDraft,
    Roster,
    RosterMember,
    SpeakUpSession,
    contest_stream_id,
    forum_stream_id,
    months_to_plan,
    parse_forum_id,
    quarter_of,
    roster_stream_id,
    speak_up_stream_id,
)
from .events import ContestParticipant, ExpertLecture, ForumMode, GuestSpeaker, Policy

PLAN_ATTEMPTS = 5
"""Planners racing for the same number: each loser moves to the next number this often."""
DEFAULT_PLACE = "乡政府会议室"
"""Where a forum planned by the service itself meets when the last one was a field visit."""


def forum_township(forum_id: str) -> str:
    """The township a public forum id belongs to; an id that cannot be a forum is not found."""
    return _parse(forum_id)[0]


def forum_stream(forum_id: str) -> str:
    return forum_stream_id(*_parse(forum_id))


def _parse(forum_id: str) -> tuple[str, int]:
    try:
        return parse_forum_id(forum_id)
    except ValueError:
        raise NotFound(
            f"there is no forum {forum_id!r}; forum ids look like 'guandi-F018'"
        ) from None


# --- roster --------------------------------------------------------------------------------


async def import_roster(
    store: EventStore, township_id: str, members: Sequence[RosterMember], ctx: CommandContext
) -> list[Event]:
    """Add or update members; importing the same rows again appends nothing."""
    roster = await load(store, Roster, roster_stream_id(township_id))
    events = roster.add_members(members)
    if events:
        await store.append(roster.id, roster.version, events, ctx)
    return events


async def remove_roster_member(
    store: EventStore, township_id: str, person_id: str, reason: str, ctx: CommandContext
) -> None:
    await execute(
        store,
        Roster,
        roster_stream_id(township_id),
        lambda roster: roster.remove_member(person_id, reason),
        ctx,
    )


# --- forum ---------------------------------------------------------------------------------


async def plan_forum(
    store: EventStore,
    township_id: str,
    *,
    highest_known_number: int,
    today: dt.date,
    ctx: CommandContext,
    place: str,
    date: dt.date | None = None,
    mode: ForumMode = "at_township",
    host_unit: str | None = None,
    expert_lectures: Sequence[ExpertLecture] = (),
    exchange_speaker_ids: Sequence[str] = (),
    guest_speakers: Sequence[GuestSpeaker] = (),
    discussion: bool = True,
    conn: asyncpg.Connection | None = None,
) -> Forum:
    """Plan the township's next forum.

    ``highest_known_number`` comes from a read model that may lag, so streams already taken are
    skipped by probing the store; ``ForumPlanned`` is appended expecting version 0, so of two
    planners racing for one number the loser gets ``ConcurrencyError`` and takes the next.
    """
    roster = await load(store, Roster, roster_stream_id(township_id), conn=conn)
    number = highest_known_number + 1
    for _ in range(PLAN_ATTEMPTS):
        while await store.version(forum_stream_id(township_id, number)):
            number += 1
        forum = Forum(forum_stream_id(township_id, number))
        events = forum.plan(
            place=place,
            roster=roster,
            today=today,
            date=date,
            mode=mode,
            host_unit=host_unit,
            expert_lectures=expert_lectures,
            exchange_speaker_ids=exchange_speaker_ids,
            guest_speakers=guest_speakers,
            discussion=discussion,
        )
        try:
            await store.append(forum.id, 0, events, ctx, conn=conn)
        except ConcurrencyError:
            number += 1
            continue
        for e in events:
            forum.apply(e)
        return forum
    raise ConcurrencyError(forum_stream_id(township_id, number), 0)


async def plan_year(
    store: EventStore,
    township_id: str,
    year: int,
    *,
    highest_known_number: int,
    planned_months: set[int],
    today: dt.date,
    ctx: CommandContext,
    place: str,
) -> list[Forum]:
    """Plan a forum for every month of ``year`` still to come that has none (month end)."""
    planned = []
    for date in months_to_plan(year, today, planned_months):
        forum = await plan_forum(
            store,
            township_id,
            highest_known_number=highest_known_number,
            today=today,
            ctx=ctx,
            place=place,
            date=date,
        )
        highest_known_number = forum.number
        planned.append(forum)
    return planned


async def plan_after_closing(
    store: EventStore,
    closed_forum_id: str,
    *,
    highest_known_number: int,
    today: dt.date,
    ctx: CommandContext,
    conn: asyncpg.Connection | None = None,
) -> Forum:
    """The township's next forum at month end, where the closed one met (at the township)."""
    closed = await load(store, Forum, forum_stream(closed_forum_id), conn=conn)
    return await plan_forum(
        store,
        closed.township_id,
        highest_known_number=highest_known_number,
        today=today,
        ctx=ctx,
        place=closed.place if closed.mode == "at_township" else DEFAULT_PLACE,
        conn=conn,
    )


async def record_past_forum(
    store: EventStore,
    township_id: str,
    number: int,
    *,
    today: dt.date,
    ctx: CommandContext,
    place: str,
    date: dt.date,
    topic_title: str,
    problem_solved: bool,
    category: str | None = None,
    mode: ForumMode = "at_township",
    host_unit: str | None = None,
    expert_lectures: Sequence[ExpertLecture] = (),
    guest_speakers: Sequence[GuestSpeaker] = (),
    policies: Sequence[Policy] = (),
    discussion: bool = True,
) -> Forum:
    """Enter forum ``number`` from the township's paper ledger; a number in use is refused (409)."""
    forum = Forum(forum_stream_id(township_id, number))
    events = forum.record_past(
        date=date,
        today=today,
        place=place,
        topic_title=topic_title,
        problem_solved=problem_solved,
        category=category,
        mode=mode,
        host_unit=host_unit,
        expert_lectures=expert_lectures,
        guest_speakers=guest_speakers,
        policies=policies,
        discussion=discussion,
    )
    if await store.version(forum.id):
        raise InvalidTransition(
            f"forum number {number} of {township_id} is already used; the ledger's forums "
            "keep their own numbers"
        )
    await store.append(forum.id, 0, events, ctx)
    for e in events:
        forum.apply(e)
    return forum


async def add_invitee(
    store: EventStore,
    forum_id: str,
    *,
    name: str,
    role: str,
    village_id: str | None,
    person_id: str | None,
    ctx: CommandContext,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.add_invitee(name=name, role=role, village_id=village_id, person_id=person_id),
        ctx,
    )


async def set_topic(
    store: EventStore,
    forum_id: str,
    *,
    topic_id: str,
    title: str,
    category: str,
    ctx: CommandContext,
    conn: asyncpg.Connection | None = None,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.set_topic(topic_id=topic_id, title=title, category=category),
        ctx,
        conn=conn,
    )


async def issue_notice(
    store: EventStore, forum_id: str, *, now: dt.datetime, ctx: CommandContext
) -> Forum:
    """The notice by hand: any time before the forum once it has a topic."""
    forum = await load(store, Forum, forum_stream(forum_id))
    return await _notify(store, forum, now=now, automatic=False, ctx=ctx)


async def prepare_remarks(
    store: EventStore, forum_id: str, person_id: str, summary: str, *, ctx: CommandContext
) -> Forum:
    now = store.clock.now()
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.prepare_remarks(person_id, summary, now=now),
        ctx,
    )


async def issue_due_notice(
    store: EventStore, forum_id: str, *, now: dt.datetime, ctx: CommandContext
) -> Forum | None:
    """The automatic notice, if the forum as stored now is due for it (else ``None``)."""
    forum = await load(store, Forum, forum_stream(forum_id))
    if not forum.is_notice_due(now):
        return None
    return await _notify(store, forum, now=now, automatic=True, ctx=ctx)


async def _notify(
    store: EventStore, forum: Forum, *, now: dt.datetime, automatic: bool, ctx: CommandContext
) -> Forum:
    """Tell the roster as it is now and the forum's invitees."""
    roster = await load(store, Roster, roster_stream_id(forum.township_id))
    events = forum.issue_notice(roster, now=now, automatic=automatic)
    await store.append(forum.id, forum.version, events, ctx)
    for e in events:
        forum.apply(e)
    return forum


async def postpone(
    store: EventStore,
    forum_id: str,
    *,
    new_date: dt.date,
    reason: str,
    today: dt.date,
    ctx: CommandContext,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.postpone(new_date, reason, today=today),
        ctx,
    )


async def cancel(store: EventStore, forum_id: str, *, reason: str, ctx: CommandContext) -> Forum:
    return await execute(store, Forum, forum_stream(forum_id), lambda f: f.cancel(reason), ctx)


async def hold(
    store: EventStore,
    forum_id: str,
    *,
    attendance: Sequence[AttendanceMark],
    speakers: Sequence[str],
    minutes: str,
    today: dt.date,
    ctx: CommandContext,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.hold(attendance, speakers=speakers, minutes=minutes, today=today),
        ctx,
    )


async def adopt_resolutions(
    store: EventStore,
    forum_id: str,
    *,
    resolutions: Sequence[ResolutionDraft],
    today: dt.date,
    ctx: CommandContext,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.adopt_resolutions(resolutions, today=today),
        ctx,
    )


async def complete_task(
    store: EventStore,
    forum_id: str,
    *,
    task_id: str,
    completed_on: dt.date,
    ctx: CommandContext,
    conn: asyncpg.Connection | None = None,
) -> Forum:
    return await execute(
        store,
        Forum,
        forum_stream(forum_id),
        lambda f: f.complete_task(task_id, completed_on=completed_on),
        ctx,
        conn=conn,
    )


# --- other meetings ------------------------------------------------------------------------


async def hold_speak_up_session(
    store: EventStore,
    village_id: str,
    *,
    township_id: str,
    date: dt.date,
    attendance_count: int,
    issue_ids: Sequence[str],
    known_issues: Mapping[str, RaisedIssue],
    hosted_by: str,
    today: dt.date,
    ctx: CommandContext,
) -> SpeakUpSession:
    return await execute(
        store,
        SpeakUpSession,
        speak_up_stream_id(village_id, date),
        lambda s: s.hold(
            township_id=township_id,
            attendance_count=attendance_count,
            issue_ids=issue_ids,
            known_issues=known_issues,
            hosted_by=hosted_by,
            today=today,
        ),
        ctx,
    )


async def hold_contest(
    store: EventStore,
    township_id: str,
    *,
    date: dt.date,
    participants: Sequence[ContestParticipant],
    ranking: Sequence[str],
    today: dt.date,
    ctx: CommandContext,
) -> Contest:
    """Recorded under the quarter of its date: one contest per township and quarter."""
    return await execute(
        store,
        Contest,
        contest_stream_id(township_id, date.year, quarter_of(date)),
        lambda c: c.hold(date=date, participants=participants, ranking=ranking, today=today),
        ctx,
    )
