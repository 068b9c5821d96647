"""HTTP API of tracked work items (任务): lists, a task's card and history, reports.

Who may do what (the seeds say tasks are assigned to villages with deadlines; who reports on
them is **our** rule):
- the assignee — a ``village_secretary`` of the task's village, or the person it names —
  reports progress and completes it with evidence;
- the township office (``party_building_office``, ``township_committee``) does the same for
  every task of its townships, and moves due dates;
- the ``county_organisation_department`` sees every task and moves due dates;
- everyone sees only the tasks they could act on (lists are scoped, not refused).

Refusals: 422 (bad input, with the field and the reason), 409 (the task's state refuses it:
completed already, a concurrent change), 403 (not the assignee nor the township's office),
404 (no such task). A refused command stores nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from cunzhi_platform import edge
from cunzhi_platform.aggregate import Forbidden, NotFound
from cunzhi_platform.auth import CurrentPrincipal, Principal
from cunzhi_platform.clock import today
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.runtime import Runtime, runtime
from fastapi import Depends, Request
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from ...application import tasks as application
from ...domain.tasks import EVIDENCE_LINK, Actor, Task, TaskStatus, evidence_link_problem
from ...events import EscalationLevel, Evidence, EvidenceKind, TaskSource
from .queries import Filters, Scope, TaskQueries

OFFICE = "party_building_office"
COMMITTEE = "township_committee"
VILLAGE_SECRETARY = "village_secretary"

router = edge.router(tags=["tasks"])
Rt = Annotated[Runtime, Depends(runtime)]
Remark = Annotated[str, edge.TextRules(4000, required=False)]
"""A progress note or a completion summary: may be empty when evidence says it."""


def task_links(task_id: str) -> dict[str, Any]:
    """What can follow an answer naming a task (``task_id`` a runtime expression): read it,
    its history, report on it, complete it, move its due date."""
    return {
        "read": edge.link("task_card", task_id=task_id),
        "history": edge.link("history", task_id=task_id),
        "progress": edge.link("report_progress", task_id=task_id),
        "complete": edge.link("complete", task_id=task_id),
        "reschedule": edge.link("reschedule", task_id=task_id),
    }


TASK_LINKS = edge.links(200, **task_links("$response.body#/task_id"))
FIRST_TASK_LINKS = edge.links(200, **task_links("$response.body#/items/0/task_id"))


class EvidenceIn(edge.Body):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "file"}}},
            "then": {"properties": {"value": {"pattern": f"^{EVIDENCE_LINK.pattern}$"}}},
        }
    )

    kind: EvidenceKind = Field(
        description="text: the text itself; file: a link a browser opens, an http(s):// "
        "address or a file uploaded to the platform (evidence://…); no other scheme such as "
        "javascript: (a rule of ours)"
    )
    value: edge.Text
    title: Annotated[str, edge.TextRules(200, required=False)] = ""

    @field_validator("value")
    @classmethod
    def _link(cls, value: str, info: ValidationInfo) -> str:
        problem = evidence_link_problem(value) if info.data.get("kind") == "file" else None
        if problem:
            raise ValueError(problem)
        return value


class ProgressIn(edge.Body):
    percent: int = Field(
        ge=0, le=100, description="whole percent done, 0–100, never below the last report"
    )
    note: Remark = ""
    evidence: list[EvidenceIn] = Field(default_factory=list, max_length=20)


class CompletionIn(edge.Body):
    summary: Remark = Field("", description="what was done; evidence or a summary is required")
    evidence: list[EvidenceIn] = Field(default_factory=list, max_length=20)


class RescheduleIn(edge.Body):
    due_on: edge.PlausibleDate = Field(
        description="not before the task's start, and not a day already past"
    )
    reason: Annotated[str, edge.TextRules(500)]


def actor_of(p: Principal) -> Actor:
    return Actor(
        person_id=p.sub,
        secretary_of=p.village_ids if p.has_role(VILLAGE_SECRETARY) else frozenset(),
        office_of=p.township_ids if p.has_role(OFFICE, COMMITTEE) else frozenset(),
        county=p.reads_everything,
    )


def scope_of(p: Principal) -> Scope:
    actor = actor_of(p)
    return Scope(actor.county, actor.office_of, actor.secretary_of, actor.person_id)


def _ctx(principal: Principal, request: Request) -> CommandContext:
    return CommandContext(
        actor=principal.sub, correlation_id=request.headers.get("x-correlation-id")
    )


def _queries(rt: Runtime) -> TaskQueries:
    return TaskQueries(rt.pool, rt.store.schema)


def _state(task: Task) -> dict[str, Any]:
    """A task as its own stream says right after a command (the read model follows)."""
    a = task.assigned
    assert a is not None
    return {
        "task_id": a.task_id,
        "township_id": a.township_id,
        "village_id": a.village_id,
        "assignee": a.assignee.model_dump(),
        "title": a.title,
        "due_on": task.due_on,
        "status": task.status,
        "percent": task.percent,
        "escalation_level": task.level,
        "completed_on": task.completed.completed_on if task.completed else None,
    }


def _evidence(items: list[EvidenceIn]) -> list[Evidence]:
    return [Evidence(**e.model_dump()) for e in items]


async def _visible_task(task_id: edge.IdPath, principal: Principal, rt: Runtime) -> Task:
    task = await application.load_task(rt.store, task_id)
    a = task.assigned
    assert a is not None
    if not scope_of(principal).sees(a.township_id, a.village_id, (a.assignee.kind, a.assignee.id)):
        raise Forbidden(f"task {task_id} is outside your jurisdiction", field="task_id")
    return task


# --- commands ------------------------------------------------------------------------------
# Who may act is checked in a dependency, from the path and the token, before the body is
# validated: someone outside the task hears 403, not what was wrong with their body. The
# domain checks again when it decides.


async def reporter(task_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Principal:
    (await application.load_task(rt.store, task_id)).require_reporter(actor_of(principal))
    return principal


async def scheduler(task_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> Principal:
    (await application.load_task(rt.store, task_id)).require_scheduler(actor_of(principal))
    return principal


Reporter = Annotated[Principal, Depends(reporter)]
Scheduler = Annotated[Principal, Depends(scheduler)]


@router.post("/tasks/{task_id}/progress", openapi_extra=TASK_LINKS)
async def report_progress(
    task_id: edge.IdPath, principal: Reporter, body: ProgressIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Report how far the task is (进展), with a note and evidence by reference.

    Our rule: progress is a whole percent, never below the last report; a report with the same
    percent needs a note or evidence. 100% does not complete the task: completion is its own
    step with evidence or a summary.
    """
    task = await application.report_progress(
        rt.store,
        task_id,
        actor_of(principal),
        percent=body.percent,
        note=body.note,
        evidence=_evidence(body.evidence),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return _state(task)


@router.post(
    "/tasks/{task_id}/completion",
    openapi_extra=edge.links(
        200,
        read=edge.link("task_card", task_id="$response.body#/task_id"),
        history=edge.link("history", task_id="$response.body#/task_id"),
    ),
)
async def complete(
    task_id: edge.IdPath, principal: Reporter, body: CompletionIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Complete the task with evidence or a summary; publishes ``TaskCompleted`` (once).

    Our rule: completion needs evidence or a summary, happens once (409 after), and makes the
    task 100% done. A forum's task completed here counts towards closing the forum (meetings)
    and resolving its topic (topics).
    """
    task = await application.complete_task(
        rt.store,
        task_id,
        actor_of(principal),
        summary=body.summary,
        evidence=_evidence(body.evidence),
        today=today(rt.clock),
        ctx=_ctx(principal, request),
    )
    return _state(task)


@router.post("/tasks/{task_id}/due-date", openapi_extra=TASK_LINKS)
async def reschedule(
    task_id: edge.IdPath, principal: Scheduler, body: RescheduleIn, request: Request, rt: Rt
) -> dict[str, Any]:
    """Move the due date (township office or county, with a reason; our rule).

    An overdue task whose new due day is still ahead is open again, and its escalation starts
    over if it becomes overdue again.
    """
    task = await application.reschedule_task(
        rt.store,
        task_id,
        actor_of(principal),
        due_on=body.due_on,
        reason=body.reason,
        now=rt.clock.now(),
        ctx=_ctx(principal, request),
    )
    return _state(task)


# --- queries -------------------------------------------------------------------------------


@router.get("/tasks", openapi_extra=FIRST_TASK_LINKS)
async def list_tasks(
    principal: CurrentPrincipal,
    rt: Rt,
    township_id: edge.IdQuery = None,
    village_id: edge.IdQuery = None,
    assignee_id: edge.IdQuery = None,
    forum_id: edge.IdQuery = None,
    campaign_id: edge.IdQuery = None,
    status: TaskStatus | None = None,
    source: TaskSource | None = None,
    escalation_level: EscalationLevel | None = None,
    due_before: edge.PlausibleDate | None = None,
    limit: edge.Limit = 50,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """Tasks you may see, by due date; filter by township, village, assignee, forum, campaign,
    status (open, overdue, completed), source, escalation level, due before a day."""
    filters = Filters(
        township_id,
        village_id,
        assignee_id,
        forum_id,
        campaign_id,
        status,
        source,
        escalation_level,
        due_before,
    )
    return await _queries(rt).tasks(
        scope_of(principal), filters, order="due_on", limit=limit, offset=offset
    )


@router.get("/tasks/overdue", openapi_extra=FIRST_TASK_LINKS)
async def overdue(
    principal: CurrentPrincipal,
    rt: Rt,
    township_id: edge.IdQuery = None,
    village_id: edge.IdQuery = None,
    escalation_level: EscalationLevel | None = None,
    limit: edge.Limit = 50,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """The overdue list (逾期清单) you may see, longest overdue first.

    Our rule: a task is overdue from the end of its due day (Asia/Shanghai; a due day that is a
    rest day runs to the end of the next working day) and escalates from the village to the
    township and the county after the working days set by ``CUNZHI_TASKS_ESCALATE_TO_*``
    (defaults 3 and 8).
    """
    filters = Filters(
        township_id=township_id,
        village_id=village_id,
        status=TaskStatus.OVERDUE,
        escalation_level=escalation_level,
    )
    return await _queries(rt).tasks(
        scope_of(principal), filters, order="deadline_at", limit=limit, offset=offset
    )


@router.get("/forums/task-counts")
async def forum_task_counts(
    principal: CurrentPrincipal,
    rt: Rt,
    township_id: edge.IdQuery = None,
    limit: edge.Limit = 50,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """Per forum: its resolutions' tasks you may see — total, open, overdue, completed."""
    return await _queries(rt).forum_counts(
        scope_of(principal), township_id, limit=limit, offset=offset
    )


@router.get("/tasks/{task_id}", openapi_extra=TASK_LINKS)
async def task_card(task_id: edge.IdPath, principal: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    """The task as the read model has it (follows the event store within moments)."""
    row = await _queries(rt).task(task_id)
    if row is None:
        raise NotFound(f"there is no task {task_id}", field="task_id")
    assignee = (row["assignee"]["kind"], row["assignee"]["id"])
    if not scope_of(principal).sees(row["township_id"], row["village_id"], assignee):
        raise Forbidden(f"task {task_id} is outside your jurisdiction", field="task_id")
    return row


@router.get("/tasks/{task_id}/history")
async def history(
    task_id: edge.IdPath,
    principal: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """Everything that happened to the task, in order, from its own event stream, a page at
    a time."""
    task = await _visible_task(task_id, principal, rt)
    stored = (await rt.store.load(task.id))[offset : offset + limit]
    return {
        "task_id": task_id,
        "total": task.version,
        "limit": limit,
        "offset": offset,
        "items": [
            {
                "type": s.envelope.type.rsplit(".", 1)[1],
                "recorded_at": s.envelope.time,
                "actor": s.envelope.actor,
                **s.event.to_payload(),
            }
            for s in stored
        ],
    }
