"""Command handlers of the weak-village campaign: load, let the domain decide, append.

Handlers take the caller as a ``Principal`` only where the domain's own records decide what
they may do (a report only for a village of one's own team); roles and jurisdiction otherwise
are the HTTP adapter's. Decisions over several streams (tiering the round's villages) append
to all of them atomically, so a conflict on any leaves every stream as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import asyncpg
from cunzhi_platform.aggregate import Forbidden, InvalidTransition, NotFound
from cunzhi_platform.application import execute, load
from cunzhi_platform.auth import Principal
from cunzhi_platform.clock import today
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.events import Event
from cunzhi_platform.eventstore import EventStore, StreamWrite

from ..domain.campaign import AssessmentInput, Campaign, CampaignHeader
from ..domain.campaign_ids import (
    campaign_id as make_campaign_id,
)
from ..domain.campaign_ids import (
    campaign_stream_id,
    light_stream_id,
    team_stream_id,
    village_stream_id,
)
from ..domain.campaign_progress import LightInputs
from ..domain.campaign_register import parse_register_csv
from ..domain.campaign_team import WorkTeam
from ..domain.campaign_village import CampaignVillage, ProblemDraft, TargetDraft, VillageLight
from ..domain.tasks import Actor, TaskDraft
from ..events.campaign import (
    CampaignSettings,
    Department,
    Member,
    OpinionSource,
    Patron,
    Recommendation,
    RegisteredVillage,
    ReportKind,
    Tier,
    Township,
)
from ..events.tasks import Assignee
from .tasks import assign_tasks

_headers: dict[tuple[str, str], CampaignHeader] = {}


async def header(store: EventStore, campaign_id: str) -> CampaignHeader:
    """The round's fixed part, folded once per process: it never changes after opening."""
    key = (store.schema, campaign_id)
    found = _headers.get(key)
    if found is None:
        campaign = await load(store, Campaign, campaign_stream_id(campaign_id))
        if not campaign.exists:
            raise NotFound(f"there is no campaign {campaign_id}", field="campaign_id")
        found = _headers[key] = campaign.header()
    return found


async def campaign(store: EventStore, campaign_id: str) -> Campaign:
    c = await load(store, Campaign, campaign_stream_id(campaign_id))
    if not c.exists:
        raise NotFound(f"there is no campaign {campaign_id}", field="campaign_id")
    return c


async def _on_campaign(
    store: EventStore,
    campaign_id: str,
    decide: Callable[[Campaign], Sequence[Event]],
    ctx: CommandContext,
) -> Campaign:
    """A command on the round; one not opened refuses every command (``Campaign.rules``)."""
    return await execute(store, Campaign, campaign_stream_id(campaign_id), decide, ctx)


# --- the round ------------------------------------------------------------------------------


async def open_campaign(
    store: EventStore,
    *,
    county_id: str,
    round_number: int,
    name: str,
    start_date: dt.date,
    period_years: int,
    budget_per_year_yuan: int,
    townships: Sequence[Township],
    settings: CampaignSettings,
    ctx: CommandContext,
) -> Campaign:
    return await execute(
        store,
        Campaign,
        campaign_stream_id(make_campaign_id(county_id, round_number)),
        lambda c: c.open(
            county_id=county_id,
            name=name,
            round_number=round_number,
            start_date=start_date,
            period_years=period_years,
            budget_per_year_yuan=budget_per_year_yuan,
            townships=townships,
            settings=settings,
        ),
        ctx,
    )


async def register_villages(
    store: EventStore,
    campaign_id: str,
    *,
    villages: Sequence[RegisteredVillage] | None = None,
    csv_text: str | None = None,
    ctx: CommandContext,
) -> Campaign:
    def decide(c: Campaign) -> list[Event]:
        given = (
            parse_register_csv(csv_text, c.townships, c.villages.keys())
            if csv_text is not None
            else list(villages or ())
        )
        return c.register(given)

    return await _on_campaign(store, campaign_id, decide, ctx)


async def assess_villages(
    store: EventStore, campaign_id: str, inputs: Sequence[AssessmentInput], ctx: CommandContext
) -> Campaign:
    return await _on_campaign(store, campaign_id, lambda c: c.assess(inputs), ctx)


async def select_candidates(store: EventStore, campaign_id: str, ctx: CommandContext) -> Campaign:
    on = today(store.clock)
    return await _on_campaign(store, campaign_id, lambda c: c.select_candidates(on), ctx)


async def verify_candidate(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    *,
    confirm: bool,
    reason: str,
    ctx: CommandContext,
) -> Campaign:
    return await _on_campaign(
        store,
        campaign_id,
        lambda c: c.confirm(village_id, reason) if confirm else c.remove(village_id, reason),
        ctx,
    )


async def record_sending_unit(
    store: EventStore,
    campaign_id: str,
    *,
    unit_id: str,
    name: str,
    village_ids: Sequence[str],
    funds_yuan: int,
    projects: Sequence[str],
    ctx: CommandContext,
) -> Campaign:
    return await _on_campaign(
        store,
        campaign_id,
        lambda c: c.record_sending_unit(unit_id, name, village_ids, funds_yuan, projects),
        ctx,
    )


# --- villages -------------------------------------------------------------------------------


async def _village(store: EventStore, campaign_id: str, village_id: str) -> CampaignVillage:
    return await load(store, CampaignVillage, village_stream_id(campaign_id, village_id))


async def give_opinion(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    *,
    source: OpinionSource,
    opinion: str,
    recommends: Recommendation,
    ctx: CommandContext,
) -> CampaignVillage:
    c = await campaign(store, campaign_id)
    if village_id not in c.candidate_ranks:
        raise InvalidTransition(
            f"village {village_id} is not a candidate of {campaign_id}", field="village_id"
        )
    township_id = c.villages[village_id].township_id
    return await execute(
        store,
        CampaignVillage,
        village_stream_id(campaign_id, village_id),
        lambda v: v.give_opinion(
            township_id=township_id,
            source=source,
            opinion=opinion,
            recommends=recommends,
            given_by=ctx.actor or "",
        ),
        ctx,
    )


async def tier_villages(
    store: EventStore, campaign_id: str, *, on: dt.date, ctx: CommandContext
) -> list[CampaignVillage]:
    """Every confirmed village onto its tier at once (worst N district-level)."""
    c = await campaign(store, campaign_id)
    placements = c.tiers()
    writes: list[StreamWrite] = []
    placed: list[tuple[CampaignVillage, list[Event]]] = []
    for p in placements:
        v = await _village(store, campaign_id, p.village_id)
        events = v.place(
            name=c.villages[p.village_id].name,
            township_id=p.township_id,
            tier=p.tier,
            rank=p.rank,
            reason=f"核实确认, ranked {p.rank} of {len(c.ranking)}: {c.confirmed[p.village_id]}",
            on=on,
        )
        writes.append(StreamWrite(v.id, v.version, events))
        placed.append((v, events))
    await store.append_many(writes, ctx)
    for v, events in placed:
        for e in events:
            v.apply(e)
    return [v for v, _ in placed]


async def add_town_village(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    reason: str,
    *,
    on: dt.date,
    ctx: CommandContext,
) -> CampaignVillage:
    """A village that appears during the round joins its township's list (动态出现)."""
    c = await campaign(store, campaign_id)
    registered = c.village(village_id)
    rank = c.ranks.get(village_id)
    return await execute(
        store,
        CampaignVillage,
        village_stream_id(campaign_id, village_id),
        lambda v: v.place(
            name=registered.name,
            township_id=registered.township_id,
            tier="town",
            rank=rank,
            reason=reason,
            on=on,
        ),
        ctx,
    )


async def township_of(store: EventStore, campaign_id: str, village_id: str) -> str:
    """The township a village is registered in (for jurisdiction checks)."""
    return (await campaign(store, campaign_id)).village(village_id).township_id


async def remove_town_village(
    store: EventStore, campaign_id: str, village_id: str, reason: str, ctx: CommandContext
) -> CampaignVillage:
    return await execute(
        store,
        CampaignVillage,
        village_stream_id(campaign_id, village_id),
        lambda v: v.remove_from_town_list(reason),
        ctx,
    )


async def active_village(store: EventStore, campaign_id: str, village_id: str) -> CampaignVillage:
    v = await _village(store, campaign_id, village_id)
    if v.tier is None:
        raise NotFound(f"village {village_id} is not a target of {campaign_id}", field="village_id")
    return v


async def list_problems(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    drafts: Sequence[ProblemDraft],
    ctx: CommandContext,
) -> CampaignVillage:
    return await execute(
        store,
        CampaignVillage,
        village_stream_id(campaign_id, village_id),
        lambda v: v.list_problems(drafts),
        ctx,
    )


async def set_targets(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    drafts: Sequence[TargetDraft],
    ctx: CommandContext,
) -> CampaignVillage:
    """Targets of the village, each assigned as a tracked task of the village (same id).

    ``TargetSet`` and the tasks commit together: a task id already taken refuses both.
    """
    h = await header(store, campaign_id)
    v = await _village(store, campaign_id, village_id)
    events = v.set_targets(h, drafts)
    tasks = [
        TaskDraft(
            task_id=d.target_id,
            source="campaign_target",
            township_id=v.township_id,
            assignee=Assignee(kind="village", id=village_id, name=v.name),
            title=d.title,
            starts_on=h.start_date,
            due_on=d.due_date,
            village_id=village_id,
            weight=d.weight,
            campaign_id=campaign_id,
            area=d.area,
            kind=d.task_kind,
        )
        for d in drafts
    ]
    async with store.pool.acquire() as conn, conn.transaction():
        await store.append(v.id, v.version, events, ctx, conn=conn)
        await assign_tasks(store, tasks, ctx, conn=conn)
    for e in events:
        v.apply(e)
    return v


async def submit_village_report(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    *,
    kind: ReportKind,
    period: int,
    summary: str,
    now: dt.datetime,
    reporter: Principal,
    team_id: str | None,
    ctx: CommandContext,
) -> CampaignVillage:
    """Monthly summaries by the village's team (or, for a town-level village, its township);
    quarterly visits and half-year reviews by the county."""
    h = await header(store, campaign_id)
    v = await active_village(store, campaign_id, village_id)
    if kind == "monthly_progress":
        await _may_report_for(store, h, v, reporter, team_id)
    elif not reporter.has_role("county_organisation_department"):
        raise Forbidden(f"the county organisation department records the {kind} report")
    events = v.submit_report(h, kind=kind, period=period, now=now, by=reporter.sub, summary=summary)
    await store.append(v.id, v.version, events, ctx)
    for e in events:
        v.apply(e)
    return v


async def _may_report_for(
    store: EventStore,
    h: CampaignHeader,
    v: CampaignVillage,
    reporter: Principal,
    team_id: str | None,
) -> None:
    township_office = reporter.has_role("party_building_office", "township_committee")
    if v.tier == "town" and township_office and v.township_id in reporter.township_ids:
        return
    if team_id is None:
        raise Forbidden(
            f"report for {v.village_id} as a member of its team: give team_id", field="team_id"
        )
    team = await load(store, WorkTeam, team_stream_id(h.campaign_id, team_id))
    if not team.is_member(reporter.sub):
        raise Forbidden(f"you are not a member of team {team_id}", field="team_id")
    if v.village_id not in team.village_ids:
        raise Forbidden(
            f"village {v.village_id} is not one of team {team_id}'s villages", field="village_id"
        )


async def evaluate_village(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    *,
    score: float,
    dissatisfaction: float,
    on: dt.date,
    ctx: CommandContext,
) -> CampaignVillage:
    h = await header(store, campaign_id)
    return await execute(
        store,
        CampaignVillage,
        village_stream_id(campaign_id, village_id),
        lambda v: v.evaluate(h, score=score, dissatisfaction=dissatisfaction, on=on),
        ctx,
    )


async def recompute_light(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    township_id: str,
    inputs: LightInputs,
    ctx: CommandContext,
    *,
    conn: asyncpg.Connection | None = None,
) -> None:
    """A new light if the rule now gives another one (``LightChanged`` on its own stream)."""
    h = await header(store, campaign_id)
    await execute(
        store,
        VillageLight,
        light_stream_id(campaign_id, village_id),
        lambda v: v.recompute(h, township_id, inputs),
        ctx,
        conn=conn,
    )


async def chase_village_report(
    store: EventStore,
    campaign_id: str,
    village_id: str,
    *,
    kind: ReportKind,
    period: int,
    now: dt.datetime,
    ctx: CommandContext,
) -> list[Event]:
    h = await header(store, campaign_id)
    v = await _village(store, campaign_id, village_id)
    events = v.chase_report(h, kind=kind, period=period, now=now)
    if events:
        await store.append(v.id, v.version, events, ctx)
    return events


# --- teams ----------------------------------------------------------------------------------


async def form_team(
    store: EventStore,
    campaign_id: str,
    team_id: str,
    *,
    level: Tier,
    village_ids: Sequence[str],
    departments: Sequence[Department],
    members: Sequence[Member],
    patrons: Sequence[Patron],
    township_assistant: str | None,
    on: dt.date,
    ctx: CommandContext,
) -> WorkTeam:
    """A team for villages of one township that are targets of the team's level."""
    townships = set()
    for village_id in village_ids:
        v = await active_village(store, campaign_id, village_id)
        if v.tier != level:
            raise InvalidTransition(
                f"village {village_id} is {v.tier}-level, not {level}-level", field="village_ids"
            )
        townships.add(v.township_id)
    if len(townships) > 1:
        raise InvalidTransition(
            "a team's villages lie in one township; these lie in " + ", ".join(sorted(townships)),
            field="village_ids",
        )
    return await execute(
        store,
        WorkTeam,
        team_stream_id(campaign_id, team_id),
        lambda t: t.form(
            level=level,
            township_id=townships.pop() if townships else "",
            village_ids=village_ids,
            departments=departments,
            members=members,
            patrons=patrons,
            township_assistant=township_assistant,
            on=on,
        ),
        ctx,
    )


async def team(store: EventStore, campaign_id: str, team_id: str) -> WorkTeam:
    t = await load(store, WorkTeam, team_stream_id(campaign_id, team_id))
    if not t.exists:
        raise NotFound(f"there is no team {team_id} in {campaign_id}", field="team_id")
    return t


async def team_actor(
    store: EventStore, campaign_id: str, team_id: str, reporter: Principal
) -> Actor:
    """The reporter as a member of the team, for reports on its villages' targets (tasks)."""
    t = await team(store, campaign_id, team_id)
    if not t.is_member(reporter.sub):
        raise Forbidden(f"you are not a member of team {team_id}", field="team_id")
    return Actor(person_id=reporter.sub, team_of=frozenset((campaign_id, v) for v in t.village_ids))


async def submit_on_duty(
    store: EventStore,
    campaign_id: str,
    team_id: str,
    *,
    period: int,
    on_duty_days: Mapping[str, int],
    summary: str,
    now: dt.datetime,
    reporter: Principal,
    ctx: CommandContext,
) -> WorkTeam:
    h = await header(store, campaign_id)
    t = await team(store, campaign_id, team_id)
    if not t.is_member(reporter.sub):
        raise Forbidden(f"you are not a member of team {team_id}", field="team_id")
    events = t.submit_on_duty(
        h, period=period, now=now, by=reporter.sub, on_duty_days=on_duty_days, summary=summary
    )
    await store.append(t.id, t.version, events, ctx)
    for e in events:
        t.apply(e)
    return t


async def chase_team_report(
    store: EventStore,
    campaign_id: str,
    team_id: str,
    *,
    period: int,
    now: dt.datetime,
    ctx: CommandContext,
) -> list[Event]:
    h = await header(store, campaign_id)
    t = await load(store, WorkTeam, team_stream_id(campaign_id, team_id))
    events = t.chase_report(h, period=period, now=now)
    if events:
        await store.append(t.id, t.version, events, ctx)
    return events


async def assess_team(
    store: EventStore,
    campaign_id: str,
    team_id: str,
    *,
    period: str,
    common: Mapping[str, float],
    differentiated: float,
    bonus: float,
    penalty: float,
    ctx: CommandContext,
) -> WorkTeam:
    h = await header(store, campaign_id)
    return await execute(
        store,
        WorkTeam,
        team_stream_id(campaign_id, team_id),
        lambda t: t.assess(
            h,
            period=period,
            common=common,
            differentiated=differentiated,
            bonus=bonus,
            penalty=penalty,
            by=ctx.actor or "",
        ),
        ctx,
    )
