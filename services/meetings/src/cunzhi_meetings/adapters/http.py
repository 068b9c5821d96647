"""The HTTP API of the meetings service: commands and queries, JWT roles and jurisdiction.

Who may do what:
- ``party_building_office`` (党建办) keeps the roster, plans, invites, notices, postpones,
  cancels, records a forum as held, records contests, for the townships of its token;
- ``township_committee`` (乡党委) adopts resolutions, and may do what the office does;
- a ``village_secretary`` records the speak-up sessions of their own villages;
- ``county_organisation_department`` (县委组织部) reads everything; everyone else reads only
  their townships.

Every refusal is the platform's ``Problem`` (``cunzhi_platform.edge``): 403 outside one's role
or jurisdiction — decided from the token and the path before the body is read or validated —
404 unknown, 409 a state that does not allow it, 422 invalid input naming the field. A roster
member's village outside the villages the caller's token names is refused with 403 (a rule of
ours: the identity provider names the township's villages in the office's ``village_ids``; a
token that names none is not checked, as this service keeps no register of villages).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from cunzhi_platform import csvfile, edge
from cunzhi_platform.aggregate import DomainError, NotFound
from cunzhi_platform.auth import (
    COUNTY_ORG_DEPT,
    CurrentPrincipal,
    Principal,
    in_township,
    with_role,
)
from cunzhi_platform.clock import today
from cunzhi_platform.edge import Body, Id, IdPath, LongText, Offset, PlausibleDate, link, links
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.runtime import Runtime, runtime
from fastapi import Depends, Query, Request
from pydantic import Field, ValidationError

from .. import application
from ..domain import (
    AttendanceMark,
    Forum,
    ForumStatus,
    ResolutionDraft,
    RosterMember,
    parse_roster_csv,
)
from ..events import (
    AttendanceStatus,
    ContestParticipant,
    ExpertLecture,
    ForumMode,
    ForumTask,
    GuestSpeaker,
    Policy,
    RosterMemberAdded,
    RosterMemberUpdated,
    RosterRole,
)
from .queries import AttendanceKey, ReadModels

OFFICE = "party_building_office"
COMMITTEE = "township_committee"
VILLAGE_SECRETARY = "village_secretary"

router = edge.router()
Rt = Annotated[Runtime, Depends(runtime)]

Text = edge.Title


async def _forum_organiser(forum_id: IdPath, principal: CurrentPrincipal) -> Principal:
    _organiser(principal, application.forum_township(forum_id))
    return principal


async def _forum_committee(forum_id: IdPath, principal: CurrentPrincipal) -> Principal:
    principal.require_role(COMMITTEE)
    principal.require_township(application.forum_township(forum_id))
    return principal


async def _speak_up_recorder(village_id: IdPath, principal: CurrentPrincipal) -> Principal:
    """The office or committee (of the body's township, checked with it), else the village's
    own secretary."""
    if not principal.has_role(OFFICE, COMMITTEE):
        principal.require_role(VILLAGE_SECRETARY)
        principal.require_villages([village_id])
    return principal


async def _member_of_forum(forum_id: IdPath, principal: CurrentPrincipal) -> Principal:
    principal.require_township(application.forum_township(forum_id))
    return principal


async def _reader_of_forum(forum_id: IdPath, principal: CurrentPrincipal) -> Principal:
    principal.require_township(application.forum_township(forum_id), read=True)
    return principal


async def _reader_of_township(township_id: IdPath, principal: CurrentPrincipal) -> Principal:
    principal.require_township(township_id, read=True)
    return principal


# Role and jurisdiction from the token and the path, decided before the body is read.
Organiser = Annotated[Principal, Depends(in_township(OFFICE, COMMITTEE))]
ForumOrganiser = Annotated[Principal, Depends(_forum_organiser)]
ForumCommittee = Annotated[Principal, Depends(_forum_committee)]
SpeakUpRecorder = Annotated[Principal, Depends(_speak_up_recorder)]
ForumMember = Annotated[Principal, Depends(_member_of_forum)]
ForumReader = Annotated[Principal, Depends(_reader_of_forum)]
TownshipReader = Annotated[Principal, Depends(_reader_of_township)]
County = Annotated[Principal, Depends(with_role(COUNTY_ORG_DEPT))]
FORUM_LINKS = {
    "read": link("forum_record", forum_id="$response.body#/forum_id"),
    "invite": link("add_invitee", forum_id="$response.body#/forum_id"),
    "notice": link("issue_notice", forum_id="$response.body#/forum_id"),
    "postpone": link("postpone", forum_id="$response.body#/forum_id"),
    "cancel": link("cancel", forum_id="$response.body#/forum_id"),
    "held": link("hold", forum_id="$response.body#/forum_id"),
    "resolutions": link("adopt_resolutions", forum_id="$response.body#/forum_id"),
}


class RosterMemberIn(Body):
    person_id: Id
    name: Text
    role: RosterRole
    village_id: Id | None = None
    phone: Annotated[str, edge.TextRules(32, required=False)] | None = None


class LectureIn(Body):
    expert_name: Text
    affiliation: Text
    subject: Text


class GuestIn(Body):
    name: Text
    affiliation: Text = Field(description="e.g. 新乡县东大阳村党支部, 获嘉县委组织部")


class PlanForum(Body):
    date: edge.FromToday | None = Field(
        None, description="default: the last working day of the month"
    )
    place: Text
    mode: ForumMode = "at_township"
    host_unit: Text | None = None
    expert_lectures: list[LectureIn] = Field(default_factory=list, max_length=10)
    exchange_speaker_ids: list[Id] = Field(
        default_factory=list,
        max_length=30,
        description="village secretaries of the township's roster who share experience",
    )
    guest_speakers: list[GuestIn] = Field(
        default_factory=list,
        max_length=30,
        description="excellent party secretaries from elsewhere who share experience",
    )
    discussion: bool = True


def _this_year_or_next(schema: dict[str, Any]) -> None:
    """What ``months_to_plan`` accepts, published as it stands today (the document is written
    again when the day changes)."""
    this_year = edge.today_here().year
    schema.update(minimum=this_year, maximum=this_year + 1)


class PlanYear(Body):
    year: int = Field(
        ge=2000,
        le=2100,
        json_schema_extra=_this_year_or_next,
        description="this year or next (Asia/Shanghai); a year that is over has nothing left "
        "to plan",
    )
    place: Text


class PastForum(Body):
    number: int = Field(ge=1, le=9999, description="the forum's number in the ledger")
    date: edge.BeforeToday = Field(description="when it was held: before today")
    place: Text
    mode: ForumMode = "at_township"
    host_unit: Text | None = None
    topic_title: Text = Field(description="the problem the forum took up")
    category: Id | None = None
    expert_lectures: list[LectureIn] = Field(default_factory=list, max_length=10)
    guest_speakers: list[GuestIn] = Field(
        default_factory=list,
        max_length=30,
        description="who shared experience, by name and affiliation (the ledger's own words)",
    )
    policies: list[PolicyIn] = Field(default_factory=list, max_length=20)
    discussion: bool = True
    problem_solved: bool = Field(description="whether the work the forum started was done")


class InviteeIn(Body):
    name: Text
    role: Text
    village_id: Id | None = None
    person_id: Id | None = None


class Postpone(Body):
    date: edge.AfterToday
    reason: Text


class Cancel(Body):
    reason: Text


class MarkIn(Body):
    person_id: Id
    status: AttendanceStatus
    reason: Text | None = None


class Held(Body):
    attendance: list[MarkIn] = Field(min_length=1, max_length=500)
    speakers: list[Id] = Field(default_factory=list, max_length=500)
    minutes: LongText


class PolicyIn(Body):
    title: Text
    document_number: Text


class TaskIn(Body):
    task_id: Id = Field(
        description="the task's id within the forum; the forum's id and a dash are put in "
        "front (unless it already begins with them), so that it is unique county-wide, where "
        "rectification tracks it (ours). The adopted resolution answers the full id"
    )
    assignee_village_id: Id | None = None
    assignee_person_id: Id | None = None
    description: LongText
    due_date: PlausibleDate


class ResolutionIn(Body):
    title: Text
    policies: list[PolicyIn] = Field(default_factory=list, max_length=20)
    tasks: list[TaskIn] = Field(default_factory=list, max_length=200)


class Resolutions(Body):
    resolutions: list[ResolutionIn] = Field(min_length=1, max_length=20)


class SpeakUpIn(Body):
    township_id: Id
    date: edge.PastDate
    attendance_count: int = Field(ge=1, le=100_000)
    issue_ids: list[Id] = Field(
        default_factory=list,
        max_length=200,
        description="the speak-up issues raised at the session, by the ids the topics service "
        "gave them (POST /villages/{village_id}/issues there)",
    )
    hosted_by: Text


class ParticipantIn(Body):
    village_id: Id
    head_name: Text
    head_person_id: Id | None = None


class ContestIn(Body):
    date: edge.PastDate
    participants: list[ParticipantIn] = Field(min_length=2, max_length=100)
    ranking: list[Id] = Field(
        min_length=2,
        max_length=100,
        json_schema_extra={"uniqueItems": True},
        description="the participating villages, best first, each once",
    )


# --- helpers -------------------------------------------------------------------------------


def _ctx(principal: Principal, request: Request) -> CommandContext:
    # The platform's middleware checked the header (or made one up).
    return CommandContext(actor=principal.sub, correlation_id=request.headers["x-correlation-id"])


def _organiser(principal: Principal, township_id: str) -> None:
    principal.require_role(OFFICE, COMMITTEE)
    principal.require_township(township_id)


def _reads(rt: Runtime) -> ReadModels:
    return ReadModels(rt.pool, rt.store.schema)


def _forum(forum: Forum) -> dict[str, Any]:
    """What a forum command answers: where the forum stands now — the fields of the forum's
    record (``GET /forums/{forum_id}``) that a command can change, in the same shapes, and the
    stream's ``version``."""
    return {
        "forum_id": forum.forum_id,
        "township_id": forum.township_id,
        "number": forum.number,
        "status": forum.status,
        "date": forum.date,
        "place": forum.place,
        "mode": forum.mode,
        "host_unit": forum.host_unit,
        "notice_due_at": forum.notice_due_at,
        "topic": dataclasses.asdict(forum.topic) if forum.topic else None,
        "closed_on": forum.closed_on,
        "version": forum.version,
    }


def _roster_csv(text: str) -> list[RosterMember]:
    """The file's members, each held to the same rules as a JSON roster entry."""
    checked = []
    for number, member in enumerate(parse_roster_csv(text), start=1):
        try:
            entry = RosterMemberIn.model_validate(member.__dict__)
        except ValidationError as exc:
            error = exc.errors()[0]
            column = ".".join(str(p) for p in error["loc"])
            raise DomainError(
                f"roster member {number} ({member.person_id!r}), column {column}: "
                f"{error['msg'].removeprefix('Value error, ')}",
                field="file",
            ) from exc
        checked.append(RosterMember(**entry.model_dump()))
    return checked


# --- roster --------------------------------------------------------------------------------


async def _import(
    rt: Runtime,
    principal: Principal,
    request: Request,
    township_id: str,
    members: list[RosterMember],
) -> dict[str, Any]:
    if principal.village_ids:  # see the module docstring
        principal.require_villages({m.village_id for m in members if m.village_id})
    events = await application.import_roster(
        rt.store, township_id, members, _ctx(principal, request)
    )
    added = sorted(e.person_id for e in events if isinstance(e, RosterMemberAdded))
    updated = sorted(e.person_id for e in events if isinstance(e, RosterMemberUpdated))
    given = {m.person_id for m in members}
    return {
        "township_id": township_id,
        "added": added,
        "updated": updated,
        "unchanged": len(given) - len(added) - len(updated),
    }


@router.post("/townships/{township_id}/roster", tags=["roster"])
async def import_roster(
    township_id: IdPath,
    principal: Organiser,
    members: Annotated[list[RosterMemberIn], Field(min_length=1, max_length=5000)],
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    """Add or update roster members (JSON); members already as given change nothing."""
    return await _import(
        rt,
        principal,
        request,
        township_id,
        [RosterMember(**m.model_dump()) for m in members],
    )


@router.post(
    "/townships/{township_id}/roster.csv",
    tags=["roster"],
    openapi_extra=csvfile.UPLOAD_BODY,
)
async def import_roster_csv(
    township_id: IdPath, principal: Organiser, request: Request, rt: Rt
) -> dict[str, Any]:
    """Import ``person_id,name,role,village_id,phone`` rows; any bad row refuses the file.

    The file is read only once the caller may import this township's roster."""
    text = csvfile.upload_text(request.headers.get("content-type", ""), await request.body())
    return await _import(rt, principal, request, township_id, _roster_csv(text))


@router.delete("/townships/{township_id}/roster/{person_id}", tags=["roster"])
async def remove_roster_member(
    township_id: IdPath,
    person_id: IdPath,
    principal: Organiser,
    reason: Annotated[str, Query(min_length=1, max_length=200), edge.TextRules(200)],
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    await application.remove_roster_member(
        rt.store, township_id, person_id, reason, _ctx(principal, request)
    )
    return {"township_id": township_id, "removed": person_id}


@router.get("/townships/{township_id}/roster", tags=["roster"])
async def roster(
    township_id: IdPath,
    principal: TownshipReader,
    rt: Rt,
    limit: edge.Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The township's roster, by role and person, a page at a time (a township of some
    thousands of members would be megabytes at once)."""
    return {"township_id": township_id, **await _reads(rt).roster(township_id, limit, offset)}


# --- forum commands ------------------------------------------------------------------------


@router.post(
    "/townships/{township_id}/forums",
    status_code=201,
    tags=["forums"],
    openapi_extra=links(201, **FORUM_LINKS),
)
async def plan_forum(
    township_id: IdPath, principal: Organiser, body: PlanForum, request: Request, rt: Rt
) -> dict[str, Any]:
    """Plan the next forum; its number follows the township's highest. Opens the call for topics."""
    forum = await application.plan_forum(
        rt.store,
        township_id,
        highest_known_number=await _reads(rt).highest_forum_number(township_id),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
        place=body.place,
        date=body.date,
        mode=body.mode,
        host_unit=body.host_unit,
        expert_lectures=[ExpertLecture(**lecture.model_dump()) for lecture in body.expert_lectures],
        exchange_speaker_ids=body.exchange_speaker_ids,
        guest_speakers=[GuestSpeaker(**guest.model_dump()) for guest in body.guest_speakers],
        discussion=body.discussion,
    )
    return _forum(forum)


@router.post("/townships/{township_id}/forums/year", status_code=201, tags=["forums"])
async def plan_year(
    township_id: IdPath, principal: Organiser, body: PlanYear, request: Request, rt: Rt
) -> dict[str, Any]:
    """Plan the year's forums at once, one a month ("每月一次") on the month's last working day,
    for every month still to come that has none; move any of them with a postponement. The
    calls for topics open on their own ten days before each. (The month-end default and the
    planning ahead are the reports'; planning a whole year at once is ours.)"""
    reads = _reads(rt)
    forums = await application.plan_year(
        rt.store,
        township_id,
        body.year,
        highest_known_number=await reads.highest_forum_number(township_id),
        planned_months=await reads.planned_months(township_id, body.year),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
        place=body.place,
    )
    return {"township_id": township_id, "planned": [_forum(f) for f in forums]}


@router.post("/townships/{township_id}/forums/history", status_code=201, tags=["forums"])
async def record_past_forum(
    township_id: IdPath, principal: Organiser, body: PastForum, request: Request, rt: Rt
) -> dict[str, Any]:
    """Enter a forum held before cunzhi from the township's paper ledger (历史台账), under its
    own number and past date. It counts in the township's record; no call for topics, notice
    or task follows. (Ours: the reports keep the ledger on paper.)"""
    forum = await application.record_past_forum(
        rt.store,
        township_id,
        body.number,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
        place=body.place,
        date=body.date,
        topic_title=body.topic_title,
        problem_solved=body.problem_solved,
        category=body.category,
        mode=body.mode,
        host_unit=body.host_unit,
        expert_lectures=[ExpertLecture(**lecture.model_dump()) for lecture in body.expert_lectures],
        guest_speakers=[GuestSpeaker(**guest.model_dump()) for guest in body.guest_speakers],
        policies=[Policy(**policy.model_dump()) for policy in body.policies],
        discussion=body.discussion,
    )
    return _forum(forum)


@router.post(
    "/forums/{forum_id}/invitees",
    status_code=201,
    tags=["forums"],
    openapi_extra=links(201, **FORUM_LINKS),
)
async def add_invitee(
    forum_id: IdPath, principal: ForumOrganiser, body: InviteeIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Invite someone beyond the roster, before the notice."""
    forum = await application.add_invitee(
        rt.store, forum_id, **body.model_dump(), ctx=_ctx(principal, request)
    )
    invitee = forum.invitees[body.person_id] if body.person_id else [*forum.invitees.values()][-1]
    return {**_forum(forum), "invitee": invitee.model_dump()}


@router.post("/forums/{forum_id}/notice", tags=["forums"], openapi_extra=links(200, **FORUM_LINKS))
async def issue_notice(
    forum_id: IdPath, principal: ForumOrganiser, request: Request, rt: Rt
) -> dict[str, Any]:
    """Issue the notice now (it also goes out by itself three working days before)."""
    forum = await application.issue_notice(
        rt.store, forum_id, now=rt.clock.now(), ctx=_ctx(principal, request)
    )
    return {**_forum(forum), "attendees": [a.model_dump() for a in forum.attendees]}


@router.post(
    "/forums/{forum_id}/postpone", tags=["forums"], openapi_extra=links(200, **FORUM_LINKS)
)
async def postpone(
    forum_id: IdPath, principal: ForumOrganiser, body: Postpone, request: Request, rt: Rt
) -> dict[str, Any]:
    """Move the forum; a notice already out is void and is issued again."""
    forum = await application.postpone(
        rt.store,
        forum_id,
        new_date=body.date,
        reason=body.reason,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return _forum(forum)


@router.post("/forums/{forum_id}/cancel", tags=["forums"], openapi_extra=links(200, **FORUM_LINKS))
async def cancel(
    forum_id: IdPath, principal: ForumOrganiser, body: Cancel, request: Request, rt: Rt
) -> dict[str, Any]:
    forum = await application.cancel(
        rt.store, forum_id, reason=body.reason, ctx=_ctx(principal, request)
    )
    return _forum(forum)


@router.post("/forums/{forum_id}/held", tags=["forums"], openapi_extra=links(200, **FORUM_LINKS))
async def hold(
    forum_id: IdPath, principal: ForumOrganiser, body: Held, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record the forum as held: everyone the notice named, who spoke, the minutes."""
    forum = await application.hold(
        rt.store,
        forum_id,
        attendance=[AttendanceMark(m.person_id, m.status, m.reason) for m in body.attendance],
        speakers=body.speakers,
        minutes=body.minutes,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return _forum(forum)


@router.post(
    "/forums/{forum_id}/resolutions", tags=["forums"], openapi_extra=links(200, **FORUM_LINKS)
)
async def adopt_resolutions(
    forum_id: IdPath, principal: ForumCommittee, body: Resolutions, request: Request, rt: Rt
) -> dict[str, Any]:
    """The committee adopts every resolution of the sitting; rectification tracks the tasks."""
    forum = await application.adopt_resolutions(
        rt.store,
        forum_id,
        resolutions=[
            ResolutionDraft(
                title=r.title,
                policies=[Policy(**p.model_dump()) for p in r.policies],
                tasks=[ForumTask(**t.model_dump()) for t in r.tasks],
            )
            for r in body.resolutions
        ],
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return {
        **_forum(forum),
        "resolutions": [r.model_dump(mode="json") for r in forum.resolutions],
    }


# --- other meetings ------------------------------------------------------------------------


@router.post("/villages/{village_id}/speak-up-sessions", status_code=201, tags=["other meetings"])
async def hold_speak_up_session(
    village_id: IdPath, principal: SpeakUpRecorder, body: SpeakUpIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record a speak-up session (逢五说事) of a lunar 5th/15th/25th and the issues raised at
    it, named by their ids on the village's claim list (the topics service raises them)."""
    principal.require_township(body.township_id)
    known = await _reads(rt).speak_up_issues(body.issue_ids)
    session = await application.hold_speak_up_session(
        rt.store,
        village_id,
        township_id=body.township_id,
        date=body.date,
        attendance_count=body.attendance_count,
        issue_ids=body.issue_ids,
        known_issues={i.issue_id: i for i in known},
        hosted_by=body.hosted_by,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    assert session.record is not None  # just held
    return session.record.model_dump(mode="json")


@router.post("/townships/{township_id}/contests", status_code=201, tags=["other meetings"])
async def hold_contest(
    township_id: IdPath, principal: Organiser, body: ContestIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record the quarter's contest of village heads (擂台比武), ranking best first."""
    contest = await application.hold_contest(
        rt.store,
        township_id,
        date=body.date,
        participants=[ContestParticipant(**p.model_dump()) for p in body.participants],
        ranking=body.ranking,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    assert contest.record is not None  # just held
    return contest.record.model_dump(mode="json")


# --- queries -------------------------------------------------------------------------------


@router.get("/townships/{township_id}/forums", tags=["queries"])
async def calendar(
    township_id: IdPath,
    principal: TownshipReader,
    rt: Rt,
    status: ForumStatus | None = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The township's forum calendar, by number."""
    return await _reads(rt).calendar(
        township_id, status=status, year=year, limit=limit, offset=offset
    )


class RemarksIn(Body):
    summary: LongText = Field(description="what you will speak about at the forum")


@router.post("/forums/{forum_id}/remarks", tags=["forums"])
async def prepare_remarks(
    forum_id: IdPath, principal: ForumMember, body: RemarksIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """An attendee hands in the remarks the notice asked for (做好发言准备), between the notice
    and the forum; handing them in again replaces them. The caller is the attendee."""
    forum = await application.prepare_remarks(
        rt.store, forum_id, principal.sub, body.summary, ctx=_ctx(principal, request)
    )
    return _forum(forum)


@router.get("/forums/{forum_id}/remarks", tags=["queries"])
async def remarks(forum_id: IdPath, principal: ForumReader, rt: Rt) -> dict[str, Any]:
    """For the office: who of the notice's attendees has prepared remarks and who has not."""
    found = await _reads(rt).remarks(forum_id)
    if found is None:
        raise NotFound(f"forum {forum_id} has not been planned")
    return found


@router.get("/forums/{forum_id}", tags=["queries"])
async def forum_record(forum_id: IdPath, principal: ForumReader, rt: Rt) -> dict[str, Any]:
    """The forum's full record: topic, notice, attendance, activities, minutes, outcomes."""
    forum = await _reads(rt).forum(forum_id)
    if forum is None:
        raise NotFound(f"forum {forum_id} has not been planned")
    return forum


@router.get("/townships/{township_id}/record", tags=["queries"])
async def township_record(township_id: IdPath, principal: TownshipReader, rt: Rt) -> dict[str, Any]:
    """Forums held, problems solved, experts invited, experience exchanges, field visits."""
    return await _reads(rt).township_record(township_id)


@router.get("/townships/{township_id}/attendance", tags=["queries"])
async def attendance(
    township_id: IdPath,
    principal: TownshipReader,
    rt: Rt,
    by: AttendanceKey = "person",
    limit: edge.Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Attendance rate of each person or village over the forums held (late counts), a page
    at a time."""
    return {
        "township_id": township_id,
        "by": by,
        **await _reads(rt).attendance(township_id, by, limit, offset),
    }


@router.get("/county/overview", tags=["queries"])
async def county_overview(
    principal: County, rt: Rt, limit: edge.Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Every township's forums, record and other meetings, a page of townships at a time (the
    county organisation department only, as the topics service's overview; a township reads
    its own record)."""
    return await _reads(rt).county_overview(None, today(rt.clock), limit, offset)
