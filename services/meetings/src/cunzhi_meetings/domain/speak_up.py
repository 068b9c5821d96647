"""Speak-up sessions (逢五说事): villagers raise problems on lunar 5th, 15th and 25th."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.clock import SPEAK_UP_LUNAR_DAYS, is_speak_up_day, lunar_day, next_speak_up_day
from cunzhi_platform.events import Event

from ..events import SpeakUpSessionHeld
from .ids import parse_speak_up_stream_id


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
        issues_raised: Sequence[str],
        hosted_by: str,
        today: dt.date,
    ) -> list[Event]:
        """Record the session; ``issues_raised`` are the titles or ids of the problems raised."""
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
        if any(not issue.strip() for issue in issues_raised):
            raise DomainError("an issue raised cannot be blank", field="issues_raised")
        return [
            SpeakUpSessionHeld(
                session_id=self.session_id,
                village_id=self.village_id,
                township_id=township_id,
                date=self.date,
                lunar_day=lunar_day(self.date),
                attendance_count=attendance_count,
                issues_raised=tuple(issue.strip() for issue in issues_raised),
                hosted_by=hosted_by.strip(),
            )
        ]

    def _on_SpeakUpSessionHeld(self, e: SpeakUpSessionHeld) -> None:
        self.record = e
