"""Events of the weak-village campaign (薄弱村集中整顿攻坚, seed 003).

Three kinds of stream keep folds small for a county of 600 villages:

- ``campaign:{campaign_id}``: the list decisions, bounded by the number of villages — opened,
  the register (信息库), one assessment per village, the candidates, their verification, the
  sending units (派出单位);
- ``campaign-village:{campaign_id}:{village_id}``: one target village's two years — its tier,
  verification opinions, problem list, targets, monthly/quarterly/half-year reports, lights,
  graduation;
- ``campaign-team:{campaign_id}:{team_id}``: one work team — members, weekly on-duty
  reports, its assessment.

Every event names its campaign and, where it has one, its township, so projections and other
services need look nothing up.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from cunzhi_platform.events import Event
from pydantic import BaseModel, ConfigDict, Field

from .base import registry

Tier = Literal["district", "town"]
"""区级整顿村 (the worst, run by the district) or 镇级整顿村 (run by their township)."""

ProblemKind = Literal["weak", "disorderly", "poor", "specialised"]
"""弱 / 乱 / 穷 / 专业: the four kinds of problem on a village's problem list (seed 003)."""

DepartmentType = Literal["party_committee", "political_legal", "economic", "sector"]
"""党委部门 / 政法部门 / 经济部门 / 业务部门: matched to 弱 / 乱 / 穷 / 专业."""

AgeBand = Literal["old", "middle", "young"]
"""老—中—青: the three-generation mix a work team should have."""

VillageKind = Literal["village", "community"]
"""村 or 居 (社区/居委会)."""

Light = Literal["green", "yellow", "red"]
"""红黄绿三色亮灯."""

ReportKind = Literal["weekly_on_duty", "monthly_progress", "quarterly_visit", "half_year_review"]
"""每周统计在岗 (per team) / 每月汇总进展 / 每季度“四不两直”实地调研 / 每半年联合考核组评估."""

OpinionSource = Literal[
    "discipline", "political_legal", "petitions", "earlier_rounds", "site_check"
]
"""纪委 / 政法委 / 信访 opinions, the earlier rounds' record (前轮), an on-site check (实地查看)."""

Recommendation = Literal["confirm", "remove", "none"]

Rounding = Literal["nearest", "up"]
"""How the candidate share becomes a count: nearest (90 of 602) or up (不少于, 91 of 602)."""


class ValueObject(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Symptom(ValueObject):
    """One of the ten symptoms of a weak or lax village organisation (软弱涣散10种表现)."""

    code: str
    name: str
    weight: float = Field(1.0, gt=0, le=10)
    from_seed: bool = False


class Indicator(ValueObject):
    """A common indicator of the work-team assessment sheet (共性指标) and its full marks."""

    code: str
    name: str
    max_points: float = Field(gt=0, le=100)


class CampaignSettings(ValueObject):
    """Every rule of a round that the seed leaves open, with our defaults.

    From the seed: the four named symptoms, the candidate share 15 %, 25 district-level
    villages, four report cadences, eight common indicators (not named there). Ours: the six
    other symptoms, the weights, the rounding, the light thresholds, due days, indicator names
    and points, graduation thresholds. ``domain.settings.default_settings`` builds them.
    """

    symptoms: tuple[Symptom, ...]
    symptom_weight: float = Field(ge=0, le=1)
    last_year_weight: float = Field(ge=0, le=1)
    candidate_share: float = Field(gt=0, le=1)
    candidate_rounding: Rounding
    district_level_count: int = Field(ge=0, le=10_000)
    areas: tuple[str, ...]
    task_kinds: tuple[str, ...]
    report_due_working_days: dict[ReportKind, int]
    light_yellow_gap: float = Field(ge=0, le=1)
    light_red_gap: float = Field(ge=0, le=1)
    light_yellow_overdue: int = Field(ge=1)
    light_red_overdue: int = Field(ge=1)
    light_yellow_late: int = Field(ge=1)
    light_red_late: int = Field(ge=1)
    common_indicators: tuple[Indicator, ...]
    differentiated_max: float = Field(ge=0, le=100)
    bonus_max: float = Field(ge=0, le=100)
    penalty_max: float = Field(ge=0, le=100)
    pass_score: float = Field(ge=0, le=200)
    max_dissatisfaction: float = Field(ge=0, le=1)
    follow_up_after_days: int = Field(ge=1, le=3650)
    verification_respond_working_days: int = Field(
        5,
        ge=1,
        le=60,
        description="Ours: working days the departments asked for verification opinions "
        "(纪委, 政法委, 信访) have to answer, counted from the day the candidates are selected.",
    )


class Township(ValueObject):
    township_id: str
    name: str


class RegisteredVillage(ValueObject):
    village_id: str
    name: str
    kind: VillageKind
    township_id: str
    township_name: str


class Member(ValueObject):
    """A cadre of a work team (工作专班成员) and the department that sends them."""

    person_id: str
    name: str
    department_id: str
    age_band: AgeBand | None = None
    role: Literal["leader", "member"] = "member"


class Department(ValueObject):
    department_id: str
    name: str
    type: DepartmentType


class Patron(ValueObject):
    """A district leader who patrons (包靠) the team's village(s)."""

    person_id: str
    name: str


# --- campaign stream ---------------------------------------------------------------------


@registry.register("cunzhi.rectification.CampaignOpened", version=1)
class CampaignOpened(Event):
    """The county organisation department opens a round (第三轮), two years, with a budget."""

    campaign_id: str
    county_id: str
    name: str
    round_number: int
    start_date: dt.date
    end_date: dt.date
    period_years: int
    budget_per_year_yuan: int
    townships: tuple[Township, ...]
    settings: CampaignSettings


@registry.register("cunzhi.rectification.VillagesRegistered", version=1)
class VillagesRegistered(Event):
    """Villages and communities entered into the campaign's register (信息库): one page of
    them, as many events as pages (at most 250 villages each; before, one event held a whole
    import, and folds still take it)."""

    campaign_id: str
    county_id: str
    villages: tuple[RegisteredVillage, ...]


@registry.register("cunzhi.rectification.VillageAssessed", version=1)
class VillageAssessed(Event):
    """A village scored on the symptoms, combined with last year's assessment (higher: better)."""

    campaign_id: str
    village_id: str
    township_id: str
    symptoms: dict[str, int]
    symptom_score: float
    last_year_score: float
    score: float


@registry.register("cunzhi.rectification.CandidatesSelected", version=1)
class CandidatesSelected(Event):
    """Every village ranked best to worst; the bottom share are the candidates (倒排).

    ``ranking`` holds the village ids best first (a village's rank is its position + 1): ids
    only, as the scores are in each ``VillageAssessed``, so a register of 20,000 villages stays
    well under Kafka's default 1 MB message size.
    """

    campaign_id: str
    county_id: str
    ranking: tuple[str, ...]
    candidate_ids: tuple[str, ...]
    share: float
    rounding: Rounding


@registry.register("cunzhi.rectification.VerificationRequested", version=1)
class VerificationRequested(Event):
    """The candidates' verification opinions are asked of the departments (征求核查意见).

    Seed 003: the candidate list is checked against the opinions of 纪委, 政法委 and 信访.
    ``respond_by`` is ours: ``verification_respond_working_days`` after selection.
    """

    campaign_id: str
    county_id: str
    sources: tuple[OpinionSource, ...]
    village_ids: tuple[str, ...]
    respond_by: dt.date


@registry.register("cunzhi.rectification.CandidateConfirmed", version=1)
class CandidateConfirmed(Event):
    """Verification keeps a candidate: it becomes a target of the round."""

    campaign_id: str
    village_id: str
    township_id: str
    rank: int
    reason: str


@registry.register("cunzhi.rectification.CandidateRemoved", version=1)
class CandidateRemoved(Event):
    """Verification takes a candidate off the list, with the reason."""

    campaign_id: str
    village_id: str
    township_id: str
    rank: int
    reason: str


@registry.register("cunzhi.rectification.SendingUnitRecorded", version=1)
class SendingUnitRecorded(Event):
    """A sending unit (派出单位), the villages it helps, its funds and projects so far."""

    campaign_id: str
    unit_id: str
    name: str
    village_ids: tuple[str, ...]
    funds_yuan: int
    projects: tuple[str, ...]


# --- village stream ----------------------------------------------------------------------


@registry.register("cunzhi.rectification.VerificationOpinionGiven", version=1)
class VerificationOpinionGiven(Event):
    """纪委/政法委/信访 opinion, earlier rounds' record or an on-site check on a candidate."""

    campaign_id: str
    village_id: str
    township_id: str
    source: OpinionSource
    opinion: str
    recommends: Recommendation
    given_by: str


@registry.register("cunzhi.rectification.VillageTiered", version=1)
class VillageTiered(Event):
    """A village becomes a target of the round, district- or town-level, with the reason."""

    campaign_id: str
    village_id: str
    village_name: str
    township_id: str
    tier: Tier
    rank: int | None
    reason: str
    placed_on: dt.date


@registry.register("cunzhi.rectification.TownLevelVillageRemoved", version=1)
class TownLevelVillageRemoved(Event):
    """The township takes a village off its town-level list during the round (动态调整)."""

    campaign_id: str
    village_id: str
    township_id: str
    reason: str


@registry.register("cunzhi.rectification.ProblemListed", version=1)
class ProblemListed(Event):
    """A problem on the village's list (问题清单), typed 弱/乱/穷/专业."""

    campaign_id: str
    village_id: str
    township_id: str
    problem_id: str
    kind: ProblemKind
    description: str


@registry.register("cunzhi.rectification.TargetSet", version=1)
class TargetSet(Event):
    """A target of the village (目标事项): common (from the template) or its own.

    The target is tracked as a task of this service under the same id (``task_id``).
    """

    campaign_id: str
    village_id: str
    township_id: str
    target_id: str
    title: str
    area: str
    task_kind: str
    common: bool
    weight: float
    due_date: dt.date
    owner: str


@registry.register("cunzhi.rectification.ReportSubmitted", version=1)
class ReportSubmitted(Event):
    """A cadence report for one period, on time or late (``late``)."""

    campaign_id: str
    subject_id: str
    township_id: str
    village_ids: tuple[str, ...]
    kind: ReportKind
    period: int
    period_start: dt.date
    period_end: dt.date
    due_at: dt.datetime
    submitted_by: str
    late: bool
    summary: str
    on_duty_days: dict[str, int] = Field(default_factory=dict)


class ReportOwed(Event):
    """A report a subject (a village, or a team for ``weekly_on_duty``) owes for a period."""

    campaign_id: str
    subject_id: str
    township_id: str
    village_ids: tuple[str, ...]
    kind: ReportKind
    period: int
    period_start: dt.date
    period_end: dt.date
    due_at: dt.datetime


@registry.register("cunzhi.rectification.ReportDue", version=1)
class ReportDue(ReportOwed):
    """A period has ended and its report is owed by ``due_at`` (a reminder, once a period)."""


@registry.register("cunzhi.rectification.ReportLate", version=1)
class ReportLate(ReportOwed):
    """A report not in by its due time (working days, Asia/Shanghai)."""


@registry.register("cunzhi.rectification.LightChanged", version=1)
class LightChanged(Event):
    """The village's light (红黄绿) changed; ``reason`` says why in words."""

    campaign_id: str
    village_id: str
    township_id: str
    previous: Light | None
    light: Light
    reason: str
    progress: float
    planned: float
    overdue_tasks: int
    late_reports: int


@registry.register("cunzhi.rectification.VillageGraduated", version=1)
class VillageGraduated(Event):
    """Passed the final evaluation: off the list (摘帽), reviewed again a year later (回头看)."""

    campaign_id: str
    village_id: str
    township_id: str
    score: float
    dissatisfaction: float
    follow_up_review_on: dt.date


@registry.register("cunzhi.rectification.VillageCarriedOver", version=1)
class VillageCarriedOver(Event):
    """Failed the final evaluation: the village stays on the list into the next round."""

    campaign_id: str
    village_id: str
    township_id: str
    score: float
    dissatisfaction: float
    reason: str


# --- team stream -------------------------------------------------------------------------


@registry.register("cunzhi.rectification.WorkTeamFormed", version=1)
class WorkTeamFormed(Event):
    """A work team (驻村工作专班, or a township working group 工作组) for its village(s)."""

    campaign_id: str
    team_id: str
    level: Tier
    township_id: str
    village_ids: tuple[str, ...]
    departments: tuple[Department, ...]
    members: tuple[Member, ...]
    patrons: tuple[Patron, ...]
    township_assistant: str | None
    warnings: tuple[str, ...]
    formed_on: dt.date


@registry.register("cunzhi.rectification.TeamAssessed", version=1)
class TeamAssessed(Event):
    """A team's sheet under 《薄弱村整顿攻坚工作组考核办法》: common + differentiated ± items."""

    campaign_id: str
    team_id: str
    township_id: str
    village_ids: tuple[str, ...]
    period: str
    common: dict[str, float]
    differentiated: float
    bonus: float
    penalty: float
    total: float
    assessed_by: str
