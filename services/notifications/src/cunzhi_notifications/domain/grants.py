"""The roles the directory knows, by level, and who may give which (ours).

The roles are the platform's JWT roles (README, "JWT claims") and the two meetings' roster
gives (领导班子, 中层干部). Each has a level: what a village sees, a township's, the county's,
and the notification administrators'. A caller gives and takes away only roles at or below the
highest level of its own: a township's party-building office never puts anyone into an
audience of the county (red lights, escalations, verification requests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    VILLAGE = 1
    TOWNSHIP = 2
    COUNTY = 3
    ADMIN = 4


@dataclass(frozen=True)
class Role:
    label: str
    level: Level


ROLES: dict[str, Role] = {
    "party_member": Role("党员", Level.VILLAGE),
    "village_secretary": Role("村党支部书记", Level.VILLAGE),
    "station_head": Role("站所负责人", Level.VILLAGE),
    "middle_cadre": Role("中层干部", Level.TOWNSHIP),
    "township_leadership": Role("乡镇领导班子", Level.TOWNSHIP),
    "party_building_office": Role("乡镇党建办", Level.TOWNSHIP),
    "township_committee": Role("乡镇党委", Level.TOWNSHIP),
    # Work teams are sent by the county's campaign (驻村工作队), not by a township.
    "work_team_member": Role("驻村工作队队员", Level.COUNTY),
    "county_organisation_department": Role("县委组织部", Level.COUNTY),
    "county_department": Role("县直部门", Level.COUNTY),
    "discipline_commission": Role("纪委", Level.COUNTY),
    "political_legal_committee": Role("政法委", Level.COUNTY),
    "petitions_bureau": Role("信访局", Level.COUNTY),
    "notifications_admin": Role("通知管理员", Level.ADMIN),
}


def unknown(roles: Iterable[str]) -> list[str]:
    return sorted(set(roles) - ROLES.keys())


def level(roles: Iterable[str]) -> Level | None:
    """The highest level among ``roles`` (None: no known role)."""
    return max((ROLES[r].level for r in roles if r in ROLES), default=None)


def above(caller_roles: Iterable[str], roles: Iterable[str]) -> list[str]:
    """Those of ``roles`` above the caller's level, by name."""
    mine = level(caller_roles) or 0
    return sorted(ROLES[r].label for r in set(roles) if r in ROLES and ROLES[r].level > mine)


def beyond(caller_roles: Iterable[str], before: Iterable[str], after: Iterable[str]) -> list[str]:
    """The roles given or taken away (``before`` → ``after``) above the caller's level, by name."""
    return above(caller_roles, set(before) ^ set(after))
