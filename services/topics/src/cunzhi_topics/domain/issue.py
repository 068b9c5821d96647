"""A villager's speak-up issue (逢五说事) on a village's claim list: stream ``issue:{issue_id}``.

::

    raised ─── claimed ─── (progress reports) ─── closed
       └──────────┴── promoted to a topic of the township's open call

Decisions the application layer relies on:

- Speak-up days are the lunar 5th, 15th and 25th. An issue raised on another day is still
  accepted ("有困难找组织": nobody is turned away) and is given the next speak-up day as
  ``speak_up_day``, the session where it will be heard; ``on_speak_up_day`` says which case
  it was.
- One claimant at a time (党员干部领办): "党员干部" are party members *and* cadres, so a party
  member or cadre of the issue's village claims, and so may a cadre of its township; the claim
  is not released or handed on. Only the claimant reports progress and closes the issue,
  saying what was done.
- An issue too big for the village can be promoted, claimed or not, to a topic of the open
  call; the topic has the issue as its source and the issue leaves the claim list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cunzhi_platform.aggregate import Aggregate, DomainError, Forbidden, InvalidTransition, NotFound
from cunzhi_platform.clock import is_speak_up_day, next_speak_up_day
from cunzhi_platform.events import Event

from ..events import IssueClaimed, IssueClosed, IssueProgressReported, IssuePromoted, IssueRaised
from . import values
from .call import CallForTopics
from .topic import Submitter, Topic


class IssueState(StrEnum):
    RAISED = "raised"
    CLAIMED = "claimed"
    CLOSED = "closed"
    PROMOTED = "promoted"


@dataclass(frozen=True)
class Claimant:
    """A party member or cadre (党员干部) taking an issue on from a claim list (领办).

    ``villages``: where the person is a party member or a village cadre; ``townships``: where
    the person is a township cadre, who may take on an issue of any of its villages.
    """

    person_id: str
    villages: frozenset[str] = frozenset()
    townships: frozenset[str] = frozenset()


def issue_stream_id(issue_id: str) -> str:
    return f"issue:{issue_id}"


class Issue(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        if not aggregate_id.startswith("issue:"):
            raise ValueError(f"{aggregate_id!r} is not an issue stream id; use issue_stream_id()")
        self.issue_id = aggregate_id.removeprefix("issue:")
        self.state: IssueState | None = None
        self.township_id = ""
        self.village_id = ""
        self.title = ""
        self.description = ""
        self.speak_up_day: dt.date | None = None
        self.claimant_id: str | None = None
        self.progress: list[str] = []
        self.outcome: str | None = None
        self.promoted_to: str | None = None
        """The topic it became."""

    # -- commands -----------------------------------------------------------------------------

    def raise_issue(
        self,
        township_id: str,
        village_id: str,
        raised_by: str,
        title: str,
        description: str,
        raised_on: dt.date,
        now: dt.datetime,
        *,
        villager_name: str | None = None,
    ) -> list[Event]:
        """A village cadre records a villager's problem for the village's claim list."""
        if self.exists:
            raise InvalidTransition(f"issue {self.issue_id} has already been raised")
        if raised_on > now.date():
            raise DomainError(
                f"the issue is dated {raised_on}, which is still to come; give the day it was "
                "raised",
                field="raised_on",
            )
        return [
            IssueRaised(
                issue_id=self.issue_id,
                township_id=township_id,
                village_id=village_id,
                title=values.title(title),
                description=values.required_text(description, "description", "the description"),
                villager_name=(villager_name or "").strip() or None,
                raised_by=raised_by,
                raised_on=raised_on,
                speak_up_day=next_speak_up_day(raised_on),
                on_speak_up_day=is_speak_up_day(raised_on),
            )
        ]

    def claim(self, claimant: Claimant, now: dt.datetime) -> list[Event]:
        self._require_state({IssueState.RAISED}, "claim")
        if self.village_id not in claimant.villages and self.township_id not in claimant.townships:
            raise Forbidden(
                f"issue {self.issue_id} is on the claim list of village {self.village_id}; only "
                "party members and cadres of that village, or cadres of township "
                f"{self.township_id}, can claim it"
            )
        claimant_id = claimant.person_id
        return [
            IssueClaimed(
                issue_id=self.issue_id,
                township_id=self.township_id,
                village_id=self.village_id,
                claimant_id=claimant_id,
                claimed_at=now,
            )
        ]

    def report_progress(self, claimant_id: str, note: str, now: dt.datetime) -> list[Event]:
        self._require_claimant(claimant_id, "report progress on")
        return [
            IssueProgressReported(
                issue_id=self.issue_id,
                township_id=self.township_id,
                village_id=self.village_id,
                claimant_id=claimant_id,
                note=values.required_text(note, "note", "the progress note"),
                reported_at=now,
            )
        ]

    def close(self, claimant_id: str, outcome: str, now: dt.datetime) -> list[Event]:
        self._require_claimant(claimant_id, "close")
        return [
            IssueClosed(
                issue_id=self.issue_id,
                township_id=self.township_id,
                village_id=self.village_id,
                claimant_id=claimant_id,
                outcome=values.required_text(outcome, "outcome", "what was done"),
                closed_at=now,
            )
        ]

    # -- fold ---------------------------------------------------------------------------------

    def _on_IssueRaised(self, event: IssueRaised) -> None:
        self.state = IssueState.RAISED
        self.township_id = event.township_id
        self.village_id = event.village_id
        self.title = event.title
        self.description = event.description
        self.speak_up_day = event.speak_up_day

    def _on_IssueClaimed(self, event: IssueClaimed) -> None:
        self.state = IssueState.CLAIMED
        self.claimant_id = event.claimant_id

    def _on_IssueProgressReported(self, event: IssueProgressReported) -> None:
        self.progress.append(event.note)

    def _on_IssueClosed(self, event: IssueClosed) -> None:
        self.state = IssueState.CLOSED
        self.outcome = event.outcome

    def _on_IssuePromoted(self, event: IssuePromoted) -> None:
        self.state = IssueState.PROMOTED
        self.promoted_to = event.topic_id

    # -- helpers ------------------------------------------------------------------------------

    def _require_state(self, allowed: Collection[IssueState], action: str) -> None:
        if self.state is None:
            raise NotFound(f"there is no issue {self.issue_id}")
        if self.state in allowed:
            return
        match self.state:
            case IssueState.CLAIMED:
                standing = f"is already claimed by {self.claimant_id}"
            case IssueState.CLOSED:
                standing = f"was closed by {self.claimant_id}"
            case IssueState.PROMOTED:
                standing = f"was promoted to topic {self.promoted_to}; follow that topic"
            case _:
                standing = "has not been claimed yet; a party member of the village claims it first"
        raise InvalidTransition(f"cannot {action} issue {self.issue_id}: it {standing}")

    def _require_claimant(self, claimant_id: str, action: str) -> None:
        self._require_state({IssueState.CLAIMED}, action)
        if claimant_id != self.claimant_id:
            raise Forbidden(
                f"issue {self.issue_id} is claimed by {self.claimant_id}; only the claimant can "
                f"{action} it"
            )


def promote_issue(
    issue: Issue,
    topic: Topic,
    call: CallForTopics,
    submitter: Submitter,
    category: str,
    now: dt.datetime,
    *,
    title: str | None = None,
    description: str | None = None,
    village_ids: Sequence[str] | None = None,
    extra_categories: Collection[str] = (),
) -> dict[str, list[Event]]:
    """Make an open issue a new topic (``topic``, not yet submitted) of the open ``call``.

    Title, description and villages default to the issue's; events keyed by stream id.
    """
    issue._require_state({IssueState.RAISED, IssueState.CLAIMED}, "promote")
    if call.township_id != issue.township_id:
        raise DomainError(
            f"issue {issue.issue_id} is from township {issue.township_id}; promote it to that "
            f"township's call, not to one of {call.township_id}",
            field="forum_id",
        )
    villages = [issue.village_id] if village_ids is None else list(village_ids)
    if issue.village_id not in villages:
        raise DomainError(
            f"the topic must concern village {issue.village_id}, where the issue was raised",
            field="village_ids",
        )
    topic_events = topic.submit(
        call,
        submitter,
        issue.title if title is None else title,
        issue.description if description is None else description,
        category,
        villages,
        now,
        extra_categories=extra_categories,
        source_issue_id=issue.issue_id,
    )
    return {
        issue.id: [
            IssuePromoted(
                issue_id=issue.issue_id,
                township_id=issue.township_id,
                village_id=issue.village_id,
                topic_id=topic.topic_id,
                forum_id=call.forum_id,
                claimant_id=issue.claimant_id,
                promoted_by=submitter.person_id,
                promoted_at=now,
            )
        ],
        topic.id: topic_events,
    }
