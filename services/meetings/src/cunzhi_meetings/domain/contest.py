"""The quarterly contest of village heads (擂台比武): once per township and quarter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.events import Event

from ..events import ContestHeld, ContestParticipant
from .ids import parse_contest_stream_id, quarter_of


class Contest(Aggregate):
    """Stream ``contest:{township_id}:{year}Q{quarter}``."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.township_id, self.year, self.quarter = parse_contest_stream_id(aggregate_id)
        self.contest_id = f"{self.township_id}-{self.year}Q{self.quarter}"
        self.record: ContestHeld | None = None

    def hold(
        self,
        *,
        date: dt.date,
        participants: Sequence[ContestParticipant],
        ranking: Sequence[str],
        today: dt.date,
    ) -> list[Event]:
        """Record the contest; ``ranking`` lists every participating village, best first."""
        if self.record is not None:
            raise InvalidTransition(
                f"{self.township_id} already held its {self.year} Q{self.quarter} contest on "
                f"{self.record.date}; the contest is once a quarter"
            )
        if (date.year, quarter_of(date)) != (self.year, self.quarter):
            raise DomainError(
                f"{date} is not in {self.year} Q{self.quarter}; record it under its own quarter",
                field="date",
            )
        if date > today:
            raise DomainError(
                f"the contest of {date} has not taken place yet; record it afterwards",
                field="date",
            )
        if len(participants) < 2:
            raise DomainError("a contest needs at least two villages", field="participants")
        villages: set[str] = set()
        for p in participants:
            if p.village_id in villages:
                raise DomainError(f"village {p.village_id} is listed twice", field="participants")
            if not p.head_name.strip():
                raise DomainError(f"name the head of village {p.village_id}", field="participants")
            villages.add(p.village_id)
        if len(ranking) != len(set(ranking)) or set(ranking) != villages:
            unranked = sorted(villages - set(ranking))
            strangers = sorted(set(ranking) - villages)
            raise DomainError(
                "the ranking must list every participating village once"
                + (f"; missing {', '.join(unranked)}" if unranked else "")
                + (f"; not participating: {', '.join(strangers)}" if strangers else ""),
                field="ranking",
            )
        return [
            ContestHeld(
                contest_id=self.contest_id,
                township_id=self.township_id,
                year=self.year,
                quarter=self.quarter,
                date=date,
                participants=tuple(participants),
                ranking=tuple(ranking),
            )
        ]

    def _on_ContestHeld(self, e: ContestHeld) -> None:
        self.record = e
