"""The HTTP API of the meetings service: commands and queries, JWT roles and jurisdiction.

Who may do what:
- ``party_building_office`` (党建办) keeps the roster, plans, invites, notices, postpones,
  cancels, records a forum as held, records contests, for the townships of its token;
- ``township_committee`` (乡党委) adopts resolutions, and may do what the office does;
- a ``village_secretary`` records the speak-up sessions of their own villages;
- ``county_organisation_department`` (县委组织部) reads everything; everyone else reads only
  their townships.

Domain refusals map to 422/409/404/403 with the reason (``cunzhi_platform.runtime``); request
bodies that do not validate get FastAPI's 422 naming the field.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
from typing import Annotated, Any

from cunzhi_platform.auth import CurrentPrincipal, Principal
from cunzhi_platform.clock import today
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.runtime import Runtime, runtime
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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

router = APIRouter()
Rt = Annotated[Runtime, Depends(runtime)]

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RosterMemberIn(Body):
    person_id: Id
    name: Text
    role: RosterRole
    village_id: Id | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = None


class LectureIn(Body):
    expert_name: Text
    affiliation: Text
    subject: Text


class GuestIn(Body):
    name: Text
    affiliation: Text = Field(description="e.g. 新乡县东大阳村党支部, 获嘉县委组织部")


class PlanForum(Body):
    date: dt.date | None = Field(None, description="default: the last working day of the month")
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


class PlanYear(Body):
    year: int = Field(ge=2000, le=2100)
    place: Text


class PastForum(Body):
    number: int = Field(ge=1, le=9999, description="the forum's number in the ledger")
    date: dt.date = Field(description="when it was held: before today")
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
    date: dt.date
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
    task_id: Id
    assignee_village_id: Id | None = None
    assignee_person_id: Id | None = None
    description: LongText
    due_date: dt.date


class ResolutionIn(Body):
    title: Text
    policies: list[PolicyIn] = Field(default_factory=list, max_length=20)
    tasks: list[TaskIn] = Field(default_factory=list, max_length=200)


class Resolutions(Body):
    resolutions: list[ResolutionIn] = Field(min_length=1, max_length=20)


class SpeakUpIn(Body):
    township_id: Id
    date: dt.date
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
    date: dt.date
    participants: list[ParticipantIn] = Field(min_length=2, max_length=100)
    ranking: list[Id] = Field(min_length=2, max_length=100)


# --- helpers -------------------------------------------------------------------------------


def _ctx(principal: Principal, request: Request) -> CommandContext:
    return CommandContext(
        actor=principal.sub, correlation_id=request.headers.get("X-Correlation-ID")
    )


def _organiser(principal: Principal, township_id: str) -> None:
    principal.require_role(OFFICE, COMMITTEE)
    principal.require_township(township_id)


def _reads(rt: Runtime) -> ReadModels:
    return ReadModels(rt.pool, rt.store.schema)


def _forum(forum: Forum) -> dict[str, Any]:
    """What a forum command answers: where the forum stands now."""
    return {
        "forum_id": forum.forum_id,
        "township_id": forum.township_id,
        "number": forum.number,
        "status": forum.status,
        "date": forum.date,
        "notice_due_at": forum.notice_due_at,
        "topic": forum.topic.title if forum.topic else None,
        "version": forum.version,
    }


def _csv_text(content_type: str, body: bytes) -> str:
    """The roster file from a raw ``text/csv`` body or a form upload (field ``file``).

    Multipart is parsed with the standard library: FastAPI's form support needs the
    python-multipart package for this one endpoint. Excel in Chinese locales saves GB18030
    rather than UTF-8, so that is tried second.
    """
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        files = [
            part.get_payload(decode=True)
            for part in message.iter_parts()
            if part.get_param("name", header="content-disposition") == "file"
        ]
        if not files or not isinstance(files[0], bytes):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "upload the CSV as 'file'")
        body = files[0]
    for encoding in ("utf-8", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_ENTITY, "the roster file is neither UTF-8 nor GB18030 text"
    )


# --- roster --------------------------------------------------------------------------------


async def _import(
    rt: Runtime,
    principal: Principal,
    request: Request,
    township_id: str,
    members: list[RosterMember],
) -> dict[str, Any]:
    _organiser(principal, township_id)
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
    township_id: str,
    members: Annotated[list[RosterMemberIn], Field(min_length=1, max_length=5000)],
    principal: CurrentPrincipal,
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
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string"}}}
                },
            }
        }
    },
)
async def import_roster_csv(
    township_id: str, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Import ``person_id,name,role,village_id,phone`` rows; any bad row refuses the file."""
    text = _csv_text(request.headers.get("content-type", ""), await request.body())
    return await _import(rt, principal, request, township_id, parse_roster_csv(text))


@router.delete("/townships/{township_id}/roster/{person_id}", tags=["roster"])
async def remove_roster_member(
    township_id: str,
    person_id: str,
    reason: Annotated[str, Query(min_length=1, max_length=200)],
    principal: CurrentPrincipal,
    request: Request,
    rt: Rt,
) -> dict[str, Any]:
    _organiser(principal, township_id)
    await application.remove_roster_member(
        rt.store, township_id, person_id, reason, _ctx(principal, request)
    )
    return {"township_id": township_id, "removed": person_id}


@router.get("/townships/{township_id}/roster", tags=["roster"])
async def roster(township_id: str, principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    principal.require_township(township_id, read=True)
    return {"township_id": township_id, "members": await _reads(rt).roster(township_id)}


# --- forum commands ------------------------------------------------------------------------


@router.post("/townships/{township_id}/forums", status_code=201, tags=["forums"])
async def plan_forum(
    township_id: str, body: PlanForum, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Plan the next forum; its number follows the township's highest. Opens the call for topics."""
    _organiser(principal, township_id)
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
    township_id: str, body: PlanYear, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Plan the year's forums at once, one a month ("每月一次") on the month's last working day,
    for every month still to come that has none; move any of them with a postponement. The
    calls for topics open on their own ten days before each. (The month-end default and the
    planning ahead are the reports'; planning a whole year at once is ours.)"""
    _organiser(principal, township_id)
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
    township_id: str, body: PastForum, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Enter a forum held before cunzhi from the township's paper ledger (历史台账), under its
    own number and past date. It counts in the township's record; no call for topics, notice
    or task follows. (Ours: the reports keep the ledger on paper.)"""
    _organiser(principal, township_id)
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


@router.post("/forums/{forum_id}/invitees", status_code=201, tags=["forums"])
async def add_invitee(
    forum_id: str, body: InviteeIn, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Invite someone beyond the roster, before the notice."""
    _organiser(principal, application.forum_township(forum_id))
    forum = await application.add_invitee(
        rt.store, forum_id, **body.model_dump(), ctx=_ctx(principal, request)
    )
    invitee = forum.invitees[body.person_id] if body.person_id else [*forum.invitees.values()][-1]
    return {**_forum(forum), "invitee": invitee.model_dump()}


@router.post("/forums/{forum_id}/notice", tags=["forums"])
async def issue_notice(
    forum_id: str, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Issue the notice now (it also goes out by itself three working days before)."""
    _organiser(principal, application.forum_township(forum_id))
    forum = await application.issue_notice(
        rt.store, forum_id, now=rt.clock.now(), ctx=_ctx(principal, request)
    )
    return {**_forum(forum), "attendees": [a.model_dump() for a in forum.attendees]}


@router.post("/forums/{forum_id}/postpone", tags=["forums"])
async def postpone(
    forum_id: str, body: Postpone, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Move the forum; a notice already out is void and is issued again."""
    _organiser(principal, application.forum_township(forum_id))
    forum = await application.postpone(
        rt.store,
        forum_id,
        new_date=body.date,
        reason=body.reason,
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return _forum(forum)


@router.post("/forums/{forum_id}/cancel", tags=["forums"])
async def cancel(
    forum_id: str, body: Cancel, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    _organiser(principal, application.forum_township(forum_id))
    forum = await application.cancel(
        rt.store, forum_id, reason=body.reason, ctx=_ctx(principal, request)
    )
    return _forum(forum)


@router.post("/forums/{forum_id}/held", tags=["forums"])
async def hold(
    forum_id: str, body: Held, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record the forum as held: everyone the notice named, who spoke, the minutes."""
    _organiser(principal, application.forum_township(forum_id))
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


@router.post("/forums/{forum_id}/resolutions", tags=["forums"])
async def adopt_resolutions(
    forum_id: str, body: Resolutions, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """The committee adopts every resolution of the sitting; rectification tracks the tasks."""
    principal.require_role(COMMITTEE)
    principal.require_township(application.forum_township(forum_id))
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
    village_id: str, body: SpeakUpIn, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record a speak-up session (逢五说事) of a lunar 5th/15th/25th and the issues raised at
    it, named by their ids on the village's claim list (the topics service raises them)."""
    principal.require_township(body.township_id)
    if not principal.has_role(OFFICE, COMMITTEE):
        principal.require_role(VILLAGE_SECRETARY)
        principal.require_villages([village_id])
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
    township_id: str, body: ContestIn, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """Record the quarter's contest of village heads (擂台比武), ranking best first."""
    _organiser(principal, township_id)
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
    township_id: str,
    principal: CurrentPrincipal,
    rt: Rt,
    status: ForumStatus | None = None,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """The township's forum calendar, by number."""
    principal.require_township(township_id, read=True)
    return await _reads(rt).calendar(
        township_id, status=status, year=year, limit=limit, offset=offset
    )


class RemarksIn(Body):
    summary: LongText = Field(description="what you will speak about at the forum")


@router.post("/forums/{forum_id}/remarks", tags=["forums"])
async def prepare_remarks(
    forum_id: str, body: RemarksIn, principal: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, Any]:
    """An attendee hands in the remarks the notice asked for (做好发言准备), between the notice
    and the forum; handing them in again replaces them. The caller is the attendee."""
    principal.require_township(application.forum_township(forum_id))
    forum = await application.prepare_remarks(
        rt.store, forum_id, principal.sub, body.summary, ctx=_ctx(principal, request)
    )
    return _forum(forum)


@router.get("/forums/{forum_id}/remarks", tags=["queries"])
async def remarks(forum_id: str, principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    """For the office: who of the notice's attendees has prepared remarks and who has not."""
    principal.require_township(application.forum_township(forum_id), read=True)
    found = await _reads(rt).remarks(forum_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"forum {forum_id} has not been planned")
    return found


@router.get("/forums/{forum_id}", tags=["queries"])
async def forum_record(forum_id: str, principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    """The forum's full record: topic, notice, attendance, activities, minutes, outcomes."""
    principal.require_township(application.forum_township(forum_id), read=True)
    forum = await _reads(rt).forum(forum_id)
    if forum is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"forum {forum_id} has not been planned")
    return forum


@router.get("/townships/{township_id}/record", tags=["queries"])
async def township_record(township_id: str, principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    """Forums held, problems solved, experts invited, experience exchanges, field visits."""
    principal.require_township(township_id, read=True)
    return await _reads(rt).township_record(township_id)


@router.get("/townships/{township_id}/attendance", tags=["queries"])
async def attendance(
    township_id: str, principal: CurrentPrincipal, rt: Rt, by: AttendanceKey = "person"
) -> dict[str, Any]:
    """Attendance rate of each person or village over the forums held (late counts)."""
    principal.require_township(township_id, read=True)
    return {
        "township_id": township_id,
        "by": by,
        "items": await _reads(rt).attendance(township_id, by),
    }


@router.get("/county/overview", tags=["queries"])
async def county_overview(principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    """Every township's forums, record and other meetings (yours only, unless county)."""
    townships = None if principal.reads_everything else sorted(principal.township_ids)
    return {"townships": await _reads(rt).county_overview(townships, today(rt.clock))}
