"""Command handlers of the topics service: load the streams, let the domain decide, append.

A decision that touches several streams (merge, select, promote) appends all of them in one
``append_many`` at the versions they were loaded at: a concurrent change anywhere refuses the
whole decision (409) and nothing is half-written.

Authorisation lives here, beside the decisions, because most of it needs the loaded state (the
township of a topic, the village of an issue). Roles and jurisdiction come from the caller's
token (``Principal``):

- a village secretary (``village_secretary``) acts for the villages of their ``village_ids``;
- a station head (``station_head``) acts for a township functional station (站所) of their
  ``station_ids``, and submits township-wide topics about any villages of the township, or
  none in particular;
- the party-building office (``party_building_office``) consolidates, and adds the township's
  own topic categories, and the township committee (``township_committee``) selects, for the
  townships of their ``township_ids``;
- staff of a county department (``county_department``) answer the topics referred to one of
  their ``department_ids``;
- a party member (``party_member``) or village secretary claims issues of the villages of their
  ``village_ids``, and a township cadre (office, committee) those of their townships: the
  claim list is for "党员干部", party members and cadres.

Every one of them also needs the township in ``township_ids``: village and station ids do not
say which township they are in, so the token does.

Client-chosen ids make retries safe: submitting, raising or promoting again with an id that
already went through, with the same content, returns that id and appends nothing — also when two
instances race on the id (the loser of the version check looks again). The same id with other
content is refused (409), so nothing a client sent is silently dropped.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import asyncpg
from cunzhi_platform.aggregate import Aggregate, DomainError, Forbidden, InvalidTransition, NotFound
from cunzhi_platform.application import execute, load
from cunzhi_platform.auth import COUNTY_DEPARTMENT, Principal
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import ConcurrencyError, EventStore, StreamWrite

from .domain import (
    CallForTopics,
    Claimant,
    Disposition,
    Issue,
    StationHead,
    Submitter,
    Topic,
    TownshipCategories,
    VillageSecretary,
    call_stream_id,
    cancel_forum_call,
    categories_stream_id,
    issue_stream_id,
    merge_topics,
    promote_issue,
    select_topic,
    topic_stream_id,
)
from .events import IssueRaised, ReferralAnswer, TopicCarriedOver, TopicSubmitted

VILLAGE_SECRETARY = "village_secretary"
STATION_HEAD = "station_head"
OFFICE = "party_building_office"
COMMITTEE = "township_committee"
PARTY_MEMBER = "party_member"


# -- loading and saving -----------------------------------------------------------------------


async def load_call(
    store: EventStore, township_id: str, forum_id: str, *, conn: asyncpg.Connection | None = None
) -> CallForTopics:
    return await load(store, CallForTopics, call_stream_id(township_id, forum_id), conn=conn)


async def load_topic(
    store: EventStore, topic_id: str, *, conn: asyncpg.Connection | None = None
) -> Topic:
    return await load(store, Topic, topic_stream_id(topic_id), conn=conn)


async def load_issue(store: EventStore, issue_id: str) -> Issue:
    return await load(store, Issue, issue_stream_id(issue_id))


async def load_categories(store: EventStore, township_id: str) -> TownshipCategories:
    return await load(store, TownshipCategories, categories_stream_id(township_id))


async def _extra_categories(store: EventStore, township_id: str) -> frozenset[str]:
    """The township's own category codes, for the commands that set a topic's category.

    The decision is appended without holding the categories stream at the version read here:
    categories are only ever added, so a concurrent addition can at worst refuse its code a
    moment early (see ``domain.categories``).
    """
    return (await load_categories(store, township_id)).codes


async def _save(
    store: EventStore,
    ctx: CommandContext,
    by_stream: Mapping[str, Sequence[Event]],
    loaded: Iterable[Aggregate],
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    """Append a multi-stream decision at the versions its aggregates were loaded at."""
    versions = {agg.id: agg.version for agg in loaded}
    await store.append_many(
        [StreamWrite(stream, versions[stream], events) for stream, events in by_stream.items()],
        ctx,
        conn=conn,
    )


def new_id(given: str | None) -> str:
    return given or uuid.uuid4().hex


async def _first_event(store: EventStore, stream_id: str) -> Event | None:
    stored = await store.load(stream_id)
    return stored[0].event if stored else None


async def _once_more_on_conflict(attempt: Callable[[], Awaitable[str]]) -> str:
    """Another instance stored the client-chosen id meanwhile: look again (a retry, or taken)."""
    try:
        return await attempt()
    except ConcurrencyError:
        return await attempt()


def _id_taken(what: str, given: str) -> InvalidTransition:
    return InvalidTransition(
        f"{what} id {given} is already used with other content; to retry, send exactly what "
        f"you sent before, otherwise choose a new {what}_id (or leave it out)",
        field=f"{what}_id",
    )


# -- authorisation ----------------------------------------------------------------------------


def submitter_of(
    principal: Principal, *, station_id: str | None = None, village_id: str | None = None
) -> Submitter:
    """Who submits: the head of ``station_id`` if given, else the secretary of their village.

    A secretary whose token names several villages says which one with ``village_id``.
    """
    if station_id is not None:
        principal.require_role(STATION_HEAD)
        if station_id not in principal.station_ids:
            raise Forbidden(
                f"station {station_id} is outside your jurisdiction", field="station_id"
            )
        return StationHead(principal.sub, station_id)
    principal.require_role(VILLAGE_SECRETARY)
    return VillageSecretary(principal.sub, _own_village(principal, village_id))


def _own_village(principal: Principal, village_id: str | None) -> str:
    if village_id is None:
        if len(principal.village_ids) != 1:
            raise DomainError(
                "your token names several villages (or none); say which one you act for",
                field="village_id",
            )
        (village_id,) = principal.village_ids
    if village_id not in principal.village_ids:
        raise Forbidden(f"village {village_id} is outside your jurisdiction", field="village_id")
    return village_id


def _as_original_submitter(topic: Topic, principal: Principal) -> Submitter:
    """The caller in the capacity the topic was submitted in (for a revision's villages)."""
    own = next((s for s in topic.sources if s.topic_id == topic.topic_id), None)
    if own is not None and own.submitter_role == STATION_HEAD and own.station_id is not None:
        return StationHead(principal.sub, own.station_id)
    return VillageSecretary(principal.sub, own.village_id if own and own.village_id else "")


# -- the call for topics (policies and timers) --------------------------------------------------


async def schedule_call(
    store: EventStore,
    ctx: CommandContext,
    township_id: str,
    forum_id: str,
    forum_date: dt.date,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    call = await load_call(store, township_id, forum_id, conn=conn)
    events = call.schedule(forum_date, store.clock.now())
    await store.append(call.id, call.version, events, ctx, conn=conn)


async def postpone_call(
    store: EventStore,
    ctx: CommandContext,
    township_id: str,
    forum_id: str,
    forum_date: dt.date,
    reason: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    call = await load_call(store, township_id, forum_id, conn=conn)
    events = call.reschedule(forum_date, reason, store.clock.now())
    await store.append(call.id, call.version, events, ctx, conn=conn)


async def cancel_call(
    store: EventStore,
    ctx: CommandContext,
    township_id: str,
    forum_id: str,
    reason: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    call = await load_call(store, township_id, forum_id, conn=conn)
    topics = [
        await load_topic(store, topic_id, conn=conn)
        for topic_id in await _call_topic_ids(store, township_id, forum_id)
    ]
    by_stream = cancel_forum_call(call, topics, reason, store.clock.now())
    await _save(store, ctx, by_stream, [call, *topics], conn=conn)


async def _call_topic_ids(store: EventStore, township_id: str, forum_id: str) -> list[str]:
    """Every topic ever submitted or carried into the call, from the event store: a topic
    submitted a moment ago must not escape a decision about the whole call."""
    streams = await store.stream_ids(
        [TopicSubmitted.event_type, TopicCarriedOver.event_type],
        {"township_id": township_id, "forum_id": forum_id},
    )
    return [stream.removeprefix("topic:") for stream in streams]


async def open_call(
    store: EventStore, ctx: CommandContext, township_id: str, forum_id: str
) -> None:
    call = await load_call(store, township_id, forum_id)
    await store.append(call.id, call.version, call.open(store.clock.now()), ctx)


async def close_call(
    store: EventStore, ctx: CommandContext, township_id: str, forum_id: str
) -> None:
    call = await load_call(store, township_id, forum_id)
    await store.append(call.id, call.version, call.close(store.clock.now()), ctx)


async def carry_over(
    store: EventStore,
    ctx: CommandContext,
    topic_id: str,
    township_id: str,
    forum_id: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    topic = await load_topic(store, topic_id, conn=conn)
    call = await load_call(store, township_id, forum_id, conn=conn)
    events = topic.carry_over(call, store.clock.now())
    await store.append(topic.id, topic.version, events, ctx, conn=conn)


async def resolve_topic(
    store: EventStore,
    ctx: CommandContext,
    topic_id: str,
    forum_id: str,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    topic = await load_topic(store, topic_id, conn=conn)
    events = topic.resolve(forum_id, store.clock.now())
    await store.append(topic.id, topic.version, events, ctx, conn=conn)


# -- the submitters ---------------------------------------------------------------------------


async def submit_topic(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    township_id: str,
    forum_id: str,
    submitter: Submitter,
    *,
    title: str,
    description: str,
    category: str,
    village_ids: Sequence[str],
    topic_id: str | None = None,
) -> str:
    principal.require_township(township_id)
    chosen = new_id(topic_id)

    async def attempt() -> str:
        topic = await load_topic(store, chosen)
        if topic.exists:
            first = await _first_event(store, topic.id)
            if (
                isinstance(first, TopicSubmitted)
                and (first.township_id, first.forum_id) == (township_id, forum_id)
                and first.submitted_by == principal.sub
                and (first.title, first.description) == (title.strip(), description.strip())
                and first.category == category
                and set(village_ids) <= set(first.village_ids)
            ):
                return topic.topic_id  # a retry of a submission that went through
            raise _id_taken("topic", chosen)
        call = await load_call(store, township_id, forum_id)
        events = topic.submit(
            call,
            submitter,
            title,
            description,
            category,
            village_ids,
            store.clock.now(),
            extra_categories=await _extra_categories(store, township_id),
        )
        await store.append(topic.id, topic.version, events, ctx)
        return topic.topic_id

    return await _once_more_on_conflict(attempt)


async def revise_topic(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    topic_id: str,
    *,
    title: str | None = None,
    description: str | None = None,
    category: str | None = None,
    village_ids: Sequence[str] | None = None,
) -> None:
    principal.require_role(VILLAGE_SECRETARY, STATION_HEAD)
    topic = await _topic_in_jurisdiction(store, principal, topic_id)
    call = await load_call(store, topic.township_id, topic.forum_id)
    events = topic.revise(
        call,
        _as_original_submitter(topic, principal),
        store.clock.now(),
        title=title,
        description=description,
        category=category,
        village_ids=village_ids,
        extra_categories=await _extra_categories(store, topic.township_id),
    )
    await store.append(topic.id, topic.version, events, ctx)


async def withdraw_topic(
    store: EventStore, ctx: CommandContext, principal: Principal, topic_id: str, reason: str
) -> None:
    principal.require_role(VILLAGE_SECRETARY, STATION_HEAD)
    topic = await _topic_in_jurisdiction(store, principal, topic_id)
    call = await load_call(store, topic.township_id, topic.forum_id)
    events = topic.withdraw(call, principal.sub, store.clock.now(), reason)
    await store.append(topic.id, topic.version, events, ctx)


async def support_topic(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    topic_id: str,
    village_id: str | None,
) -> None:
    principal.require_role(VILLAGE_SECRETARY, STATION_HEAD)
    village = _own_village(principal, village_id)
    topic = await _topic_in_jurisdiction(store, principal, topic_id)
    events = topic.support(principal.sub, village, store.clock.now())
    await store.append(topic.id, topic.version, events, ctx)


async def _topic_in_jurisdiction(store: EventStore, principal: Principal, topic_id: str) -> Topic:
    topic = await load_topic(store, topic_id)
    if topic.exists:
        principal.require_township(topic.township_id)
    return topic


# -- the party-building office ----------------------------------------------------------------


async def merge(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    survivor_id: str,
    merged_topic_ids: Sequence[str],
) -> None:
    principal.require_role(OFFICE)
    survivor = await _topic_in_jurisdiction(store, principal, survivor_id)
    merged = [await load_topic(store, topic_id) for topic_id in merged_topic_ids]
    for topic in merged:
        if topic.exists and topic.township_id not in principal.township_ids:
            # Named by the id the caller gave: nothing of another township's topic is told.
            raise Forbidden(
                f"topic {topic.topic_id} is outside your jurisdiction", field="merged_topic_ids"
            )
    by_stream = merge_topics(survivor, merged, principal.sub, store.clock.now())
    await _save(store, ctx, by_stream, [survivor, *merged])


async def shortlist(
    store: EventStore, ctx: CommandContext, principal: Principal, topic_id: str
) -> None:
    principal.require_role(OFFICE)
    topic = await _topic_in_jurisdiction(store, principal, topic_id)
    events = topic.shortlist(principal.sub, store.clock.now())
    await store.append(topic.id, topic.version, events, ctx)


async def answer_referral(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    topic_id: str,
    answer: ReferralAnswer,
    note: str,
) -> None:
    """Staff of the department a topic was referred to answer it (see ``Topic.answer_referral``)."""
    principal.require_role(COUNTY_DEPARTMENT)
    now = store.clock.now()
    await execute(
        store,
        Topic,
        topic_stream_id(topic_id),
        lambda t: t.answer_referral(principal.department_ids, answer, note, principal.sub, now),
        ctx,
    )


async def recategorise(
    store: EventStore, ctx: CommandContext, principal: Principal, topic_id: str, category: str
) -> None:
    principal.require_role(OFFICE)
    topic = await _topic_in_jurisdiction(store, principal, topic_id)
    events = topic.recategorise(
        category,
        principal.sub,
        store.clock.now(),
        extra_categories=await _extra_categories(store, topic.township_id),
    )
    await store.append(topic.id, topic.version, events, ctx)


async def add_category(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    township_id: str,
    code: str,
    label: str,
) -> None:
    """The township's topics may use ``code`` from now on; adding it again changes nothing."""
    principal.require_role(OFFICE)
    principal.require_township(township_id)
    categories = await load_categories(store, township_id)
    events = categories.add(code, label, principal.sub, store.clock.now())
    await store.append(categories.id, categories.version, events, ctx)


# -- the township committee -------------------------------------------------------------------


async def select(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    township_id: str,
    forum_id: str,
    chosen_id: str,
    dispositions: Mapping[str, Disposition],
) -> None:
    """Every undecided topic of the call gets a disposition (see ``_call_topic_ids``)."""
    principal.require_role(COMMITTEE)
    principal.require_township(township_id)
    call = await load_call(store, township_id, forum_id)
    chosen = await load_topic(store, chosen_id)
    call_topic_ids = await _call_topic_ids(store, township_id, forum_id)
    others = [
        await load_topic(store, topic_id)
        for topic_id in dict.fromkeys([*call_topic_ids, *dispositions])
        if topic_id != chosen_id
    ]
    by_stream = select_topic(call, chosen, others, dispositions, principal.sub, store.clock.now())
    await _save(store, ctx, by_stream, [call, chosen, *others])


# -- speak-up issues and claims ---------------------------------------------------------------


async def raise_issue(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    township_id: str,
    village_id: str,
    *,
    title: str,
    description: str,
    raised_on: dt.date | None,
    villager_name: str | None,
    issue_id: str | None = None,
) -> str:
    principal.require_role(VILLAGE_SECRETARY, STATION_HEAD)
    principal.require_township(township_id)
    _own_village(principal, village_id)
    chosen = new_id(issue_id)

    async def attempt() -> str:
        issue = await load_issue(store, chosen)
        if issue.exists:
            first = await _first_event(store, issue.id)
            if (
                isinstance(first, IssueRaised)
                and (first.township_id, first.village_id) == (township_id, village_id)
                and first.raised_by == principal.sub
                and (first.title, first.description) == (title.strip(), description.strip())
                and first.villager_name == ((villager_name or "").strip() or None)
                and raised_on in (None, first.raised_on)
            ):
                return issue.issue_id  # a retry of an issue that went through
            raise _id_taken("issue", chosen)
        now = store.clock.now()
        events = issue.raise_issue(
            township_id,
            village_id,
            principal.sub,
            title,
            description,
            raised_on or now.date(),
            now,
            villager_name=villager_name,
        )
        await store.append(issue.id, issue.version, events, ctx)
        return issue.issue_id

    return await _once_more_on_conflict(attempt)


async def claim_issue(
    store: EventStore, ctx: CommandContext, principal: Principal, issue_id: str
) -> None:
    principal.require_role(PARTY_MEMBER, VILLAGE_SECRETARY, OFFICE, COMMITTEE)
    issue = await load_issue(store, issue_id)
    claimant = Claimant(
        principal.sub,
        villages=principal.village_ids
        if principal.has_role(PARTY_MEMBER, VILLAGE_SECRETARY)
        else frozenset(),
        townships=principal.township_ids if principal.has_role(OFFICE, COMMITTEE) else frozenset(),
    )
    events = issue.claim(claimant, store.clock.now())
    await store.append(issue.id, issue.version, events, ctx)


async def report_progress(
    store: EventStore, ctx: CommandContext, principal: Principal, issue_id: str, note: str
) -> None:
    now = store.clock.now()
    await execute(
        store,
        Issue,
        issue_stream_id(issue_id),
        lambda i: i.report_progress(principal.sub, note, now),
        ctx,
    )


async def close_issue(
    store: EventStore, ctx: CommandContext, principal: Principal, issue_id: str, outcome: str
) -> None:
    now = store.clock.now()
    await execute(
        store, Issue, issue_stream_id(issue_id), lambda i: i.close(principal.sub, outcome, now), ctx
    )


async def promote(
    store: EventStore,
    ctx: CommandContext,
    principal: Principal,
    issue_id: str,
    forum_id: str | None,
    submitter: Submitter,
    open_forum_of: Callable[[str], Awaitable[str | None]],
    *,
    category: str,
    title: str | None = None,
    description: str | None = None,
    village_ids: Sequence[str] | None = None,
    topic_id: str | None = None,
) -> tuple[str, str]:
    """Make the issue a topic of ``forum_id``'s call, by default the township's open call
    (``open_forum_of(township_id)`` looks it up); returns the topic and forum ids."""
    issue = await load_issue(store, issue_id)
    if not issue.exists:
        raise NotFound(f"there is no issue {issue_id}")
    principal.require_township(issue.township_id)
    topic = await load_topic(store, new_id(topic_id))
    if topic.exists and issue.promoted_to == topic.topic_id:
        first = await _first_event(store, topic.id)
        if (
            isinstance(first, TopicSubmitted)
            and forum_id in (None, first.forum_id)
            and first.category == category
            and (first.title, first.description)
            == (
                (title or issue.title).strip(),
                (description or issue.description).strip(),
            )
            and set(village_ids or [issue.village_id]) <= set(first.village_ids)
        ):
            return topic.topic_id, topic.forum_id  # a retry of a promotion that went through
        raise _id_taken("topic", topic.topic_id)
    forum_id = forum_id or await open_forum_of(issue.township_id)
    if forum_id is None:
        raise InvalidTransition(
            f"township {issue.township_id} has no open call for topics; promote the issue "
            "when the next call opens, 10 days before the next forum",
            field="forum_id",
        )
    call = await load_call(store, issue.township_id, forum_id)
    by_stream = promote_issue(
        issue,
        topic,
        call,
        submitter,
        category,
        store.clock.now(),
        title=title,
        description=description,
        village_ids=village_ids,
        extra_categories=await _extra_categories(store, issue.township_id),
    )
    await _save(store, ctx, by_stream, [issue, topic])
    return topic.topic_id, forum_id
