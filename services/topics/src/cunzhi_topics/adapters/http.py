"""HTTP API of the topics service (FastAPI; OpenAPI at ``/docs`` and ``/openapi.json``).

Commands answer once the events are stored; the read models behind the queries follow within
moments. Refusals come back as the platform's ``Problem`` (``cunzhi_platform.edge``): 403
outside one's role or jurisdiction (decided before the body is validated where the path says
where), 404 unknown, 409 a transition the state does not allow, a concurrent change, or a
client-chosen id already used with other content, 422 invalid input. Who may do what is
documented in ``cunzhi_topics.application``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cunzhi_platform import edge
from cunzhi_platform.aggregate import DomainError, NotFound
from cunzhi_platform.auth import (
    COUNTY_DEPARTMENT,
    COUNTY_ORG_DEPT,
    CurrentPrincipal,
    Principal,
    in_township,
    in_village,
    with_role,
)
from cunzhi_platform.edge import Body, Id, IdPath, IdQuery, Limit, Offset, link, links
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.runtime import current_runtime
from fastapi import Depends, Query, Request, status
from pydantic import Field, StringConstraints

from .. import application
from ..domain import (
    CODE_PATTERN,
    Category,
    Decline,
    Defer,
    Disposition,
    Refer,
    Submitter,
    TopicState,
)
from ..domain.values import TITLE_MAX_CHARS
from ..events import ReferralAnswer
from .views import Views

Title = Annotated[str, edge.TextRules(TITLE_MAX_CHARS)]
Text = edge.Text
Note = edge.Note
CategoryCode = Annotated[str, StringConstraints(pattern=CODE_PATTERN.pattern)]
Villages = Annotated[list[Id], Field(max_length=100)]
IssueStateName = Literal["raised", "claimed", "closed", "promoted"]

router = edge.router(tags=["topics"])


class ActingFor(Body):
    """In which capacity a cadre acts: as head of ``station_id``, else as secretary of
    ``village_id`` (which may be left out when the token names a single village)."""

    station_id: Id | None = None
    village_id: Id | None = None

    def submitter(self, principal: Principal) -> Submitter:
        return application.submitter_of(
            principal, station_id=self.station_id, village_id=self.village_id
        )


class TopicDraft(ActingFor):
    topic_id: Id | None = Field(None, description="client-chosen id, for safe retries")
    title: Title
    description: Text
    category: CategoryCode
    village_ids: Villages = Field(
        [],
        description="the villages the topic concerns: a village secretary's own village at "
        "least; a station's township-wide topic may name any villages of the township, or none",
    )


class TopicRevision(Body):
    title: Title | None = None
    description: Text | None = None
    category: CategoryCode | None = None
    village_ids: Villages | None = None


class Withdrawal(Body):
    reason: Note = ""


class Support(Body):
    village_id: Id | None = Field(None, description="your village, if your token names several")


class Merge(Body):
    survivor_id: Id
    merged_topic_ids: Annotated[
        list[Id], Field(min_length=1, max_length=50, json_schema_extra={"uniqueItems": True})
    ]


class Recategorisation(Body):
    category: CategoryCode


class CategoryIn(Body):
    code: CategoryCode
    label: Title = Field(description="what people read, e.g. 流动党员活动证")


class DeferIn(Body):
    kind: Literal["defer"]


class ReferIn(Body):
    kind: Literal["refer"]
    department: Title


class DeclineIn(Body):
    kind: Literal["decline"]
    reason: Text


DispositionIn = Annotated[DeferIn | ReferIn | DeclineIn, Field(discriminator="kind")]


class Selection(Body):
    topic_id: Id
    dispositions: dict[Id, DispositionIn] = Field(
        default_factory=dict,
        json_schema_extra=edge.keys_are_ids,
        description="every other undecided topic of the call: defer, refer or decline",
    )

    def domain_dispositions(self) -> dict[str, Disposition]:
        def convert(d: DeferIn | ReferIn | DeclineIn) -> Disposition:
            match d:
                case ReferIn(department=department):
                    return Refer(department)
                case DeclineIn(reason=reason):
                    return Decline(reason)
                case _:
                    return Defer()

        return {topic_id: convert(d) for topic_id, d in self.dispositions.items()}


class IssueIn(Body):
    issue_id: Id | None = Field(None, description="client-chosen id, for safe retries")
    township_id: Id | None = Field(
        None, description="the village's township, if your token names several"
    )
    title: Title
    description: Text
    villager_name: Annotated[str, edge.TextRules(50)] | None = None
    raised_on: edge.PastDate | None = Field(None, description="default: today (Asia/Shanghai)")


class Progress(Body):
    note: Text


class Closing(Body):
    outcome: Text


class Promotion(ActingFor):
    topic_id: Id | None = Field(None, description="client-chosen id, for safe retries")
    forum_id: Id | None = Field(None, description="default: the township's open call")
    category: CategoryCode
    title: Title | None = None
    description: Text | None = None
    village_ids: Villages | None = None


# -- dependencies -----------------------------------------------------------------------------


async def command_context(principal: CurrentPrincipal, request: Request) -> CommandContext:
    # The platform's middleware checked the header (or made one up).
    return CommandContext(actor=principal.sub, correlation_id=request.headers["x-correlation-id"])


async def event_store(request: Request) -> EventStore:
    return current_runtime(request).store


async def views(request: Request) -> Views:
    rt = current_runtime(request)
    return Views(rt.pool, rt.store.schema)


Context = Annotated[CommandContext, Depends(command_context)]
# Role and jurisdiction from the token and the path, decided before the body is validated.
Cadre = Annotated[
    Principal, Depends(with_role(application.VILLAGE_SECRETARY, application.STATION_HEAD))
]
Office = Annotated[Principal, Depends(with_role(application.OFFICE))]
SubmitterIn = Annotated[
    Principal, Depends(in_township(application.VILLAGE_SECRETARY, application.STATION_HEAD))
]
OfficeIn = Annotated[Principal, Depends(in_township(application.OFFICE))]
CommitteeIn = Annotated[Principal, Depends(in_township(application.COMMITTEE))]
RecorderIn = Annotated[
    Principal, Depends(in_village(application.VILLAGE_SECRETARY, application.STATION_HEAD))
]
TOPIC_LINKS = {
    "read": link("get_topic", topic_id="$response.body#/topic_id"),
    "revise": link("revise_topic", topic_id="$response.body#/topic_id"),
    "support": link("support_topic", topic_id="$response.body#/topic_id"),
    "shortlist": link("shortlist_topic", topic_id="$response.body#/topic_id"),
    "withdraw": link("withdraw_topic", topic_id="$response.body#/topic_id"),
    "recategorise": link("recategorise_topic", topic_id="$response.body#/topic_id"),
}
SELECTION_LINK = link(
    "select_topic",
    township_id="$request.path.township_id",
    forum_id="$request.path.forum_id",
    request_body={"topic_id": "$response.body#/topic_id"},
)
ISSUE_LINKS = {
    "read": link("get_issue", issue_id="$response.body#/issue_id"),
    "claim": link("claim_issue", issue_id="$response.body#/issue_id"),
    "progress": link("report_progress", issue_id="$response.body#/issue_id"),
    "close": link("close_issue", issue_id="$response.body#/issue_id"),
    "promote": link("promote_issue", issue_id="$response.body#/issue_id"),
}
Store = Annotated[EventStore, Depends(event_store)]
Read = Annotated[Views, Depends(views)]


def readable(principal: Principal) -> frozenset[str] | None:
    """The townships the caller may read; ``None``: all (the county organisation dept)."""
    return None if principal.reads_everything else principal.township_ids


def require_readable(principal: Principal, township_id: str) -> None:
    townships = readable(principal)
    if townships is not None and township_id not in townships:
        principal.require_township(township_id)


def require_topic_readable(principal: Principal, topic: dict[str, Any]) -> None:
    """The township's people read its topics; a department, those referred to it."""
    if topic["department"] is None or topic["department"] not in principal.department_ids:
        require_readable(principal, topic["township_id"])


def found(row: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"there is no {what}")
    return row


# -- the call for topics and its topics --------------------------------------------------------


@router.post(
    "/townships/{township_id}/calls/{forum_id}/topics",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=links(201, **TOPIC_LINKS, select=SELECTION_LINK),
)
async def submit_topic(
    township_id: IdPath,
    forum_id: IdPath,
    principal: SubmitterIn,
    body: TopicDraft,
    ctx: Context,
    store: Store,
    read: Read,
) -> dict[str, Any]:
    """A village secretary (for their village) or the head of a township functional station
    (站所: 农经站, 司法所…; a township-wide topic) submits to the open call.

    The answer lists ``similar``: the township's open and past topics whose titles look like
    this one, with a score from 0 to 1 (ours: see ``GET /topics/{topic_id}/similar``), so the
    submitter can support an existing topic instead. Sending the same ``topic_id`` and content
    again answers the topic again (a safe retry); the same id with other content is refused
    with 409."""
    # Looked up before the topic is stored, so nothing after the commit can fail it (the read
    # model could not list the new topic yet anyway; a retry's own topic is left out).
    similar = await read.similar_topics(
        township_id, body.title, leave_out=[body.topic_id] if body.topic_id else []
    )
    topic_id = await application.submit_topic(
        store,
        ctx,
        principal,
        township_id,
        forum_id,
        body.submitter(principal),
        title=body.title,
        description=body.description,
        category=body.category,
        village_ids=body.village_ids,
        topic_id=body.topic_id,
    )
    return {"topic_id": topic_id, "similar": similar}


@router.patch("/topics/{topic_id}", openapi_extra=links(200, **TOPIC_LINKS))
async def revise_topic(
    topic_id: IdPath, principal: Cadre, body: TopicRevision, ctx: Context, store: Store
) -> dict[str, str]:
    """The submitter changes their topic while the call is open; omitted fields stay."""
    await application.revise_topic(
        store, ctx, principal, topic_id, **body.model_dump(exclude_none=True)
    )
    return {"topic_id": topic_id}


@router.post("/topics/{topic_id}/withdraw", openapi_extra=links(200, read=TOPIC_LINKS["read"]))
async def withdraw_topic(
    topic_id: IdPath, principal: Cadre, body: Withdrawal, ctx: Context, store: Store
) -> dict[str, str]:
    await application.withdraw_topic(store, ctx, principal, topic_id, body.reason)
    return {"topic_id": topic_id}


@router.post("/topics/{topic_id}/support", openapi_extra=links(200, **TOPIC_LINKS))
async def support_topic(
    topic_id: IdPath, principal: Cadre, body: Support, ctx: Context, store: Store
) -> dict[str, str]:
    """Another cadre backs the topic (附议)."""
    await application.support_topic(store, ctx, principal, topic_id, body.village_id)
    return {"topic_id": topic_id}


@router.post("/topics/merge", openapi_extra=links(200, **TOPIC_LINKS))
async def merge_topics(
    principal: Office, body: Merge, ctx: Context, store: Store
) -> dict[str, str]:
    """The party-building office merges duplicates into ``survivor_id``."""
    await application.merge(store, ctx, principal, body.survivor_id, body.merged_topic_ids)
    return {"topic_id": body.survivor_id}


@router.post("/topics/{topic_id}/shortlist", openapi_extra=links(200, **TOPIC_LINKS))
async def shortlist_topic(
    topic_id: IdPath, principal: Office, ctx: Context, store: Store
) -> dict[str, str]:
    await application.shortlist(store, ctx, principal, topic_id)
    return {"topic_id": topic_id}


@router.post("/topics/{topic_id}/recategorise", openapi_extra=links(200, **TOPIC_LINKS))
async def recategorise_topic(
    topic_id: IdPath,
    principal: Office,
    body: Recategorisation,
    ctx: Context,
    store: Store,
) -> dict[str, str]:
    await application.recategorise(store, ctx, principal, topic_id, body.category)
    return {"topic_id": topic_id}


@router.post(
    "/townships/{township_id}/calls/{forum_id}/selection",
    openapi_extra=links(
        200,
        read=link("get_topic", topic_id="$response.body#/topic_id"),
        call=link(
            "get_call",
            township_id="$request.path.township_id",
            forum_id="$response.body#/forum_id",
        ),
    ),
)
async def select_topic(
    township_id: IdPath,
    forum_id: IdPath,
    principal: CommitteeIn,
    body: Selection,
    ctx: Context,
    store: Store,
) -> dict[str, str]:
    """The township committee picks the forum's topic and disposes of the others."""
    await application.select(
        store,
        ctx,
        principal,
        township_id,
        forum_id,
        body.topic_id,
        body.domain_dispositions(),
    )
    return {"topic_id": body.topic_id, "forum_id": forum_id}


@router.post("/townships/{township_id}/categories", status_code=status.HTTP_201_CREATED)
async def add_category(
    township_id: IdPath, principal: OfficeIn, body: CategoryIn, ctx: Context, store: Store
) -> dict[str, str]:
    """The party-building office adds a category the township's topics may use from now on."""
    await application.add_category(store, ctx, principal, township_id, body.code, body.label)
    return {"township_id": township_id, "code": body.code}


@router.get("/categories")
async def categories(
    principal: CurrentPrincipal,
    read: Read,
    township_id: IdQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """The built-in categories, and with ``township_id`` the township's own too (``own``),
    a page at a time: the built-in first, then the township's by code."""
    built_in: list[dict[str, Any]] = [
        {"code": c.value, "label": None, "own": False} for c in Category
    ]
    page = built_in[offset : offset + limit]
    if township_id is None:
        return page
    require_readable(principal, township_id)
    if len(page) == limit:
        return page
    own = await read.categories(township_id, limit - len(page), max(0, offset - len(built_in)))
    return page + [{**row, "own": True} for row in own]


@router.get("/topics")
async def list_topics(
    principal: CurrentPrincipal,
    read: Read,
    township_id: IdQuery = None,
    forum_id: IdQuery = None,
    state: TopicState | None = None,
    category: Annotated[str | None, Query(pattern=CODE_PATTERN.pattern)] = None,
    village_id: IdQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Topics, newest first; a caller outside the county department sees their townships."""
    if township_id is not None:
        require_readable(principal, township_id)
    return await read.topics(
        readable(principal),
        township_id=township_id,
        forum_id=forum_id,
        state=state.value if state else None,
        category=category,
        village_id=village_id,
        limit=limit,
        offset=offset,
    )


@router.get("/topics/{topic_id}")
async def get_topic(topic_id: IdPath, principal: CurrentPrincipal, read: Read) -> dict[str, Any]:
    topic = found(await read.topic(topic_id), f"topic {topic_id}")
    require_topic_readable(principal, topic)
    return topic


class ReferralAnswerBody(Body):
    answer: ReferralAnswer = Field(
        description="accepted: the department takes it on; done: dealt with (say how); "
        "returned: not the department's to deal with (say why) — it goes back to the "
        "township's next call"
    )
    note: Note = ""


@router.post("/topics/{topic_id}/referral-answer")
async def answer_referral(
    topic_id: IdPath,
    principal: Annotated[Principal, Depends(with_role(COUNTY_DEPARTMENT))],
    body: ReferralAnswerBody,
    ctx: Context,
    store: Store,
) -> dict[str, str]:
    """The department a topic was referred to answers it (转办答复); the submitters see the
    answer on the topic and its timeline. Needs the role ``county_department`` and the
    department among the token's ``department_ids``. (The answers and what ``returned`` does
    are ours: the reports say only that topics are referred.)"""
    await application.answer_referral(store, ctx, principal, topic_id, body.answer, body.note)
    return {"topic_id": topic_id}


@router.get("/topics/{topic_id}/timeline")
async def topic_timeline(
    topic_id: IdPath,
    principal: CurrentPrincipal,
    read: Read,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every step of the topic in words (议题全过程), oldest first, with who took it and when:
    submitted, revised, merged, selected, the forum held on it, its resolutions, each of their
    tasks done (rectification), resolved."""
    topic = found(await read.topic(topic_id), f"topic {topic_id}")
    require_topic_readable(principal, topic)
    return await read.timeline(topic_id, limit, offset)


@router.get("/topics/{topic_id}/similar")
async def similar_topics(
    topic_id: IdPath, principal: CurrentPrincipal, read: Read
) -> list[dict[str, Any]]:
    """Likely duplicates of a topic among the township's open and past topics (相似议题), best
    first, for the office's consolidation (merge) and the committee.

    Ours, not the reports': titles are split into words (a Chinese segmenter, jieba-rs),
    function words left out, and scored by the share of words they have in common (Jaccard
    index); at least 0.25 is listed, five at most. Withdrawn and merged topics are left out."""
    topic = found(await read.topic(topic_id), f"topic {topic_id}")
    require_readable(principal, topic["township_id"])
    return await read.similar_topics(topic["township_id"], topic["title"], leave_out=[topic_id])


@router.get("/townships/{township_id}/calls/{forum_id}")
async def get_call(
    township_id: IdPath, forum_id: IdPath, principal: CurrentPrincipal, read: Read
) -> dict[str, Any]:
    require_readable(principal, township_id)
    return found(await read.call(township_id, forum_id), f"call for topics of forum {forum_id}")


@router.get("/townships/{township_id}/pipeline")
async def pipeline(
    township_id: IdPath,
    principal: CurrentPrincipal,
    read: Read,
    limit: Limit = 12,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Each cycle (call for topics) of the township with its topics counted per state."""
    require_readable(principal, township_id)
    return await read.pipeline(township_id, limit, offset)


@router.get("/county/overview")
async def county_overview(
    principal: CurrentPrincipal, read: Read, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Every township's topics and issues per state and latest call (county dept only)."""
    if not principal.reads_everything:
        principal.require_role(COUNTY_ORG_DEPT)
    return await read.county_overview(limit, offset)


# -- speak-up issues and claims ----------------------------------------------------------------


@router.post(
    "/villages/{village_id}/issues",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=links(201, **ISSUE_LINKS),
)
async def raise_issue(
    village_id: IdPath, principal: RecorderIn, body: IssueIn, ctx: Context, store: Store
) -> dict[str, str]:
    """A village cadre records a villager's problem (any day; see ``speak_up_day``).

    Sending the same ``issue_id`` and content again answers the issue again (a safe retry);
    the same id with other content is refused with 409."""
    issue_id = await application.raise_issue(
        store,
        ctx,
        principal,
        _township_of(principal, body.township_id),
        village_id,
        title=body.title,
        description=body.description,
        raised_on=body.raised_on,
        villager_name=body.villager_name,
        issue_id=body.issue_id,
    )
    return {"issue_id": issue_id}


def _township_of(principal: Principal, township_id: str | None) -> str:
    if township_id is not None:
        return township_id
    if len(principal.township_ids) != 1:
        raise DomainError(
            "your token names several townships (or none); give the village's township_id",
            field="township_id",
        )
    (only,) = principal.township_ids
    return only


@router.post("/issues/{issue_id}/claim", openapi_extra=links(200, **ISSUE_LINKS))
async def claim_issue(
    issue_id: IdPath, principal: CurrentPrincipal, ctx: Context, store: Store
) -> dict[str, str]:
    """A party member or cadre takes it on (党员干部领办); one claimant at a time.

    Party members and the secretary of the issue's village may claim it, and so may the
    township's cadres (party-building office, committee) — the reports say "党员干部"."""
    await application.claim_issue(store, ctx, principal, issue_id)
    return {"issue_id": issue_id}


@router.post("/issues/{issue_id}/progress", openapi_extra=links(200, **ISSUE_LINKS))
async def report_progress(
    issue_id: IdPath, body: Progress, principal: CurrentPrincipal, ctx: Context, store: Store
) -> dict[str, str]:
    await application.report_progress(store, ctx, principal, issue_id, body.note)
    return {"issue_id": issue_id}


@router.post("/issues/{issue_id}/close")
async def close_issue(
    issue_id: IdPath, body: Closing, principal: CurrentPrincipal, ctx: Context, store: Store
) -> dict[str, str]:
    await application.close_issue(store, ctx, principal, issue_id, body.outcome)
    return {"issue_id": issue_id}


@router.post(
    "/issues/{issue_id}/promote",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=links(201, **TOPIC_LINKS),
)
async def promote_issue(
    issue_id: IdPath,
    principal: Cadre,
    body: Promotion,
    ctx: Context,
    store: Store,
    read: Read,
) -> dict[str, str]:
    """A cadre makes the issue a topic of the township's open call."""
    topic_id, forum_id = await application.promote(
        store,
        ctx,
        principal,
        issue_id,
        body.forum_id,
        body.submitter(principal),
        read.open_call,
        category=body.category,
        title=body.title,
        description=body.description,
        village_ids=body.village_ids,
        topic_id=body.topic_id,
    )
    return {"topic_id": topic_id, "forum_id": forum_id}


@router.get("/issues/{issue_id}")
async def get_issue(issue_id: IdPath, principal: CurrentPrincipal, read: Read) -> dict[str, Any]:
    issue = found(await read.issue(issue_id), f"issue {issue_id}")
    require_readable(principal, issue["township_id"])
    return issue


@router.get("/villages/{village_id}/claims")
async def claim_list(
    village_id: IdPath,
    principal: CurrentPrincipal,
    read: Read,
    state: Annotated[list[IssueStateName] | None, Query()] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The village's public claim list: open issues by default (``state`` to see others)."""
    states: list[str] = list(state) if state else ["raised", "claimed"]
    return await read.claim_list(village_id, readable(principal), states, limit, offset)


@router.get("/villages/{village_id}/history")
async def village_history(
    village_id: IdPath,
    principal: CurrentPrincipal,
    read: Read,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Everything that happened to the village's topics and issues, newest first."""
    return await read.village_history(village_id, readable(principal), limit, offset)


@router.get("/party-members/{person_id}/claims")
async def claims_of_member(
    person_id: IdPath,
    principal: CurrentPrincipal,
    read: Read,
    limit: Limit = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The issues a party member claimed, and how many they closed."""
    return await read.claims_of(person_id, readable(principal), limit, offset)
