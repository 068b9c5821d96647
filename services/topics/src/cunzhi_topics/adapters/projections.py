"""Read models of the topics service, projected from its own events (rebuildable).

- ``calls``: each township's calls for topics, with their times and state (the timers find due
  calls here).
- ``topics``: each topic as it stands, filterable by township, forum (cycle), state, category
  and village (``village_ids`` is a ``text[]``).
- ``issues``: speak-up issues with their claim; the claim list of a village and the claims of a
  party member are queries on it.
- ``village_history``: one row per event and village concerned; ``seq`` keeps the order in
  which they were applied (one stream's events share a timestamp when a clock stands still).
- ``categories``: the topic categories each township added to the built-in ones.

Secondary indexes are left out on purpose: a rebuild creates fresh copies of these tables from
the DDL alone, and the DDL may not name indexes. Primary keys lead with the columns queries
filter on most (township, village).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cunzhi_platform.consumer import Consumer, Tx, table_names
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event

from ..events import (
    SERVICE,
    CallForTopicsCancelled,
    CallForTopicsClosed,
    CallForTopicsDecided,
    CallForTopicsOpened,
    CallForTopicsRescheduled,
    CallForTopicsScheduled,
    CategoryAdded,
    IssueClaimed,
    IssueClosed,
    IssueEvent,
    IssueProgressReported,
    IssuePromoted,
    IssueRaised,
    TopicCarriedOver,
    TopicDeclined,
    TopicDeferred,
    TopicEvent,
    TopicMergedInto,
    TopicRecategorised,
    TopicReferralAnswered,
    TopicReferred,
    TopicResolved,
    TopicReturned,
    TopicRevised,
    TopicSelected,
    TopicShortlisted,
    TopicsMerged,
    TopicSubmitted,
    TopicSupported,
    TopicWithdrawn,
)
from .similar import title_terms


@dataclass(frozen=True)
class Appended:
    """A value to append to an array column (``cast`` is the column's type)."""

    value: Any
    cast: str


async def update(tx: Tx, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
    """``UPDATE`` the row with ``key``; ``Appended`` values are concatenated, not replaced."""
    args = [*key.values(), *(v.value if isinstance(v, Appended) else v for v in values.values())]
    where = " AND ".join(f"{column} = ${i}" for i, column in enumerate(key, 1))
    assignments = ", ".join(
        f"{column} = {column} || ${i}::{value.cast}"
        if isinstance(value, Appended)
        else f"{column} = ${i}"
        for i, (column, value) in enumerate(values.items(), len(key) + 1)
    )
    await tx.conn.execute(f"UPDATE {tx.t(table)} SET {assignments} WHERE {where}", *args)


class ReadModels(Consumer):
    name = "read_models"
    topics: ClassVar = [topic_for(SERVICE)]
    # The pipeline and filters read by township, call and state; a village's topics by GIN;
    # a party member's claims by claimant.
    indexes: ClassVar = {
        "topics": ["township_id, forum_id, state", "USING gin (village_ids)"],
        "topic_terms": ["USING gin (terms)"],
        "issues": ["claimant_id"],
    }
    rebuildable = True
    version = 2  # 2: each stream's applied version kept with the tables (positions)
    tables: ClassVar = {
        "calls": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            forum_id text NOT NULL,
            forum_date date NOT NULL,
            opens_at timestamptz NOT NULL,
            closes_at timestamptz NOT NULL,
            state text NOT NULL,
            opened_at timestamptz,
            closed_at timestamptz,
            selected_topic_id text,
            decided_by text,
            decided_at timestamptz,
            PRIMARY KEY (township_id, forum_id))""",
        "topics": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            topic_id text NOT NULL UNIQUE,
            forum_id text NOT NULL,
            state text NOT NULL,
            title text NOT NULL,
            description text NOT NULL,
            category text NOT NULL,
            village_ids text[] NOT NULL,
            submitter_ids text[] NOT NULL,
            submitted_by text NOT NULL,
            submitter_role text NOT NULL,
            submitter_village_id text,
            submitter_station_id text,
            source_issue_id text,
            sources jsonb NOT NULL,
            supporters jsonb NOT NULL DEFAULT '[]',
            merged_topic_ids text[] NOT NULL DEFAULT '{{}}',
            merged_into text,
            department text,
            referral_answer text,
            referral_note text,
            reason text,
            carried_over_from text[] NOT NULL DEFAULT '{{}}',
            submitted_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (township_id, topic_id))""",
        "topic_terms": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            topic_id text NOT NULL,
            terms text[] NOT NULL,
            PRIMARY KEY (township_id, topic_id))""",
        "issues": """CREATE TABLE IF NOT EXISTS {table} (
            village_id text NOT NULL,
            issue_id text NOT NULL UNIQUE,
            township_id text NOT NULL,
            state text NOT NULL,
            title text NOT NULL,
            description text NOT NULL,
            villager_name text,
            raised_by text NOT NULL,
            raised_on date NOT NULL,
            speak_up_day date NOT NULL,
            on_speak_up_day boolean NOT NULL,
            claimant_id text,
            claimed_at timestamptz,
            progress jsonb NOT NULL DEFAULT '[]',
            outcome text,
            closed_at timestamptz,
            promoted_topic_id text,
            promoted_forum_id text,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (village_id, issue_id))""",
        "village_history": """CREATE TABLE IF NOT EXISTS {table} (
            village_id text NOT NULL,
            event_id uuid NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            township_id text NOT NULL,
            occurred_at timestamptz NOT NULL,
            event text NOT NULL,
            subject text NOT NULL,
            subject_id text NOT NULL,
            forum_id text,
            actor text,
            detail text,
            PRIMARY KEY (village_id, event_id))""",
        "categories": """CREATE TABLE IF NOT EXISTS {table} (
            township_id text NOT NULL,
            code text NOT NULL,
            label text NOT NULL,
            added_by text NOT NULL,
            added_at timestamptz NOT NULL,
            PRIMARY KEY (township_id, code))""",
    }

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        if isinstance(event, TopicEvent):
            await self._topic(tx, event, envelope)
            await _history(tx, event, envelope, event.village_ids, "topic", event.topic_id)
        elif isinstance(event, IssueEvent):
            await self._issue(tx, event, envelope)
            await _history(tx, event, envelope, [event.village_id], "issue", event.issue_id)
        elif isinstance(event, CategoryAdded):
            await _insert_category(tx, event)
        else:
            await self._call(tx, event)

    async def _call(self, tx: Tx, event: Event) -> None:
        match event:
            case CallForTopicsScheduled():
                await tx.conn.execute(
                    f"INSERT INTO {tx.t('calls')} (township_id, forum_id, forum_date, opens_at, "
                    "closes_at, state) VALUES ($1, $2, $3, $4, $5, 'scheduled') "
                    "ON CONFLICT DO NOTHING",
                    event.township_id,
                    event.forum_id,
                    event.forum_date,
                    event.opens_at,
                    event.closes_at,
                )
                return
            case CallForTopicsOpened():
                values: dict[str, Any] = {"state": "open", "opened_at": event.opened_at}
            case CallForTopicsClosed():
                values = {"state": "closed", "closed_at": event.closed_at}
            case CallForTopicsDecided():
                values = {
                    "state": "decided",
                    "selected_topic_id": event.selected_topic_id,
                    "decided_by": event.decided_by,
                    "decided_at": event.decided_at,
                }
            case CallForTopicsRescheduled():
                values = {
                    "forum_date": event.forum_date,
                    "opens_at": event.opens_at,
                    "closes_at": event.closes_at,
                }
                if event.reopens:
                    values["state"] = "scheduled"
            case CallForTopicsCancelled():
                values = {"state": "cancelled"}
            case _:
                return
        key = {"township_id": event.township_id, "forum_id": event.forum_id}
        await update(tx, "calls", key, values)

    async def _topic(self, tx: Tx, event: TopicEvent, envelope: Envelope) -> None:
        if isinstance(event, TopicSubmitted | TopicRevised | TopicSelected):
            await tx.conn.execute(
                f"INSERT INTO {tx.t('topic_terms')} (township_id, topic_id, terms) "
                "VALUES ($1, $2, $3) ON CONFLICT (township_id, topic_id) "
                "DO UPDATE SET terms = excluded.terms",
                event.township_id,
                event.topic_id,
                title_terms(event.title),
            )
        if isinstance(event, TopicSubmitted):
            await _insert_topic(tx, event)
            return
        values: dict[str, Any] = {
            "forum_id": event.forum_id,
            "village_ids": event.village_ids,
            "submitter_ids": event.submitter_ids,
            "updated_at": envelope.time,
        }
        match event:
            case TopicRevised() | TopicSelected():
                values |= {
                    "title": event.title,
                    "description": event.description,
                    "category": event.category,
                }
                if isinstance(event, TopicSelected):
                    values["state"] = "selected"
            case TopicWithdrawn():
                values |= {"state": "withdrawn", "reason": event.reason or None}
            case TopicSupported():
                supporter = {
                    "person_id": event.supporter_id,
                    "village_id": event.supporter_village_id,
                }
                values["supporters"] = Appended([supporter], "jsonb")
            case TopicsMerged():
                values |= {
                    "sources": [s.model_dump(mode="json") for s in event.sources],
                    "supporters": [s.model_dump(mode="json") for s in event.supporters],
                    "merged_topic_ids": Appended(event.merged_topic_ids, "text[]"),
                }
            case TopicMergedInto():
                values |= {"state": "merged", "merged_into": event.merged_into}
            case TopicShortlisted():
                values["state"] = "shortlisted"
            case TopicRecategorised():
                values["category"] = event.category
            case TopicDeferred():
                values["state"] = "deferred"
            case TopicReturned():
                values |= {"state": "deferred", "reason": event.reason}
            case TopicCarriedOver():
                values |= {
                    "state": "submitted",
                    "carried_over_from": Appended([event.from_forum_id], "text[]"),
                }
            case TopicReferred():
                values |= {"state": "referred", "department": event.department}
            case TopicReferralAnswered(answer="returned"):
                values |= {"state": "deferred", "reason": event.note}
            case TopicReferralAnswered():
                values |= {"referral_answer": event.answer, "referral_note": event.note or None}
            case TopicDeclined():
                values |= {"state": "declined", "reason": event.reason}
            case TopicResolved():
                values["state"] = "resolved"
        key = {"township_id": event.township_id, "topic_id": event.topic_id}
        await update(tx, "topics", key, values)

    async def _issue(self, tx: Tx, event: IssueEvent, envelope: Envelope) -> None:
        match event:
            case IssueRaised():
                await _insert_issue(tx, event, envelope)
                return
            case IssueClaimed():
                values: dict[str, Any] = {
                    "state": "claimed",
                    "claimant_id": event.claimant_id,
                    "claimed_at": event.claimed_at,
                }
            case IssueProgressReported():
                note = {"note": event.note, "reported_at": event.reported_at.isoformat()}
                values = {"progress": Appended([note], "jsonb")}
            case IssueClosed():
                values = {"state": "closed", "outcome": event.outcome, "closed_at": event.closed_at}
            case IssuePromoted():
                values = {
                    "state": "promoted",
                    "promoted_topic_id": event.topic_id,
                    "promoted_forum_id": event.forum_id,
                }
            case _:
                return
        values["updated_at"] = envelope.time
        await update(
            tx, "issues", {"village_id": event.village_id, "issue_id": event.issue_id}, values
        )


async def _insert_topic(tx: Tx, event: TopicSubmitted) -> None:
    source = {
        "topic_id": event.topic_id,
        "submitted_by": event.submitted_by,
        "submitter_role": event.submitter_role,
        "village_id": event.submitter_village_id,
        "station_id": event.submitter_station_id,
        "issue_id": event.source_issue_id,
    }
    await tx.conn.execute(
        f"INSERT INTO {tx.t('topics')} (township_id, topic_id, forum_id, state, title, "
        "description, category, village_ids, submitter_ids, submitted_by, submitter_role, "
        "submitter_village_id, submitter_station_id, source_issue_id, sources, submitted_at, "
        "updated_at) VALUES ($1, $2, $3, 'submitted', $4, $5, $6, $7, $8, $9, $10, $11, $12, "
        "$13, $14, $15, $15) ON CONFLICT DO NOTHING",
        event.township_id,
        event.topic_id,
        event.forum_id,
        event.title,
        event.description,
        event.category,
        event.village_ids,
        event.submitter_ids,
        event.submitted_by,
        event.submitter_role,
        event.submitter_village_id,
        event.submitter_station_id,
        event.source_issue_id,
        [source],
        event.submitted_at,
    )


async def _insert_issue(tx: Tx, event: IssueRaised, envelope: Envelope) -> None:
    await tx.conn.execute(
        f"INSERT INTO {tx.t('issues')} (village_id, issue_id, township_id, state, title, "
        "description, villager_name, raised_by, raised_on, speak_up_day, on_speak_up_day, "
        "updated_at) VALUES ($1, $2, $3, 'raised', $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT DO NOTHING",
        event.village_id,
        event.issue_id,
        event.township_id,
        event.title,
        event.description,
        event.villager_name,
        event.raised_by,
        event.raised_on,
        event.speak_up_day,
        event.on_speak_up_day,
        envelope.time,
    )


async def _insert_category(tx: Tx, event: CategoryAdded) -> None:
    await tx.conn.execute(
        f"INSERT INTO {tx.t('categories')} (township_id, code, label, added_by, added_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        event.township_id,
        event.code,
        event.label,
        event.added_by,
        event.added_at,
    )


def _detail(event: Event) -> str | None:
    """What a history line says beyond the event's name."""
    match event:
        case TopicReferred():
            return event.department
        case TopicDeclined() | TopicWithdrawn() | TopicReturned():
            return event.reason or None
        case IssueProgressReported():
            return event.note
        case IssueClosed():
            return event.outcome
        case IssuePromoted():
            return event.topic_id
        case TopicsMerged():
            return ", ".join(event.merged_topic_ids)
        case TopicMergedInto():
            return event.merged_into
        case _:
            return None


async def _history(
    tx: Tx,
    event: TopicEvent | IssueEvent,
    envelope: Envelope,
    village_ids: list[str],
    subject: str,
    subject_id: str,
) -> None:
    await tx.conn.execute(
        f"INSERT INTO {tx.t('village_history')} (village_id, event_id, township_id, occurred_at, "
        "event, subject, subject_id, forum_id, actor, detail) "
        "SELECT v, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM unnest($1::text[]) AS v "
        "ON CONFLICT DO NOTHING",
        village_ids,
        envelope.id,
        event.township_id,
        envelope.time,
        type(event).__name__,
        subject,
        subject_id,
        getattr(event, "forum_id", None),
        envelope.actor,
        _detail(event),
    )


def read_model_tables(schema: str = SERVICE) -> dict[str, str]:
    """The live (schema-qualified) names of the read model tables, for queries and timers."""
    return table_names(schema, ReadModels())
