"""Speak-up sessions (逢五说事): villagers raise problems on lunar 5th, 15th and 25th."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.clock import SPEAK_UP_LUNAR_DAYS, is_speak_up_day, lunar_day, next_speak_up_day
from cunzhi_platform.events import Event

from ..events import SpeakUpSessionHeld
from .ids import parse_speak_up_stream_id


@dataclass(frozen=True)
class RaisedIssue:
    """A speak-up issue as the claim list has it (the topics service raises issues)."""

    issue_id: str
    village_id: str
    title: str


class SpeakUpSession(Aggregate):
    """Stream ``speakup:{village_id}:{date}``: one session per village and speak-up day."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.village_id, self.date = parse_speak_up_stream_id(aggregate_id)
        self.session_id = f"{self.village_id}-{self.date.isoformat()}"
        self.record: SpeakUpSessionHeld | None = None

    def hold(
        self,
        *,
        township_id: str,
        attendance_count: int,
        issue_ids: Sequence[str],
        known_issues: Mapping[str, RaisedIssue],
        hosted_by: str,
        today: dt.date,
    ) -> list[Event]:
        """Record the session and the issues raised at it, each on this village's claim list.

        ``known_issues``: the issues the topics service raised, as this service learnt them.
        """
        if self.exists:
            raise InvalidTransition(
                f"the speak-up session of {self.village_id} on {self.date} is already recorded"
            )
        if not is_speak_up_day(self.date):
            days = "/".join(map(str, SPEAK_UP_LUNAR_DAYS))
            raise DomainError(
                f"{self.date} is lunar day {lunar_day(self.date)}, not a speak-up day "
                f"(lunar {days}); the next one is {next_speak_up_day(self.date)}",
                field="date",
            )
        if self.date > today:
            raise DomainError(
                f"the session of {self.date} has not taken place yet; record it afterwards",
                field="date",
            )
        if attendance_count < 1:
            raise DomainError("say how many villagers attended", field="attendance_count")
        if not hosted_by.strip():
            raise DomainError("say who hosted the session", field="hosted_by")
        unknown = [i for i in issue_ids if i not in known_issues]
        if unknown:
            raise DomainError(
                f"no speak-up issue {', '.join(unknown)} is known here; raise it on the village's "
                "claim list first (raised a moment ago? try again in a few seconds)",
                field="issue_ids",
            )
        issues_raised = [known_issues[i] for i in issue_ids]
        elsewhere = [i.issue_id for i in issues_raised if i.village_id != self.village_id]
        if elsewhere:
            raise DomainError(
                f"issues {', '.join(elsewhere)} are on another village's claim list, not "
                f"{self.village_id}'s",
                field="issue_ids",
            )
        ids = [i.issue_id for i in issues_raised]
        if len(set(ids)) != len(ids):
            raise DomainError("an issue is named twice", field="issue_ids")
        return [
            SpeakUpSessionHeld(
                session_id=self.session_id,
                village_id=self.village_id,
                township_id=township_id,
                date=self.date,
                lunar_day=lunar_day(self.date),
                attendance_count=attendance_count,
                issues_raised=tuple(i.title for i in issues_raised),
                hosted_by=hosted_by.strip(),
                issue_ids=tuple(ids),
            )
        ]

    def _on_SpeakUpSessionHeld(self, e: SpeakUpSessionHeld) -> None:
        self.record = e
