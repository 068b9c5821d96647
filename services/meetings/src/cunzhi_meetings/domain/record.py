"""Read logic over a township's meetings events: its forum record and attendance rates."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from cunzhi_platform.events import Event

from ..events import (
    ExperienceExchange,
    ExpertLecture,
    ForumClosed,
    ForumHeld,
    GuestSpeaker,
    PastForumRecorded,
)


@dataclass(frozen=True)
class TownshipRecord:
    """What a township's forums achieved, as the reports quote it."""

    forums_held: int
    problems_solved: int
    """Forums closed: every task of their resolutions done."""
    experts: frozenset[str]
    experience_sharers: frozenset[str]
    """Who shared experience: person ids of the township's secretaries, ``guest_key``s of
    guests from elsewhere."""
    field_visits: int

    @property
    def experts_invited(self) -> int:
        return len(self.experts)

    @property
    def secretaries_sharing_experience(self) -> int:
        return len(self.experience_sharers)


def guest_key(guest: GuestSpeaker) -> str:
    """A guest sharer's identity in the record: the same name at the same unit is one person."""
    return f"guest:{guest.name.strip()}@{guest.affiliation.strip()}"


def township_record(events: Iterable[Event]) -> TownshipRecord:
    """Fold one township's meetings events; activities count only for forums actually held.

    A forum entered from the paper ledger counts as held, and as a problem solved when the
    ledger says its work was done."""
    held: set[str] = set()
    closed: set[str] = set()
    field_visits: set[str] = set()
    experts: set[str] = set()
    sharers: set[str] = set()
    for e in events:
        if isinstance(e, ForumHeld | PastForumRecorded):
            held.add(e.forum_id)
            if e.mode == "field_visit":
                field_visits.add(e.forum_id)
            for activity in e.activities:
                if isinstance(activity, ExpertLecture):
                    experts.add(activity.expert_name.strip())
                elif isinstance(activity, ExperienceExchange):
                    sharers.update(s.person_id for s in activity.speakers)
                    sharers.update(guest_key(g) for g in activity.guests)
        if isinstance(e, ForumClosed) or (isinstance(e, PastForumRecorded) and e.problem_solved):
            closed.add(e.forum_id)
    return TownshipRecord(
        forums_held=len(held),
        problems_solved=len(closed),
        experts=frozenset(experts),
        experience_sharers=frozenset(sharers),
        field_visits=len(field_visits),
    )


@dataclass(frozen=True)
class AttendanceTally:
    """Forums someone (or a village's people) was told to attend, and how they attended."""

    invited: int
    present: int
    late: int
    absent: int

    @property
    def attended(self) -> int:
        return self.present + self.late

    @property
    def rate(self) -> float:
        """Share of forums attended, late counting as attended."""
        return self.attended / self.invited if self.invited else 0.0


def attendance_by_person(held: Iterable[ForumHeld]) -> dict[str, AttendanceTally]:
    return _tally((a.person_id, a.status) for e in held for a in e.attendance)


def attendance_by_village(held: Iterable[ForumHeld]) -> dict[str, AttendanceTally]:
    """Over attendees who belong to a village (its secretary, village invitees)."""
    return _tally(
        (a.village_id, a.status) for e in held for a in e.attendance if a.village_id is not None
    )


def _tally(marks: Iterable[tuple[str, str]]) -> dict[str, AttendanceTally]:
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for key, status in marks:
        counts[key][status] += 1
    return {
        key: AttendanceTally(
            invited=c.total(), present=c["present"], late=c["late"], absent=c["absent"]
        )
        for key, c in counts.items()
    }
