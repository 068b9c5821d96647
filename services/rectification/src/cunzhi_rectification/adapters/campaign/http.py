"""HTTP API of the weak-village campaign (滨城区薄弱村集中整顿攻坚, seed 003).

Who may do what (JWT roles, jurisdiction from the token):
- ``county_organisation_department`` (区委组织部) of the campaign's county runs the round:
  opens it, imports the register, assesses, ranks, verifies, tiers, lists problems, forms
  district-level teams, sets targets, records visits and half-year reviews, assesses teams,
  evaluates villages; it reads everything of its county;
- ``discipline_commission`` / ``political_legal_committee`` / ``petitions_bureau``
  (纪委/政法委/信访) of the county give verification opinions on candidates and read the ranking;
- ``party_building_office`` / ``township_committee`` of a township keep its town-level list,
  form its working groups, report for its town-level villages, and read their township;
- ``work_team_member``: a member (or patron) of a team reports for the team's villages only and
  reads their cards.

Refusals: 422 with the field and the reason, 409 for a state the domain refuses, 403 outside
one's role or jurisdiction, 404 for what does not exist; nothing stored changes. Role and
jurisdiction are decided from the token and the path before the body is validated (or an
uploaded file read), so an outsider hears 403 whatever their body holds; what only the body
names (a village in it, a team's level) is checked once it is valid.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Annotated, Any, Literal

from cunzhi_platform import csvfile, edge
from cunzhi_platform.aggregate import DomainError, Forbidden, NotFound
from cunzhi_platform.auth import COUNTY_ORG_DEPT, CurrentPrincipal, Principal, with_role
from cunzhi_platform.clock import today
from cunzhi_platform.edge import link, links
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.runtime import Runtime, runtime
from fastapi import Depends, Query, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import Field, ValidationError

from ...application import campaign as app
from ...application import tasks
from ...domain.campaign import AssessmentInput, CampaignHeader
from ...domain.campaign_settings import (
    COMMON_CODES,
    CommonIndicatorCode,
    common_indicators,
    default_settings,
)
from ...domain.campaign_team import MAX_DAYS_A_WEEK, propose_departments
from ...domain.campaign_village import ProblemDraft, TargetDraft
from ...domain.ranking import SEVERITY_MAX
from ...domain.tasks import Actor, Task
from ...events import Evidence
from ...events.campaign import (
    AgeBand,
    DepartmentType,
    OpinionSource,
    ProblemKind,
    RegisteredVillage,
    ReportKind,
    Rounding,
    Tier,
    VillageKind,
)
from ...events.campaign import (
    Department as DepartmentModel,
)
from ...events.campaign import (
    Member as MemberModel,
)
from ...events.campaign import (
    Patron as PatronModel,
)
from ...events.campaign import (
    Township as TownshipModel,
)
from ..tasks.http import CompletionIn, ProgressIn, Remark, task_links
from .export import ledger_xlsx, ranking_xlsx, review_xlsx
from .queries import CampaignReads, Scope

OFFICE = "party_building_office"
COMMITTEE = "township_committee"
TEAM_MEMBER = "work_team_member"
VERIFIERS: dict[str, OpinionSource] = {
    "discipline_commission": "discipline",
    "political_legal_committee": "political_legal",
    "petitions_bureau": "petitions",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

RULES = """
**From seed 003**: a round of two years (由过去1年改为2年) with a yearly budget (2.1M yuan);
villages scored on ten symptoms of a weak or lax organisation, four named (集体经济空壳村,
班子不团结, 党务村务财务公开和民主管理混乱, 党组织服务能力弱), combined with last year's assessment,
ranked best to worst; at least 15 % from the bottom as candidates (90 of 602); verification
with 纪委/政法/信访 opinions, the earlier rounds and on-site checks; the worst 25 confirmed
district-level, the rest town-level run by their township, that list open during the round;
problems typed 弱/乱/穷/专业; teams matched
党委部门联弱、政法部门联乱、经济部门联穷、业务部门联专业, mixing 老—中—青, district leaders
as patrons, a township assistant; weekly on-duty, monthly
progress, quarterly 四不两直 visits, half-year joint reviews; 红黄绿 lights; eight common
indicators + differentiated + bonus/penalty items.

**Ours (campaign settings, defaults shown by `GET /campaigns/settings/defaults`)**: the
six other symptoms; severities 0–3 and the score formula (70 % symptoms, 30 % last year);
ties broken by last year's score, then fewer symptoms, then the village id; the candidate
count rounded to the nearest (0.15 × 602 = 90.3 → 90, the seed's figure; `up` reads
"不少于" literally and gives 91); report due times (1/3/5/10 working days after the period,
17:30 Asia/Shanghai); the light rule (progress against the time-proportional plan: yellow 10,
red 25 points behind; 1/3 overdue targets; 1/2 late reports); the names and marks of the
indicators; graduation at score ≥ 70 and dissatisfaction ≤ 50 % with a review a year later
(回头看), else carried into the next round; a team missing an age band is a warning; a round
ends the day before the same date `period_years` later, and one opened on 29 February ends on
the last day of February (in a common year we take 1 March as its anniversary).
Selecting the candidates asks 纪委, 政法委 and 信访 for their opinions, to be given within
`verification_respond_working_days` (5) working days; reminders of each report when its period
ends (the notifications service adds one the working day before it is due).
"""

router = edge.router(prefix="/campaigns", tags=["campaign"])
Rt = Annotated[Runtime, Depends(runtime)]

# --- links: a round's flow, for clients and the stateful fuzz ------------------------------
# open → register → assess → rank → opinions → confirm/remove → tiers → problems, teams,
# targets (tasks) → reports, on-duty, assessments → evaluation. ``campaign_id`` comes from the
# answer where it says it, else from the path; a village or team from the answer or the body.
_THIS = "$request.path.campaign_id"
_ITS = "$response.body#/campaign_id"


def _round_links(campaign_id: str) -> dict[str, Any]:
    return {
        "register": link("register_villages", campaign_id=campaign_id),
        "register_csv": link("register_villages_csv", campaign_id=campaign_id),
        "assess": link("assess", campaign_id=campaign_id),
        "rank": link("rank", campaign_id=campaign_id),
        "ranking": link("ranking", campaign_id=campaign_id),
        "tiers": link("tier", campaign_id=campaign_id),
        "dashboard": link("dashboard", campaign_id=campaign_id),
        "sending_unit": link("record_sending_unit", campaign_id=campaign_id),
    }


def _village_links(village_id: str) -> dict[str, Any]:
    """What follows an answer naming a village of the path's campaign."""
    return {
        name: link(operation, campaign_id=_THIS, village_id=village_id)
        for name, operation in [
            ("read", "village_card"),
            ("ledger", "village_ledger"),
            ("problems", "list_problems"),
            ("targets", "set_targets"),
            ("report", "submit_report"),
            ("evaluate", "evaluate"),
        ]
    }


def _candidate_links(campaign_id: str, village_id: str) -> dict[str, Any]:
    return {
        name: link(operation, campaign_id=campaign_id, village_id=village_id)
        for name, operation in [
            ("opinion", "give_opinion"),
            ("confirm", "confirm"),
            ("remove", "remove"),
        ]
    }


def _team_links(team_id: str) -> dict[str, Any]:
    return {
        name: link(operation, campaign_id=_THIS, team_id=team_id)
        for name, operation in [
            ("read", "team_card"),
            ("on_duty", "submit_on_duty"),
            ("assess", "assess_team"),
        ]
    }


OPENED = links(201, **_round_links(_ITS))
REGISTERED = links(
    200,
    **_round_links(_ITS),
    **_candidate_links(_ITS, "$request.body#/0/village_id"),
)
RANKED = links(200, **_round_links(_ITS))
RANKING = links(200, **_candidate_links(_THIS, "$response.body#/items/0/village_id"))
VERIFIED = links(
    200,
    **_candidate_links(_THIS, "$response.body#/village_id"),
    tiers=link("tier", campaign_id=_THIS),
)
TIERED = links(200, **_village_links("$response.body#/district/0"))
ON_VILLAGE = links(200, **_village_links("$response.body#/village_id"))
TARGETS_SET = links(
    200,
    **_village_links("$response.body#/village_id"),
    **{f"task_{k}": v for k, v in task_links("$request.body#/0/target_id").items()},
)
TEAM_FORMED = links(201, **_team_links("$response.body#/team_id"))
ON_TEAM = links(200, **_team_links("$response.body#/team_id"))
TARGET_REPORTED = links(
    200,
    complete=link(
        "complete_target",
        campaign_id=_THIS,
        team_id="$request.path.team_id",
        target_id="$response.body#/target_id",
    ),
    task=link("task_card", task_id="$response.body#/target_id"),
)


class TownshipIn(edge.Body):
    township_id: edge.Id
    name: edge.Title


Share = Annotated[float | None, Field(ge=0, le=1)]
Count = Annotated[int | None, Field(ge=1, le=1000)]
Marks = Annotated[float | None, Field(ge=0, le=100)]


class SymptomIn(edge.Body):
    code: edge.Id
    name: edge.Title
    weight: float = Field(1.0, gt=0, le=10)
    from_seed: bool = False


class IndicatorIn(edge.Body):
    name: edge.Title
    max_points: float = Field(gt=0, le=100)


class SettingsIn(edge.Body):
    """Overrides of a round's settings, by name (``GET /campaigns/settings/defaults`` shows
    them); one left out keeps its default. Text follows the edge's rules, and every number is
    bounded (report due days at most 60 working days: a rule of ours)."""

    symptoms: list[SymptomIn] | None = Field(None, min_length=1, max_length=50)
    symptom_weight: Share = None
    last_year_weight: Share = None
    candidate_share: Share = None
    candidate_rounding: Rounding | None = None
    district_level_count: int | None = Field(None, ge=0, le=10_000)
    areas: list[edge.Title] | None = Field(None, min_length=1, max_length=50)
    task_kinds: list[edge.Title] | None = Field(None, min_length=1, max_length=100)
    report_due_working_days: dict[ReportKind, Annotated[int, Field(ge=0, le=60)]] | None = None
    light_yellow_gap: Share = None
    light_red_gap: Share = None
    light_yellow_overdue: Count = None
    light_red_overdue: Count = None
    light_yellow_late: Count = None
    light_red_late: Count = None
    common_indicators: dict[CommonIndicatorCode, IndicatorIn] | None = Field(
        None,
        description="the eight common indicators' names and full marks, by code; one left "
        "out keeps its default (the codes are fixed: ours)",
    )
    differentiated_max: Marks = None
    bonus_max: Marks = None
    penalty_max: Marks = None
    pass_score: float | None = Field(None, ge=0, le=200)
    max_dissatisfaction: Share = None
    follow_up_after_days: int | None = Field(None, ge=1, le=3650)


class OpenCampaign(edge.Body):
    county_id: edge.Id
    round_number: int = Field(ge=1, le=100)
    name: edge.Title
    start_date: edge.PlausibleDate
    period_years: int = Field(2, ge=1, le=5)
    budget_per_year_yuan: int = Field(ge=0, le=10_000_000_000)
    townships: list[TownshipIn] = Field(min_length=1, max_length=200)
    settings: SettingsIn = Field(default_factory=SettingsIn)


class VillageIn(edge.Body):
    village_id: edge.Id
    name: edge.Title
    kind: VillageKind = "village"
    township_id: edge.Id


class AssessmentIn(edge.Body):
    village_id: edge.Id
    symptoms: dict[edge.Id, Annotated[int, Field(ge=0, le=SEVERITY_MAX)]] = Field(
        default_factory=dict,
        max_length=50,
        json_schema_extra=edge.keys_are_ids,
        description="severity by symptom code (the round's symptoms), 0 absent … 3",
    )
    last_year_score: float = Field(ge=0, le=100)


class Verdict(edge.Body):
    reason: edge.Title


class OpinionIn(edge.Body):
    opinion: edge.Text
    recommends: Literal["confirm", "remove", "none"] = "none"
    source: Literal["earlier_rounds", "site_check"] | None = Field(
        None,
        description="for the county organisation department only: the earlier rounds' record "
        "or an on-site check; the departments' opinions take their source from their role",
    )


class TownVillageIn(edge.Body):
    village_id: edge.Id
    reason: edge.Title


class ProblemIn(edge.Body):
    problem_id: edge.Id
    kind: ProblemKind
    description: edge.Text


class DepartmentIn(edge.Body):
    department_id: edge.Id
    name: edge.Title
    type: DepartmentType


class MemberIn(edge.Body):
    person_id: edge.Id
    name: edge.Title
    department_id: edge.Id
    age_band: AgeBand | None = None
    role: Literal["leader", "member"] = "member"


class PatronIn(edge.Body):
    person_id: edge.Id
    name: edge.Title


class TeamIn(edge.Body):
    team_id: edge.Id
    level: Tier
    village_ids: list[edge.Id] = Field(min_length=1, max_length=20)
    departments: list[DepartmentIn] = Field(max_length=50)
    members: list[MemberIn] = Field(min_length=1, max_length=100)
    patrons: list[PatronIn] = Field(default_factory=list, max_length=20)
    township_assistant: edge.Title | None = None


class ProposalIn(edge.Body):
    village_id: edge.Id
    departments: list[DepartmentIn] = Field(min_length=1, max_length=500)


class TargetIn(edge.Body):
    target_id: edge.Id
    title: edge.Title
    area: edge.Title
    task_kind: edge.Title
    weight: float = Field(1.0, gt=0, le=100)
    due_date: edge.PlausibleDate
    owner: edge.Title
    common: bool = False


class ReportIn(edge.Body):
    kind: Literal["monthly_progress", "quarterly_visit", "half_year_review"]
    period: int = Field(ge=1, le=200)
    summary: edge.Text
    team_id: edge.Id | None = None


class OnDutyIn(edge.Body):
    period: int = Field(ge=1, le=200)
    on_duty_days: dict[edge.Id, Annotated[int, Field(ge=0, le=MAX_DAYS_A_WEEK)]] = Field(
        max_length=100,
        json_schema_extra=edge.keys_are_ids,
        description="days on duty by member (person id of the team)",
    )
    summary: Remark = ""


class SheetIn(edge.Body):
    period: edge.Title
    common: dict[CommonIndicatorCode, Annotated[float, Field(ge=0, le=100)]] = Field(
        json_schema_extra={"required": list(COMMON_CODES)},
        description="points by indicator code, every one of the eight, each within the full "
        "marks of the round (10 unless the round set others)",
    )
    differentiated: float = Field(0, ge=0, le=100)
    bonus: float = Field(0, ge=0, le=100)
    penalty: float = Field(0, ge=0, le=100)


class EvaluationIn(edge.Body):
    score: float = Field(ge=0, le=200)
    dissatisfaction: float = Field(ge=0, le=1)
    on: edge.PlausibleDate | None = None


class SendingUnitIn(edge.Body):
    unit_id: edge.Id
    name: edge.Title
    village_ids: list[edge.Id] = Field(max_length=100)
    funds_yuan: int = Field(ge=0, le=10_000_000_000)
    projects: list[edge.Title] = Field(default_factory=list, max_length=200)


# --- helpers -------------------------------------------------------------------------------


def _ctx(principal: Principal, request: Request) -> CommandContext:
    return CommandContext(
        actor=principal.sub, correlation_id=request.headers.get("X-Correlation-ID")
    )


def _reads(rt: Runtime) -> CampaignReads:
    return CampaignReads(rt.pool, rt.store.schema)


def _in_county(principal: Principal, h: CampaignHeader) -> bool:
    return principal.county_id == h.county_id


async def _county(rt: Runtime, principal: Principal, campaign_id: str) -> CampaignHeader:
    """The caller runs this campaign: the county organisation department of its county."""
    principal.require_role(COUNTY_ORG_DEPT)
    h = await app.header(rt.store, campaign_id)
    if not _in_county(principal, h):
        raise Forbidden(f"campaign {campaign_id} is outside your county", field="campaign_id")
    return h


async def _scope(rt: Runtime, principal: Principal, campaign_id: str) -> Scope:
    """What the caller may read of a campaign: the county (None) or some townships."""
    h = await app.header(rt.store, campaign_id)
    county_wide = principal.has_role(COUNTY_ORG_DEPT, *VERIFIERS)
    if county_wide and _in_county(principal, h):
        return None
    if principal.has_role(OFFICE, COMMITTEE):
        mine = principal.township_ids & set(h.townships)
        if mine:
            return mine
    raise Forbidden(f"campaign {campaign_id} is outside your jurisdiction", field="campaign_id")


async def _township_office(
    rt: Runtime, principal: Principal, campaign_id: str, village_id: str
) -> str:
    """The county, or the office of the village's township; returns the township."""
    h = await app.header(rt.store, campaign_id)
    township_id = await app.township_of(rt.store, campaign_id, village_id)
    if principal.has_role(COUNTY_ORG_DEPT) and _in_county(principal, h):
        return township_id
    principal.require_role(OFFICE, COMMITTEE, COUNTY_ORG_DEPT)
    principal.require_township(township_id)
    return township_id


async def _may_read_village(
    rt: Runtime, principal: Principal, campaign_id: str, village_id: str
) -> None:
    try:
        scope = await _scope(rt, principal, campaign_id)
    except Forbidden:
        scope = set()
    if scope is None:
        return
    township_id = await app.township_of(rt.store, campaign_id, village_id)
    if township_id in scope:
        return
    teams = await _reads(rt).teams_of(campaign_id, principal.sub)
    if not any(village_id in t["village_ids"] for t in teams):
        raise Forbidden(f"village {village_id} is outside your jurisdiction", field="village_id")


# --- who may act ---------------------------------------------------------------------------
# Decided in dependencies, from the token and the path, before the body is validated: someone
# outside the campaign's county or township hears 403, not what was wrong with their body.
# What only the body names (a village in it, a team's level) is checked once it is read.


async def _county_dept(campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Principal:
    await _county(rt, principal, campaign_id)
    return principal


async def _village_office(
    campaign_id: edge.IdPath, village_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> Principal:
    await _township_office(rt, principal, campaign_id, village_id)
    return principal


async def _organiser(campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Principal:
    """The county, or the office of one of the campaign's townships (the villages the body
    names are checked with the body)."""
    h = await app.header(rt.store, campaign_id)
    if principal.has_role(COUNTY_ORG_DEPT) and _in_county(principal, h):
        return principal
    principal.require_role(OFFICE, COMMITTEE, COUNTY_ORG_DEPT)
    if not principal.township_ids & set(h.townships):
        raise Forbidden(f"campaign {campaign_id} is outside your jurisdiction", field="campaign_id")
    return principal


async def _verifier(campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Principal:
    """纪委, 政法委, 信访 or the county organisation department, of the campaign's county."""
    h = await app.header(rt.store, campaign_id)
    if not _in_county(principal, h):
        raise Forbidden(f"campaign {campaign_id} is outside your county", field="campaign_id")
    principal.require_role(COUNTY_ORG_DEPT, *VERIFIERS)
    return principal


async def _village_reporter(
    campaign_id: edge.IdPath, village_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> Principal:
    """The county, the office of the village's township, or a work team member (whose team,
    named in the body, is checked with it)."""
    if not principal.has_role(TEAM_MEMBER):
        await _township_office(rt, principal, campaign_id, village_id)
    return principal


async def _team_actor(
    campaign_id: edge.IdPath, team_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> Actor:
    """The caller as a member of the path's team."""
    return await app.team_actor(rt.store, campaign_id, team_id, principal)


CountyDept = Annotated[Principal, Depends(with_role(COUNTY_ORG_DEPT))]
County = Annotated[Principal, Depends(_county_dept)]
VillageOffice = Annotated[Principal, Depends(_village_office)]
Organiser = Annotated[Principal, Depends(_organiser)]
Verifier = Annotated[Principal, Depends(_verifier)]
VillageReporter = Annotated[Principal, Depends(_village_reporter)]
TeamMember = Annotated[Actor, Depends(_team_actor)]


def _xlsx(content: bytes, filename: str) -> Response:
    return Response(
        content,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- the round -----------------------------------------------------------------------------


@router.get("/settings/defaults", description=RULES)
async def default_campaign_settings(principal: CurrentPrincipal) -> dict[str, Any]:
    """The settings a round opens with unless overridden, each marked seed or ours above."""
    return default_settings().model_dump(mode="json")


@router.post("", status_code=status.HTTP_201_CREATED, description=RULES, openapi_extra=OPENED)
async def open_campaign(
    body: OpenCampaign, principal: CountyDept, request: Request, rt: Rt
) -> dict[str, Any]:
    """Open a round for a county (the county organisation department of that county)."""
    if principal.county_id != body.county_id:
        raise Forbidden(f"county {body.county_id} is not yours", field="county_id")
    try:
        overrides = body.settings.model_dump(exclude_none=True)
        if "common_indicators" in overrides:
            overrides["common_indicators"] = common_indicators(overrides["common_indicators"])
        settings = default_settings(**overrides)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(["settings", *(str(p) for p in first["loc"])])
        raise DomainError(
            f"{field}: {first['msg'].removeprefix('Value error, ')}", field=field
        ) from None
    c = await app.open_campaign(
        rt.store,
        county_id=body.county_id,
        round_number=body.round_number,
        name=body.name,
        start_date=body.start_date,
        period_years=body.period_years,
        budget_per_year_yuan=body.budget_per_year_yuan,
        townships=[TownshipModel(**t.model_dump()) for t in body.townships],
        settings=settings,
        ctx=_ctx(principal, request),
    )
    return {"campaign_id": c.campaign_id, "start_date": c.start_date, "end_date": c.end_date}


@router.post("/{campaign_id}/villages", openapi_extra=REGISTERED)
async def register_villages(
    campaign_id: edge.IdPath,
    villages: Annotated[list[VillageIn], Field(min_length=1, max_length=100_000)],
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Add villages and communities (村/居) to the register (信息库)."""
    h = await app.header(rt.store, campaign_id)
    unknown = sorted({v.township_id for v in villages} - set(h.townships))
    if unknown:
        raise DomainError(
            f"unknown township(s) {', '.join(unknown)}; the campaign's are "
            f"{', '.join(h.townships)}",
            field="township_id",
        )
    c = await app.register_villages(
        rt.store,
        campaign_id,
        villages=[
            RegisteredVillage(**v.model_dump(), township_name=h.townships[v.township_id])
            for v in villages
        ],
        ctx=_ctx(principal, request),
    )
    return {"campaign_id": campaign_id, "registered": len(c.villages)}


@router.post("/{campaign_id}/villages.csv", openapi_extra={**csvfile.UPLOAD_BODY, **REGISTERED})
async def register_villages_csv(
    campaign_id: edge.IdPath, principal: County, request: Request, rt: Rt
) -> dict[str, Any]:
    """Import ``village_id,name,kind,township_id`` rows (UTF-8 or GB18030, raw or as the form
    field ``file``); any bad line — a duplicate village id, an unknown township, a control
    character in a name — refuses the file, naming every line. The file is read only once the
    caller may register villages of this campaign."""
    text = csvfile.upload_text(request.headers.get("content-type", ""), await request.body())
    c = await app.register_villages(
        rt.store, campaign_id, csv_text=text, ctx=_ctx(principal, request)
    )
    return {"campaign_id": campaign_id, "registered": len(c.villages)}


@router.post("/{campaign_id}/assessments", description=RULES, openapi_extra=RANKED)
async def assess(
    campaign_id: edge.IdPath,
    assessments: Annotated[list[AssessmentIn], Field(min_length=1, max_length=100_000)],
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Score villages: symptom severities 0 (absent) to 3 (severe) and last year's score."""
    c = await app.assess_villages(
        rt.store,
        campaign_id,
        [AssessmentInput(a.village_id, a.symptoms, a.last_year_score) for a in assessments],
        _ctx(principal, request),
    )
    return {"campaign_id": campaign_id, "assessed": len(c.assessments)}


@router.post("/{campaign_id}/ranking", description=RULES, openapi_extra=RANKED)
async def rank(
    campaign_id: edge.IdPath, principal: County, request: Request, rt: Rt
) -> dict[str, Any]:
    """Rank every village best to worst and take the bottom share as candidates."""
    c = await app.select_candidates(rt.store, campaign_id, _ctx(principal, request))
    return {
        "campaign_id": campaign_id,
        "ranked": len(c.ranking),
        "candidates": len(c.candidate_ranks),
    }


@router.get("/{campaign_id}/ranking", description=RULES, openapi_extra=RANKING)
async def ranking(
    campaign_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    township_id: edge.IdQuery = None,
    candidates_only: bool = False,
    tier: Tier | None = None,
    limit: edge.Limit = 100,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    scope = await _scope(rt, principal, campaign_id)
    return await _reads(rt).ranking(
        campaign_id,
        scope,
        township_id=township_id,
        candidates_only=candidates_only,
        tier=tier,
        limit=limit,
        offset=offset,
    )


@router.get("/{campaign_id}/ranking.xlsx", response_class=Response)
async def ranking_export(
    campaign_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    candidates_only: bool = False,
) -> Response:
    scope = await _scope(rt, principal, campaign_id)
    page = await _reads(rt).ranking(
        campaign_id, scope, candidates_only=candidates_only, limit=1_000_000
    )
    content = await asyncio.to_thread(ranking_xlsx, page["items"])
    return _xlsx(content, f"{campaign_id}-ranking.xlsx")


# --- verification and tiers ----------------------------------------------------------------


@router.post("/{campaign_id}/candidates/{village_id}/opinions", openapi_extra=VERIFIED)
async def give_opinion(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    body: OpinionIn,
    principal: Verifier,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """纪委/政法委/信访 opinion on a candidate (their role is the source), or the county's
    record of earlier rounds or of an on-site check."""
    roles = [VERIFIERS[r] for r in sorted(principal.roles) if r in VERIFIERS]
    source: OpinionSource
    if body.source is not None:
        principal.require_role(COUNTY_ORG_DEPT)
        source = body.source
    elif roles:
        source = roles[0]
    else:
        raise Forbidden("opinions come from 纪委, 政法委 or 信访 (or the county, with a source)")
    v = await app.give_opinion(
        rt.store,
        campaign_id,
        village_id,
        source=source,
        opinion=body.opinion,
        recommends=body.recommends,
        ctx=_ctx(principal, request),
    )
    return {"village_id": village_id, "opinions": len(v.opinions)}


@router.post("/{campaign_id}/candidates/{village_id}/confirm", openapi_extra=VERIFIED)
async def confirm(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    body: Verdict,
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    c = await app.verify_candidate(
        rt.store,
        campaign_id,
        village_id,
        confirm=True,
        reason=body.reason,
        ctx=_ctx(principal, request),
    )
    return {
        "village_id": village_id,
        "confirmed": len(c.confirmed),
        "undecided": len(c.undecided()),
    }


@router.post("/{campaign_id}/candidates/{village_id}/remove", openapi_extra=VERIFIED)
async def remove(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    body: Verdict,
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    c = await app.verify_candidate(
        rt.store,
        campaign_id,
        village_id,
        confirm=False,
        reason=body.reason,
        ctx=_ctx(principal, request),
    )
    return {"village_id": village_id, "removed": len(c.removed), "undecided": len(c.undecided())}


@router.post("/{campaign_id}/tiers", description=RULES, openapi_extra=TIERED)
async def tier(
    campaign_id: edge.IdPath, principal: County, request: Request, rt: Rt
) -> dict[str, Any]:
    """Every confirmed village onto its tier: the worst N district-level, the rest town-level."""
    placed = await app.tier_villages(
        rt.store, campaign_id, on=today(rt.clock), ctx=_ctx(principal, request)
    )
    return {
        "district": sorted(v.village_id for v in placed if v.tier == "district"),
        "town": sorted(v.village_id for v in placed if v.tier == "town"),
    }


@router.post("/{campaign_id}/town-list", openapi_extra=ON_VILLAGE)
async def add_town_village(
    campaign_id: edge.IdPath,
    body: TownVillageIn,
    principal: Organiser,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """A village joins its township's list during the round (动态出现), with the reason."""
    await _township_office(rt, principal, campaign_id, body.village_id)
    v = await app.add_town_village(
        rt.store,
        campaign_id,
        body.village_id,
        body.reason,
        on=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return {"village_id": v.village_id, "tier": v.tier}


@router.delete("/{campaign_id}/town-list/{village_id}")
async def remove_town_village(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    reason: Annotated[str, Query(), edge.TextRules(200)],
    principal: VillageOffice,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    await app.remove_town_village(
        rt.store, campaign_id, village_id, reason, _ctx(principal, request)
    )
    return {"village_id": village_id, "removed": True}


# --- problems, teams, targets --------------------------------------------------------------


@router.post("/{campaign_id}/villages/{village_id}/problems", openapi_extra=ON_VILLAGE)
async def list_problems(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    problems: Annotated[list[ProblemIn], Field(min_length=1, max_length=100)],
    principal: VillageOffice,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """The village's problem list (问题清单), each typed 弱/乱/穷/专业."""
    v = await app.list_problems(
        rt.store,
        campaign_id,
        village_id,
        [ProblemDraft(p.problem_id, p.kind, p.description) for p in problems],
        _ctx(principal, request),
    )
    return {"village_id": village_id, "problems": len(v.problems)}


@router.post("/{campaign_id}/team-proposals")
async def propose_team(
    campaign_id: edge.IdPath, body: ProposalIn, principal: Organiser, rt: Rt
) -> dict[str, Any]:
    """Departments matching the village's problem kinds (党委联弱、政法联乱、经济联穷、业务联专业).

    A proposal only: the team is formed with ``POST /teams``."""
    await _township_office(rt, principal, campaign_id, body.village_id)
    v = await app.active_village(rt.store, campaign_id, body.village_id)
    proposal = propose_departments(
        [p.kind for p in v.problems.values()],
        [DepartmentModel(**d.model_dump()) for d in body.departments],
    )
    return {
        "village_id": body.village_id,
        "departments": [d.model_dump() for d in proposal.departments],
        "uncovered_problem_kinds": list(proposal.uncovered),
    }


@router.post(
    "/{campaign_id}/teams",
    status_code=status.HTTP_201_CREATED,
    description=RULES,
    openapi_extra=TEAM_FORMED,
)
async def form_team(
    campaign_id: edge.IdPath, body: TeamIn, principal: Organiser, request: Request, rt: Rt
) -> dict[str, Any]:
    """A district-level team (the county) or a township working group (its township)."""
    if body.level == "district":
        await _county(rt, principal, campaign_id)
    else:
        for village_id in body.village_ids:
            await _township_office(rt, principal, campaign_id, village_id)
    t = await app.form_team(
        rt.store,
        campaign_id,
        body.team_id,
        level=body.level,
        village_ids=body.village_ids,
        departments=[DepartmentModel(**d.model_dump()) for d in body.departments],
        members=[MemberModel(**m.model_dump()) for m in body.members],
        patrons=[PatronModel(**p.model_dump()) for p in body.patrons],
        township_assistant=body.township_assistant,
        on=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return {"team_id": t.team_id, "warnings": list(t.warnings)}


@router.post("/{campaign_id}/villages/{village_id}/targets", openapi_extra=TARGETS_SET)
async def set_targets(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    targets: Annotated[list[TargetIn], Field(min_length=1, max_length=200)],
    principal: VillageOffice,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Targets of the village (common from the template, or its own), each a tracked task."""
    v = await app.set_targets(
        rt.store,
        campaign_id,
        village_id,
        [
            TargetDraft(
                t.target_id, t.title, t.area, t.task_kind, t.weight, t.due_date, t.owner, t.common
            )
            for t in targets
        ],
        _ctx(principal, request),
    )
    return {"village_id": village_id, "targets": len(v.targets)}


@router.post("/{campaign_id}/sending-units")
async def record_sending_unit(
    campaign_id: edge.IdPath,
    body: SendingUnitIn,
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """A sending unit (派出单位), the villages it helps, its funds and projects."""
    c = await app.record_sending_unit(
        rt.store, campaign_id, **body.model_dump(), ctx=_ctx(principal, request)
    )
    return {"unit_id": body.unit_id, "units": len(c.sending_units)}


# --- reports, assessment, graduation -------------------------------------------------------


@router.post(
    "/{campaign_id}/villages/{village_id}/reports", description=RULES, openapi_extra=ON_VILLAGE
)
async def submit_report(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    body: ReportIn,
    principal: VillageReporter,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Monthly summary by a member of the village's team (``team_id``) or, for a town-level
    village, its township office; quarterly visit and half-year review by the county."""
    if body.kind != "monthly_progress":
        await _county(rt, principal, campaign_id)
    kind: ReportKind = body.kind
    v = await app.submit_village_report(
        rt.store,
        campaign_id,
        village_id,
        kind=kind,
        period=body.period,
        summary=body.summary,
        now=rt.clock.now(),
        reporter=principal,
        team_id=body.team_id,
        ctx=_ctx(principal, request),
    )
    report = v.reports.submitted[(kind, body.period)]
    return {
        "village_id": village_id,
        "kind": kind,
        "period": body.period,
        "late": report.late,
        "due_at": report.due_at,
    }


@router.post(
    "/{campaign_id}/teams/{team_id}/on-duty",
    dependencies=[Depends(_team_actor)],
    openapi_extra=ON_TEAM,
)
async def submit_on_duty(
    campaign_id: edge.IdPath,
    team_id: edge.IdPath,
    body: OnDutyIn,
    principal: CurrentPrincipal,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """The week's days on duty in the village per member (每周统计在岗), by a team member."""
    t = await app.submit_on_duty(
        rt.store,
        campaign_id,
        team_id,
        period=body.period,
        on_duty_days=body.on_duty_days,
        summary=body.summary,
        now=rt.clock.now(),
        reporter=principal,
        ctx=_ctx(principal, request),
    )
    report = t.reports.submitted[("weekly_on_duty", body.period)]
    return {"team_id": team_id, "period": body.period, "late": report.late, "due_at": report.due_at}


def _target(target_id: str, task: Task) -> dict[str, Any]:
    return {"target_id": target_id, "percent": task.percent, "status": task.status}


def _evidence(body: ProgressIn | CompletionIn) -> list[Evidence]:
    return [Evidence(**e.model_dump()) for e in body.evidence]


@router.post(
    "/{campaign_id}/teams/{team_id}/targets/{target_id}/progress",
    openapi_extra=TARGET_REPORTED,
)
async def report_target_progress(
    campaign_id: edge.IdPath,
    team_id: edge.IdPath,
    target_id: edge.IdPath,
    body: ProgressIn,
    actor: TeamMember,
    principal: CurrentPrincipal,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """A team member reports on a target of one of the team's villages (the target's task) in
    this round; another round's target, of the same village or not, is 404 here."""
    task = await tasks.report_progress(
        rt.store,
        target_id,
        actor,
        percent=body.percent,
        note=body.note,
        evidence=_evidence(body),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
        campaign_id=campaign_id,
    )
    return _target(target_id, task)


@router.post("/{campaign_id}/teams/{team_id}/targets/{target_id}/completion")
async def complete_target(
    campaign_id: edge.IdPath,
    team_id: edge.IdPath,
    target_id: edge.IdPath,
    body: CompletionIn,
    actor: TeamMember,
    principal: CurrentPrincipal,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """A team member completes a target of one of the team's villages, with evidence."""
    task = await tasks.complete_task(
        rt.store,
        target_id,
        actor,
        summary=body.summary,
        evidence=_evidence(body),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
        campaign_id=campaign_id,
    )
    return _target(target_id, task)


@router.post("/{campaign_id}/teams/{team_id}/assessments", description=RULES, openapi_extra=ON_TEAM)
async def assess_team(
    campaign_id: edge.IdPath,
    team_id: edge.IdPath,
    body: SheetIn,
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """The team's sheet (《工作组考核办法》): every common indicator, differentiated, ±items."""
    t = await app.assess_team(
        rt.store, campaign_id, team_id, **body.model_dump(), ctx=_ctx(principal, request)
    )
    return {"team_id": team_id, "period": body.period, "total": t.assessments[body.period].total}


@router.post(
    "/{campaign_id}/villages/{village_id}/evaluation",
    description=RULES,
    openapi_extra=ON_VILLAGE,
)
async def evaluate(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    body: EvaluationIn,
    principal: County,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Final evaluation: graduates (摘帽, 回头看 a year later) or is carried over (ours)."""
    v = await app.evaluate_village(
        rt.store,
        campaign_id,
        village_id,
        score=body.score,
        dissatisfaction=body.dissatisfaction,
        on=body.on or today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return {"village_id": village_id, "outcome": v.outcome}


# --- read models ---------------------------------------------------------------------------


@router.get("/{campaign_id}/dashboard")
async def dashboard(
    campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    """Tiers, lights, overdue targets, late reports, progress (target → village → township →
    campaign, weights normalised, unweighted levels averaged: ours)."""
    scope = await _scope(rt, principal, campaign_id)
    return await _reads(rt).dashboard(campaign_id, scope, today(rt.clock))


@router.get("/{campaign_id}/villages/{village_id}")
async def village_card(
    campaign_id: edge.IdPath, village_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    await _may_read_village(rt, principal, campaign_id, village_id)
    card = await _reads(rt).village(campaign_id, village_id)
    if card is None:
        raise NotFound(f"village {village_id} is not in {campaign_id}", field="village_id")
    return card


@router.get("/{campaign_id}/villages/{village_id}/ledger")
async def village_ledger(
    campaign_id: edge.IdPath,
    village_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 200,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """The village's ledger (整顿台账): opinions, tier, problems, team, targets, reports,
    lights, outcome — oldest first."""
    await _may_read_village(rt, principal, campaign_id, village_id)
    return await _reads(rt).ledger(campaign_id, village_id, limit=limit, offset=offset)


@router.get("/{campaign_id}/ledger.xlsx", response_class=Response)
async def ledger_export(campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Response:
    """The ledger of every target village in the caller's jurisdiction, as county offices
    file it: villages, problem lists, targets, ledger entries."""
    scope = await _scope(rt, principal, campaign_id)
    data = await _reads(rt).ledger_rows(campaign_id, scope)
    content = await asyncio.to_thread(ledger_xlsx, data)
    return _xlsx(content, f"{campaign_id}-ledger.xlsx")


@router.get("/{campaign_id}/teams/{team_id}")
async def team_card(
    campaign_id: edge.IdPath, team_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    card = await _reads(rt).team(campaign_id, team_id)
    if card is None:
        raise NotFound(f"there is no team {team_id} in {campaign_id}", field="team_id")
    try:
        scope = await _scope(rt, principal, campaign_id)
    except Forbidden:
        scope = set()
    mine = any(
        t["team_id"] == team_id for t in await _reads(rt).teams_of(campaign_id, principal.sub)
    )
    if not (scope is None or card["township_id"] in scope or mine):
        raise Forbidden(f"team {team_id} is outside your jurisdiction", field="team_id")
    return card


@router.get("/{campaign_id}/patrons")
async def patrons(
    campaign_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """The district leaders patroning (包靠) the villages: a leader may patron several villages
    and a village have several patrons (seed 003: 36 leaders for 25 villages)."""
    scope = await _scope(rt, principal, campaign_id)
    return await _reads(rt).patrons(campaign_id, scope, limit, offset)


@router.get("/{campaign_id}/townships/{township_id}")
async def township_view(
    campaign_id: edge.IdPath, township_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    scope = await _scope(rt, principal, campaign_id)
    if scope is not None and township_id not in scope:
        raise Forbidden(f"township {township_id} is outside your jurisdiction", field="township_id")
    return await _reads(rt).township(campaign_id, township_id, today(rt.clock))


@router.get("/{campaign_id}/township-review")
async def township_review(
    campaign_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """Team assessment totals per township, for the township party secretaries' annual review
    of their party-building work (述职评议考核), a page of townships at a time (the XLSX
    holds them all)."""
    scope = await _scope(rt, principal, campaign_id)
    townships = await _reads(rt).township_review(campaign_id, scope)
    page = townships[offset : offset + limit]
    return {"items": page, "total": len(townships), "limit": limit, "offset": offset}


@router.get("/{campaign_id}/township-review.xlsx", response_class=Response)
async def township_review_export(
    campaign_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt
) -> Response:
    """The same as XLSX, as the county files it."""
    scope = await _scope(rt, principal, campaign_id)
    townships = await _reads(rt).township_review(campaign_id, scope)
    content = await asyncio.to_thread(review_xlsx, townships)
    return _xlsx(content, f"{campaign_id}-township-review.xlsx")


# ``description=RULES`` replaces an endpoint's docstring in the API docs: put it back in front.
for _route in router.routes:
    if (
        isinstance(_route, APIRoute)
        and _route.description == RULES.strip()
        and _route.endpoint.__doc__
    ):
        _route.description = f"{inspect.cleandoc(_route.endpoint.__doc__)}\n{RULES}"

CAMPAIGN_ROUTERS = (router,)
