"""The township roster: who attends every forum by default.

The leadership team (领导班子), the middle-level cadres (中层干部) and every village party
secretary (村党支部书记). Offices import it in bulk from CSV; importing the same rows again
changes nothing, so an import can be retried safely.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast, get_args

from cunzhi_platform.aggregate import Aggregate, DomainError, NotFound
from cunzhi_platform.csvfile import CsvProblem, CsvRefused, CsvRow, read_csv
from cunzhi_platform.events import Event

from ..events import RosterMemberAdded, RosterMemberRemoved, RosterMemberUpdated, RosterRole
from .ids import parse_roster_stream_id

ROSTER_ROLES: tuple[RosterRole, ...] = get_args(RosterRole)
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")


@dataclass(frozen=True)
class RosterMember:
    person_id: str
    name: str
    role: RosterRole
    village_id: str | None = None
    phone: str | None = None

    def __post_init__(self) -> None:
        if not self.person_id.strip():
            raise DomainError("person_id is required", field="person_id")
        if not self.name.strip():
            raise DomainError(f"{self.person_id} needs a name", field="name")
        if self.role not in ROSTER_ROLES:
            raise DomainError(
                f"unknown role {self.role!r}; use one of {', '.join(ROSTER_ROLES)}", field="role"
            )
        if self.role == "village_secretary" and not self.village_id:
            raise DomainError(
                f"{self.name} is a village secretary: give the village_id of their village",
                field="village_id",
            )
        if self.phone is not None and not _PHONE.fullmatch(self.phone):
            raise DomainError(
                f"phone {self.phone!r} of {self.name} is not a phone number "
                "(digits, optionally a leading + and spaces or dashes)",
                field="phone",
            )


class Roster(Aggregate):
    """Stream ``roster:{township_id}``."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.township_id = parse_roster_stream_id(aggregate_id)
        self._members: dict[str, RosterMember] = {}

    @property
    def members(self) -> tuple[RosterMember, ...]:
        return tuple(self._members.values())

    def member(self, person_id: str) -> RosterMember | None:
        return self._members.get(person_id)

    # --- commands ---

    def add_members(self, members: Iterable[RosterMember]) -> list[Event]:
        """Add or update many members at once; unchanged members produce no event."""
        batch: dict[str, RosterMember] = {}
        for m in members:
            earlier = batch.get(m.person_id)
            if earlier is not None and earlier != m:
                raise DomainError(
                    f"{m.person_id} is given twice with different data "
                    f"({earlier.name}, {earlier.role} / {m.name}, {m.role}); keep one",
                    field="person_id",
                )
            batch[m.person_id] = m
        events: list[Event] = []
        for m in batch.values():
            current = self._members.get(m.person_id)
            if current == m:
                continue
            kind = RosterMemberAdded if current is None else RosterMemberUpdated
            events.append(
                kind(
                    township_id=self.township_id,
                    person_id=m.person_id,
                    name=m.name,
                    role=m.role,
                    village_id=m.village_id,
                    phone=m.phone,
                )
            )
        return events

    def remove_member(self, person_id: str, reason: str) -> list[Event]:
        member = self._members.get(person_id)
        if member is None:
            raise NotFound(f"{person_id} is not on the roster of {self.township_id}")
        if not reason.strip():
            raise DomainError(f"say why {member.name} leaves the roster", field="reason")
        return [
            RosterMemberRemoved(
                township_id=self.township_id,
                person_id=person_id,
                name=member.name,
                reason=reason.strip(),
            )
        ]

    # --- fold ---

    def _on_RosterMemberAdded(self, e: RosterMemberAdded) -> None:
        self._set(e)

    def _on_RosterMemberUpdated(self, e: RosterMemberUpdated) -> None:
        self._set(e)

    def _set(self, e: RosterMemberAdded | RosterMemberUpdated) -> None:
        self._members[e.person_id] = RosterMember(
            person_id=e.person_id, name=e.name, role=e.role, village_id=e.village_id, phone=e.phone
        )

    def _on_RosterMemberRemoved(self, e: RosterMemberRemoved) -> None:
        del self._members[e.person_id]


# --- CSV import ---------------------------------------------------------------------------

ROSTER_CSV_COLUMNS = ("person_id", "name", "role", "village_id", "phone")
_REQUIRED_COLUMNS = ("person_id", "name", "role")
_ROLE_ALIASES: dict[str, RosterRole] = {
    "领导班子": "leadership",
    "中层干部": "middle_cadre",
    "支部书记": "village_secretary",
    "村支部书记": "village_secretary",
    "村党支部书记": "village_secretary",
}


def parse_roster_csv(text: str) -> list[RosterMember]:
    """Parse a roster file with header ``person_id,name,role,village_id,phone`` (read as
    ``cunzhi_platform.csvfile`` reads every upload).

    Roles may be given in English or Chinese (领导班子, 中层干部, 支部书记). A person listed twice
    with identical data counts once. Raises ``CsvRefused`` naming every bad line and column.
    """
    problems: list[CsvProblem] = []
    members: dict[str, tuple[int, RosterMember]] = {}
    for row in read_csv(text, ROSTER_CSV_COLUMNS, _REQUIRED_COLUMNS, problems):
        parsed = _parse_row(row, problems)
        if parsed is None:
            continue
        seen = members.get(parsed.person_id)
        if seen is None:
            members[parsed.person_id] = (row.line, parsed)
        elif seen[1] != parsed:
            problems.append(
                CsvProblem(
                    row.line,
                    "person_id",
                    f"{parsed.person_id} is already on line {seen[0]} with different data",
                )
            )
    if problems:
        raise CsvRefused("roster CSV", problems)
    return [member for _, member in members.values()]


def _parse_row(row: CsvRow, problems: list[CsvProblem]) -> RosterMember | None:
    cells = row.cells
    missing = [c for c in _REQUIRED_COLUMNS if not cells.get(c)]
    for column in missing:
        problems.append(CsvProblem(row.line, column, "required value is empty"))
    if missing:
        return None
    role = _ROLE_ALIASES.get(cells["role"], cells["role"])
    try:
        return RosterMember(
            person_id=cells["person_id"],
            name=cells["name"],
            role=cast(RosterRole, role),  # RosterMember refuses an unknown role
            village_id=cells.get("village_id") or None,
            phone=cells.get("phone") or None,
        )
    except DomainError as exc:
        problems.append(CsvProblem(row.line, exc.field, exc.message))
        return None
