"""Work teams (驻村工作专班) matched to problems, and their assessment sheet.

Seed 003: departments are matched to a village's problems —
"党委部门联弱、政法部门联乱、经济部门联穷、业务部门联专业"; a team mixes old, middle-aged and
young cadres (老—中—青); district leaders patron
the villages (36 leaders for 25 villages: a village may have several patrons, a leader several
villages); the township names one leadership member to assist; town-level villages get a
township working group led by a leadership member. A team missing an age band is formed with a
warning, not refused (ours). The sheet: eight common indicators + differentiated indicators +
bonus and penalty items (《薄弱村整顿攻坚工作组考核办法》; points are settings).

Stream ``campaign-team:{campaign}:{team}``, with the team's weekly on-duty reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.events import Event

from ..events.campaign import (
    AgeBand,
    CampaignSettings,
    Department,
    DepartmentType,
    Member,
    Patron,
    ProblemKind,
    ReportDue,
    ReportLate,
    ReportSubmitted,
    TeamAssessed,
    Tier,
    WorkTeamFormed,
)
from .campaign import CampaignHeader
from .campaign_ids import parse_team_stream_id
from .campaign_reports import ReportBook

MATCH: dict[ProblemKind, DepartmentType] = {
    "weak": "party_committee",
    "disorderly": "political_legal",
    "poor": "economic",
    "specialised": "sector",
}
AGE_BANDS: tuple[AgeBand, ...] = ("old", "middle", "young")
MAX_DAYS_A_WEEK = 7


@dataclass(frozen=True)
class Proposal:
    """Departments proposed for a village's problems, and the kinds no department covers."""

    departments: tuple[Department, ...]
    uncovered: tuple[ProblemKind, ...]


def propose_departments(
    problem_kinds: Iterable[ProblemKind], departments: Sequence[Department]
) -> Proposal:
    """Every department whose type matches a kind of problem the village has, in list order."""
    kinds = set(problem_kinds)
    wanted = {MATCH[k] for k in kinds}
    chosen = tuple(d for d in departments if d.type in wanted)
    covered = {d.type for d in chosen}
    uncovered = tuple(k for k in MATCH if k in kinds and MATCH[k] not in covered)
    return Proposal(chosen, uncovered)


def team_warnings(members: Sequence[Member], level: Tier, assistant: str | None) -> list[str]:
    bands = {m.age_band for m in members}
    warnings = [
        f"no {band} cadre: the team should mix old, middle-aged and young (老—中—青)"
        for band in AGE_BANDS
        if band not in bands
    ]
    unknown = [m.name for m in members if m.age_band is None]
    if unknown:
        warnings.append(f"age band not given for {', '.join(unknown)}")
    if level == "district" and assistant is None:
        warnings.append("the township has not named a leadership member to assist")
    return warnings


def score_sheet(
    rules: CampaignSettings,
    common: Mapping[str, float],
    differentiated: float,
    bonus: float,
    penalty: float,
) -> float:
    """Total of a team's sheet; every common indicator must be scored within its marks."""
    marks = {i.code: i.max_points for i in rules.common_indicators}
    missing = sorted(set(marks) - set(common))
    unknown = sorted(set(common) - set(marks))
    if missing or unknown:
        raise DomainError(
            "score exactly the common indicators "
            f"{', '.join(marks)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else ""),
            field="common",
        )
    for code, points in common.items():
        if not 0 <= points <= marks[code]:
            raise DomainError(f"{code}: {points} is not within 0–{marks[code]:g}", field="common")
    for name, value, top in (
        ("differentiated", differentiated, rules.differentiated_max),
        ("bonus", bonus, rules.bonus_max),
        ("penalty", penalty, rules.penalty_max),
    ):
        if not 0 <= value <= top:
            raise DomainError(f"{name} {value} is not within 0–{top:g}", field=name)
    return round(max(sum(common.values()) + differentiated + bonus - penalty, 0.0), 2)


class WorkTeam(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.campaign_id, self.team_id = parse_team_stream_id(aggregate_id)
        self.level: Tier | None = None
        self.formed_on = dt.date.min
        self.township_id = ""
        self.village_ids: tuple[str, ...] = ()
        self.members: dict[str, Member] = {}
        self.patrons: tuple[Patron, ...] = ()
        self.warnings: tuple[str, ...] = ()
        self.reports = ReportBook()
        self.assessments: dict[str, TeamAssessed] = {}

    def is_member(self, person_id: str) -> bool:
        return person_id in self.members or any(p.person_id == person_id for p in self.patrons)

    def form(
        self,
        *,
        level: Tier,
        township_id: str,
        village_ids: Sequence[str],
        departments: Sequence[Department],
        members: Sequence[Member],
        patrons: Sequence[Patron],
        township_assistant: str | None,
        on: dt.date,
    ) -> list[Event]:
        if self.exists:
            raise InvalidTransition(f"team {self.team_id} is already formed")
        if not village_ids:
            raise DomainError("a team works for at least one village", field="village_ids")
        if not members:
            raise DomainError("a team needs members", field="members")
        ids = [m.person_id for m in members]
        if len(set(ids)) != len(ids):
            raise DomainError("a member is listed twice", field="members")
        known = {d.department_id for d in departments}
        strays = sorted({m.department_id for m in members} - known)
        if strays:
            raise DomainError(
                f"members come from department(s) {', '.join(strays)} not listed", field="members"
            )
        if level == "district" and not patrons:
            raise DomainError(
                "a district-level team needs a district leader as patron (包靠)", field="patrons"
            )
        if level == "town" and not any(m.role == "leader" for m in members):
            raise DomainError(
                "a township working group is led by a leadership member: mark one 'leader'",
                field="members",
            )
        return [
            WorkTeamFormed(
                campaign_id=self.campaign_id,
                team_id=self.team_id,
                level=level,
                township_id=township_id,
                village_ids=tuple(village_ids),
                departments=tuple(departments),
                members=tuple(members),
                patrons=tuple(patrons),
                township_assistant=township_assistant,
                warnings=tuple(team_warnings(members, level, township_assistant)),
                formed_on=on,
            )
        ]

    def submit_on_duty(
        self,
        h: CampaignHeader,
        *,
        period: int,
        now: dt.datetime,
        by: str,
        on_duty_days: Mapping[str, int],
        summary: str = "",
    ) -> list[Event]:
        self._require_formed()
        strangers = sorted(set(on_duty_days) - set(self.members))
        if strangers:
            raise DomainError(
                f"not members of the team: {', '.join(strangers)}", field="on_duty_days"
            )
        if any(not 0 <= d <= MAX_DAYS_A_WEEK for d in on_duty_days.values()):
            raise DomainError("days on duty in a week are 0–7", field="on_duty_days")
        return [
            self.reports.submit(
                h,
                subject_id=self.team_id,
                township_id=self.township_id,
                village_ids=self.village_ids,
                kind="weekly_on_duty",
                index=period,
                now=now,
                by=by,
                summary=summary,
                on_duty_days=on_duty_days,
            )
        ]

    def chase_report(self, h: CampaignHeader, *, period: int, now: dt.datetime) -> list[Event]:
        """The weekly on-duty report due or late (``ReportBook.chase``)."""
        if not self.exists:
            return []
        return list(
            self.reports.chase(
                h,
                subject_id=self.team_id,
                township_id=self.township_id,
                village_ids=self.village_ids,
                kind="weekly_on_duty",
                index=period,
                now=now,
                owed_from=self.formed_on,
            )
        )

    def assess(
        self,
        h: CampaignHeader,
        *,
        period: str,
        common: Mapping[str, float],
        differentiated: float,
        bonus: float,
        penalty: float,
        by: str,
    ) -> list[Event]:
        self._require_formed()
        if period in self.assessments:
            raise InvalidTransition(f"team {self.team_id} is already assessed for {period}")
        total = score_sheet(h.settings, common, differentiated, bonus, penalty)
        return [
            TeamAssessed(
                campaign_id=self.campaign_id,
                team_id=self.team_id,
                township_id=self.township_id,
                village_ids=self.village_ids,
                period=period,
                common=dict(common),
                differentiated=differentiated,
                bonus=bonus,
                penalty=penalty,
                total=total,
                assessed_by=by,
            )
        ]

    def _require_formed(self) -> None:
        if not self.exists:
            raise InvalidTransition(f"there is no team {self.team_id} in {self.campaign_id}")

    def _on_WorkTeamFormed(self, e: WorkTeamFormed) -> None:
        self.level, self.township_id, self.village_ids = e.level, e.township_id, e.village_ids
        self.formed_on = e.formed_on
        self.members = {m.person_id: m for m in e.members}
        self.patrons, self.warnings = e.patrons, e.warnings

    def _on_ReportSubmitted(self, e: ReportSubmitted) -> None:
        self.reports.on_submitted(e)

    def _on_ReportLate(self, e: ReportLate) -> None:
        self.reports.on_late(e)

    def _on_ReportDue(self, e: ReportDue) -> None:
        self.reports.on_due(e)

    def _on_TeamAssessed(self, e: TeamAssessed) -> None:
        self.assessments[e.period] = e
