"""A topic (议题) from its submission to its resolution: stream ``topic:{topic_id}``.

::

    submitted ─┬─ withdrawn                 (by its submitter, while the call is open)
               ├─ merged into another topic (same township, same call)
               └─ shortlisted ─┬─ selected ─── resolved
                               ├─ deferred ─── carried over: submitted again in the next call
                               ├─ referred     (to a named department)
                               └─ declined     (with a reason)

Decisions the application layer relies on:

- The submitter acts alone only on their own topic: once the office has merged other
  submissions into it, revising or withdrawing it would change other villages' topics too, so
  it is refused and the submitter is sent to the party-building office.
- Other cadres can back a topic (附议, ``support``); a merge keeps the supporters of every
  merged topic as well as their sources.
- When the committee selects (``select_topic``), every other undecided topic of the
  call gets a disposition, also those submitted but never shortlisted: every submitter hears
  what became of their topic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from cunzhi_platform.aggregate import Aggregate, DomainError, Forbidden, InvalidTransition, NotFound
from cunzhi_platform.events import Event

from ..events import (
    ReferralAnswer,
    SubmitterRole,
    TopicCarriedOver,
    TopicDeclined,
    TopicDeferred,
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
    TopicSource,
    TopicSubmitted,
    TopicSupported,
    TopicSupporter,
    TopicWithdrawn,
)
from . import values
from .call import CallForTopics
from .categories import check_category

T = TypeVar("T")


@dataclass(frozen=True)
class VillageSecretary:
    """村党支部书记: submits topics that concern their own village."""

    person_id: str
    village_id: str


@dataclass(frozen=True)
class StationHead:
    """Head of a township functional station (站所: 农经站, 司法所, 财政所…).

    "向各站所、各村征集议题" (seed 000): a station submits township-wide topics, about no
    particular village or about any villages of the township. (Party-building work stations,
    党建工作站, are another thing: a level between township and village in seed 001.)
    """

    person_id: str
    station_id: str


Submitter = VillageSecretary | StationHead


class TopicState(StrEnum):
    SUBMITTED = "submitted"
    SHORTLISTED = "shortlisted"
    MERGED = "merged"
    WITHDRAWN = "withdrawn"
    SELECTED = "selected"
    DEFERRED = "deferred"
    REFERRED = "referred"
    DECLINED = "declined"
    RESOLVED = "resolved"


UNDECIDED = frozenset({TopicState.SUBMITTED, TopicState.SHORTLISTED})
"""Still in play for the forum: can be merged, re-categorised, supported, decided."""


def topic_stream_id(topic_id: str) -> str:
    return f"topic:{topic_id}"


class Topic(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        if not aggregate_id.startswith("topic:"):
            raise ValueError(f"{aggregate_id!r} is not a topic stream id; use topic_stream_id()")
        self.topic_id = aggregate_id.removeprefix("topic:")
        self.state: TopicState | None = None
        self.township_id = ""
        self.forum_id = ""
        self.title = ""
        self.description = ""
        self.category = ""
        self.village_ids: list[str] = []
        self.submitted_by = ""
        self.sources: list[TopicSource] = []
        self.supporters: list[TopicSupporter] = []
        self.merged_topic_ids: list[str] = []
        """Topics merged into this one."""
        self.merged_into: str | None = None
        self.department: str | None = None
        self.referral_answer: ReferralAnswer | None = None
        """The department's last answer: ``accepted`` or ``done`` (``returned`` defers it)."""
        self.decline_reason: str | None = None
        self.carried_over_from: list[str] = []
        """Forums whose calls deferred it, oldest first."""

    @property
    def submitter_ids(self) -> list[str]:
        return _unique(source.submitted_by for source in self.sources)

    # -- the submitter ------------------------------------------------------------------------

    def submit(
        self,
        call: CallForTopics,
        submitter: Submitter,
        title: str,
        description: str,
        category: str,
        village_ids: Sequence[str],
        now: dt.datetime,
        *,
        extra_categories: Collection[str] = (),
        source_issue_id: str | None = None,
    ) -> list[Event]:
        if self.exists:
            raise InvalidTransition(f"topic {self.topic_id} has already been submitted")
        call.require_open_for_submissions(now)
        villages = _villages_concerned(submitter, village_ids)
        return [
            TopicSubmitted(
                topic_id=self.topic_id,
                township_id=call.township_id,
                forum_id=call.forum_id,
                village_ids=villages,
                submitter_ids=[submitter.person_id],
                title=values.title(title),
                description=values.required_text(description, "description", "the description"),
                category=check_category(category, extra_categories),
                submitted_by=submitter.person_id,
                submitter_role=_role(submitter),
                submitter_village_id=(
                    submitter.village_id if isinstance(submitter, VillageSecretary) else None
                ),
                submitter_station_id=(
                    submitter.station_id if isinstance(submitter, StationHead) else None
                ),
                source_issue_id=source_issue_id,
                submitted_at=now,
            )
        ]

    def revise(
        self,
        call: CallForTopics,
        submitter: Submitter,
        now: dt.datetime,
        *,
        title: str | None = None,
        description: str | None = None,
        category: str | None = None,
        village_ids: Sequence[str] | None = None,
        extra_categories: Collection[str] = (),
    ) -> list[Event]:
        """Change what was submitted; fields left ``None`` keep their value."""
        self._require_submitter_acting_alone(submitter.person_id, "revise", call)
        call.require_open_for_submissions(now)
        if all(value is None for value in (title, description, category, village_ids)):
            raise DomainError(
                "nothing to revise; give a new title, description, category or villages"
            )
        common = self._common()
        if village_ids is not None:
            common["village_ids"] = _villages_concerned(submitter, village_ids)
        return [
            TopicRevised(
                **common,
                title=self.title if title is None else values.title(title),
                description=(
                    self.description
                    if description is None
                    else values.required_text(description, "description", "the description")
                ),
                category=(
                    self.category
                    if category is None
                    else check_category(category, extra_categories)
                ),
                revised_by=submitter.person_id,
                revised_at=now,
            )
        ]

    def withdraw(
        self, call: CallForTopics, person_id: str, now: dt.datetime, reason: str = ""
    ) -> list[Event]:
        self._require_submitter_acting_alone(person_id, "withdraw", call)
        call.require_open_for_submissions(now)
        return [
            TopicWithdrawn(
                **self._common(), withdrawn_by=person_id, withdrawn_at=now, reason=reason.strip()
            )
        ]

    def support(self, supporter_id: str, village_id: str, now: dt.datetime) -> list[Event]:
        """Another cadre backs the topic (附议)."""
        self._require_state(UNDECIDED, "support")
        if supporter_id in self.submitter_ids:
            raise InvalidTransition(
                f"{supporter_id} submitted topic {self.topic_id}; a submitter need not support it"
            )
        if any(s.person_id == supporter_id for s in self.supporters):
            raise InvalidTransition(f"{supporter_id} already supports topic {self.topic_id}")
        return [
            TopicSupported(
                **self._common(),
                supporter_id=supporter_id,
                supporter_village_id=village_id,
                supported_at=now,
            )
        ]

    # -- the party-building office --------------------------------------------------------------

    def shortlist(self, shortlisted_by: str, now: dt.datetime) -> list[Event]:
        self._require_state({TopicState.SUBMITTED}, "shortlist")
        return [
            TopicShortlisted(**self._common(), shortlisted_by=shortlisted_by, shortlisted_at=now)
        ]

    def recategorise(
        self,
        category: str,
        recategorised_by: str,
        now: dt.datetime,
        *,
        extra_categories: Collection[str] = (),
    ) -> list[Event]:
        self._require_state(UNDECIDED, "re-categorise")
        new = check_category(category, extra_categories)
        if new == self.category:
            raise DomainError(
                f"topic {self.topic_id} is already in category {new}; choose another",
                field="category",
            )
        return [
            TopicRecategorised(
                **self._common(),
                category=new,
                previous_category=self.category,
                recategorised_by=recategorised_by,
                recategorised_at=now,
            )
        ]

    def carry_over(self, call: CallForTopics, now: dt.datetime) -> list[Event]:
        """Bring a deferred topic into the township's next call, where it is submitted again."""
        self._require_state({TopicState.DEFERRED}, "carry over")
        if call.township_id != self.township_id:
            raise DomainError(
                f"topic {self.topic_id} belongs to township {self.township_id}; it can only be "
                f"carried into that township's next call, not into one of {call.township_id}",
                field="forum_id",
            )
        if call.forum_id == self.forum_id:
            raise DomainError(
                f"topic {self.topic_id} was deferred by the call of forum {self.forum_id}; "
                "carry it into the township's next call",
                field="forum_id",
            )
        call.require_taking_carried_over_topics()
        common = self._common()
        common["forum_id"] = call.forum_id
        return [TopicCarriedOver(**common, from_forum_id=self.forum_id, carried_at=now)]

    def return_to_next_call(
        self, call: CallForTopics, reason: str, now: dt.datetime
    ) -> list[Event]:
        """Its forum was cancelled: a topic still in play, or selected, waits for the next call.

        Merged, withdrawn and disposed-of topics stay as they are; a topic already carried
        into another call is no longer this call's.
        """
        in_play = UNDECIDED | {TopicState.SELECTED}
        if self.forum_id != call.forum_id or self.state not in in_play:
            return []
        return [TopicReturned(**self._common(), reason=reason, returned_at=now)]

    # -- the department it was referred to -------------------------------------------------

    def answer_referral(
        self,
        department_ids: Collection[str],
        answer: ReferralAnswer,
        note: str,
        answered_by: str,
        now: dt.datetime,
    ) -> list[Event]:
        """The department answers (转办答复): accepted, then done; or returned to the township.

        A returned topic waits for the township's next call, like a deferred one. ``note`` says
        what was done, or why it is returned; it may be left out when accepting.
        """
        self._require_state({TopicState.REFERRED}, "answer the referral of")
        if self.department not in department_ids:
            raise Forbidden(
                f"topic {self.topic_id} was referred to {self.department}; only that department "
                "answers it",
                field="department",
            )
        if answer == "accepted" and self.referral_answer is not None:
            raise InvalidTransition(
                f"{self.department} already answered topic {self.topic_id}: {self.referral_answer}"
            )
        if answer != "accepted":
            note = values.required_text(
                note, "note", "what was done" if answer == "done" else "why it is returned"
            )
        return [
            TopicReferralAnswered(
                **self._common(),
                department=self.department,
                answer=answer,
                note=note.strip(),
                answered_by=answered_by,
                answered_at=now,
            )
        ]

    # -- after the forum ----------------------------------------------------------------------

    def resolve(self, forum_id: str, now: dt.datetime) -> list[Event]:
        """All work the forum started is done (the application layer asks ``ForumTaskLedger``)."""
        self._require_state({TopicState.SELECTED}, "resolve")
        if forum_id != self.forum_id:
            raise InvalidTransition(
                f"topic {self.topic_id} is the topic of forum {self.forum_id}, not of {forum_id}"
            )
        return [TopicResolved(**self._common(), resolved_at=now)]

    # -- fold ---------------------------------------------------------------------------------

    def _on_TopicSubmitted(self, event: TopicSubmitted) -> None:
        self.state = TopicState.SUBMITTED
        self.township_id = event.township_id
        self.forum_id = event.forum_id
        self.title = event.title
        self.description = event.description
        self.category = event.category
        self.village_ids = list(event.village_ids)
        self.submitted_by = event.submitted_by
        self.sources = [
            TopicSource(
                topic_id=event.topic_id,
                submitted_by=event.submitted_by,
                submitter_role=event.submitter_role,
                village_id=event.submitter_village_id,
                station_id=event.submitter_station_id,
                issue_id=event.source_issue_id,
            )
        ]

    def _on_TopicRevised(self, event: TopicRevised) -> None:
        self.title = event.title
        self.description = event.description
        self.category = event.category
        self.village_ids = list(event.village_ids)

    def _on_TopicWithdrawn(self, event: TopicWithdrawn) -> None:
        self.state = TopicState.WITHDRAWN

    def _on_TopicSupported(self, event: TopicSupported) -> None:
        self.supporters.append(
            TopicSupporter(person_id=event.supporter_id, village_id=event.supporter_village_id)
        )

    def _on_TopicsMerged(self, event: TopicsMerged) -> None:
        self.village_ids = list(event.village_ids)
        self.sources = list(event.sources)
        self.supporters = list(event.supporters)
        self.merged_topic_ids += event.merged_topic_ids

    def _on_TopicMergedInto(self, event: TopicMergedInto) -> None:
        self.state = TopicState.MERGED
        self.merged_into = event.merged_into

    def _on_TopicShortlisted(self, event: TopicShortlisted) -> None:
        self.state = TopicState.SHORTLISTED

    def _on_TopicRecategorised(self, event: TopicRecategorised) -> None:
        self.category = event.category

    def _on_TopicSelected(self, event: TopicSelected) -> None:
        self.state = TopicState.SELECTED

    def _on_TopicDeferred(self, event: TopicDeferred) -> None:
        self.state = TopicState.DEFERRED

    def _on_TopicReturned(self, event: TopicReturned) -> None:
        self.state = TopicState.DEFERRED

    def _on_TopicCarriedOver(self, event: TopicCarriedOver) -> None:
        self.state = TopicState.SUBMITTED
        self.carried_over_from.append(event.from_forum_id)
        self.forum_id = event.forum_id

    def _on_TopicReferred(self, event: TopicReferred) -> None:
        self.state = TopicState.REFERRED
        self.department = event.department

    def _on_TopicReferralAnswered(self, event: TopicReferralAnswered) -> None:
        if event.answer == "returned":
            self.state = TopicState.DEFERRED
        else:
            self.referral_answer = event.answer

    def _on_TopicDeclined(self, event: TopicDeclined) -> None:
        self.state = TopicState.DECLINED
        self.decline_reason = event.reason

    def _on_TopicResolved(self, event: TopicResolved) -> None:
        self.state = TopicState.RESOLVED

    # -- helpers ------------------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        """The fields of ``TopicEvent`` as they stand now."""
        return {
            "topic_id": self.topic_id,
            "township_id": self.township_id,
            "forum_id": self.forum_id,
            "village_ids": list(self.village_ids),
            "submitter_ids": self.submitter_ids,
        }

    def _require_state(self, allowed: Collection[TopicState], action: str) -> None:
        if self.state is None:
            raise NotFound(f"there is no topic {self.topic_id}")
        if self.state not in allowed:
            raise InvalidTransition(
                f"cannot {action} topic {self.topic_id} «{self.title}»: it {self._standing()}"
            )

    def _standing(self) -> str:
        """Where the topic stands, said so that the reader knows what to do instead."""
        match self.state:
            case TopicState.SUBMITTED:
                return "is submitted but not shortlisted; the party-building office shortlists it"
            case TopicState.SHORTLISTED:
                return "is already on the committee's shortlist"
            case TopicState.MERGED:
                return f"was merged into topic {self.merged_into}; act on that topic instead"
            case TopicState.WITHDRAWN:
                return "was withdrawn by its submitter"
            case TopicState.SELECTED:
                return f"was selected as the topic of forum {self.forum_id}"
            case TopicState.DEFERRED:
                return "was deferred; it is carried into the township's next call"
            case TopicState.REFERRED if self.referral_answer == "done":
                return f"was referred to {self.department}, who dealt with it"
            case TopicState.REFERRED:
                return f"was referred to {self.department}"
            case TopicState.DECLINED:
                return f"was declined ({self.decline_reason})"
            case _:
                return "is resolved"

    def _require_submitter_acting_alone(
        self, person_id: str, action: str, call: CallForTopics
    ) -> None:
        self._require_state({TopicState.SUBMITTED}, action)
        if (call.township_id, call.forum_id) != (self.township_id, self.forum_id):
            raise ValueError(f"topic {self.topic_id} is not in the call {call.id}")
        if person_id != self.submitted_by:
            raise Forbidden(f"only the submitter of topic {self.topic_id} can {action} it")
        if self.merged_topic_ids:
            raise InvalidTransition(
                f"topic {self.topic_id} also carries topics "
                f"{', '.join(self.merged_topic_ids)} that the party-building office merged into "
                f"it; ask the office to {action} it"
            )


def merge_topics(
    survivor: Topic, merged: Sequence[Topic], merged_by: str, now: dt.datetime
) -> dict[str, list[Event]]:
    """Merge duplicates into ``survivor`` (合并同类议题); events keyed by stream id.

    The survivor keeps the union of everyone's sources, supporters and villages; each merged
    topic records where it went.
    """
    if not merged:
        raise DomainError(
            f"choose at least one topic to merge into topic {survivor.topic_id}",
            field="merged_topic_ids",
        )
    merged_ids = [topic.topic_id for topic in merged]
    if len(set(merged_ids)) != len(merged_ids) or survivor.topic_id in merged_ids:
        raise DomainError(
            "each topic to merge must be named once and must not be the surviving topic",
            field="merged_topic_ids",
        )
    survivor._require_state(UNDECIDED, "merge into")
    for topic in merged:
        topic._require_state(UNDECIDED, "merge")
        if topic.township_id != survivor.township_id:
            raise DomainError(
                f"topic {topic.topic_id} is from township {topic.township_id} and topic "
                f"{survivor.topic_id} from township {survivor.township_id}; only topics of the "
                "same township can be merged",
                field="merged_topic_ids",
            )
        if topic.forum_id != survivor.forum_id:
            raise DomainError(
                f"topic {topic.topic_id} is in the call of forum {topic.forum_id} and topic "
                f"{survivor.topic_id} in that of forum {survivor.forum_id}; only topics of the "
                "same call can be merged",
                field="merged_topic_ids",
            )
    everyone = [survivor, *merged]
    sources = _unique(source for topic in everyone for source in topic.sources)
    supporters = _unique(
        supporter
        for topic in everyone
        for supporter in topic.supporters
        if supporter.person_id not in {source.submitted_by for source in sources}
    )
    common = survivor._common()
    common["village_ids"] = _unique(v for topic in everyone for v in topic.village_ids)
    common["submitter_ids"] = _unique(source.submitted_by for source in sources)
    events: dict[str, list[Event]] = {
        survivor.id: [
            TopicsMerged(
                **common,
                merged_topic_ids=merged_ids,
                sources=sources,
                supporters=supporters,
                merged_by=merged_by,
                merged_at=now,
            )
        ]
    }
    for topic in merged:
        events[topic.id] = [
            TopicMergedInto(
                **topic._common(), merged_into=survivor.topic_id, merged_by=merged_by, merged_at=now
            )
        ]
    return events


@dataclass(frozen=True)
class Defer:
    """Not this time: carried into the township's next call when it opens."""


@dataclass(frozen=True)
class Refer:
    """Handed to a department (e.g. the township's judicial station) to deal with."""

    department: str


@dataclass(frozen=True)
class Decline:
    """Not taken up; the reason is what the submitter is told."""

    reason: str


Disposition = Defer | Refer | Decline


def select_topic(
    call: CallForTopics,
    chosen: Topic,
    others: Sequence[Topic],
    dispositions: Mapping[str, Disposition],
    selected_by: str,
    now: dt.datetime,
) -> dict[str, list[Event]]:
    """The committee picks the forum's topic (一次论坛解决一个问题); events keyed by stream id.

    ``others`` are the call's other topics (the chosen one may be among them); each one still
    undecided needs a disposition in ``dispositions``, keyed by topic id.
    """
    call_events = call.decide(
        chosen.topic_id,
        [topic_id for topic_id, d in dispositions.items() if isinstance(d, Defer)],
        [topic_id for topic_id, d in dispositions.items() if isinstance(d, Refer)],
        [topic_id for topic_id, d in dispositions.items() if isinstance(d, Decline)],
        selected_by,
        now,
    )
    for topic in [chosen, *others]:
        if (topic.township_id, topic.forum_id) != (call.township_id, call.forum_id):
            raise DomainError(
                f"topic {topic.topic_id} is not in the call for topics of forum {call.forum_id} "
                f"of township {call.township_id}",
                field="topic_id" if topic is chosen else "dispositions",
            )
    chosen._require_state({TopicState.SHORTLISTED}, "select")
    undecided = {
        topic.topic_id: topic
        for topic in others
        if topic.state in UNDECIDED and topic.topic_id != chosen.topic_id
    }
    missing = [topic for topic_id, topic in undecided.items() if topic_id not in dispositions]
    if missing:
        raise DomainError(
            "give each other topic of the call a disposition (defer, refer to a department, or "
            "decline with a reason): "
            + ", ".join(f"{topic.topic_id} «{topic.title}»" for topic in missing),
            field="dispositions",
        )
    unexpected = [topic_id for topic_id in dispositions if topic_id not in undecided]
    if unexpected:
        raise DomainError(
            f"no disposition is needed for {', '.join(unexpected)}: not an undecided topic of "
            "this call besides the chosen one",
            field="dispositions",
        )
    events: dict[str, list[Event]] = {
        call.id: call_events,
        chosen.id: [
            TopicSelected(
                **chosen._common(),
                title=chosen.title,
                description=chosen.description,
                category=chosen.category,
                selected_by=selected_by,
                selected_at=now,
            )
        ],
    }
    for topic_id, disposition in dispositions.items():
        topic = undecided[topic_id]
        events[topic.id] = [_disposed(topic, disposition, selected_by, now)]
    return events


def cancel_forum_call(
    call: CallForTopics, topics: Sequence[Topic], reason: str, now: dt.datetime
) -> dict[str, list[Event]]:
    """A cancelled forum cancels its call and returns its topics to the next call; events keyed
    by stream id. ``topics`` are the topics ever submitted or carried into the call."""
    events: dict[str, list[Event]] = {call.id: call.cancel(reason, now)}
    if not events[call.id]:
        return {}  # cancelled already: its topics were returned then
    for topic in topics:
        returned = topic.return_to_next_call(call, reason, now)
        if returned:
            events[topic.id] = returned
    return events


def _disposed(topic: Topic, disposition: Disposition, decided_by: str, now: dt.datetime) -> Event:
    common = topic._common()
    match disposition:
        case Defer():
            return TopicDeferred(**common, deferred_by=decided_by, deferred_at=now)
        case Refer(department=department):
            department = values.required_text(
                department,
                f"dispositions.{topic.topic_id}.department",
                f"the department topic {topic.topic_id} is referred to",
            )
            return TopicReferred(
                **common, department=department, referred_by=decided_by, referred_at=now
            )
        case Decline(reason=reason):
            reason = values.required_text(
                reason,
                f"dispositions.{topic.topic_id}.reason",
                f"the reason topic {topic.topic_id} is declined",
            )
            return TopicDeclined(**common, reason=reason, declined_by=decided_by, declined_at=now)


def _role(submitter: Submitter) -> SubmitterRole:
    return "village_secretary" if isinstance(submitter, VillageSecretary) else "station_head"


def _villages_concerned(submitter: Submitter, village_ids: Iterable[str]) -> list[str]:
    """A secretary's topic concerns their own village (and perhaps others); a station's may
    concern any villages of the township, or none in particular."""
    villages = _unique(v.strip() for v in village_ids if v.strip())
    if isinstance(submitter, StationHead):
        return villages
    if not villages:
        raise DomainError("name at least one village the topic concerns", field="village_ids")
    if submitter.village_id not in villages:
        raise Forbidden(
            f"a village secretary submits topics that concern their own village; include "
            f"village {submitter.village_id}, or ask the secretaries of "
            f"{', '.join(villages)} to submit it",
            field="village_ids",
        )
    return villages


def _unique(items: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(items))
