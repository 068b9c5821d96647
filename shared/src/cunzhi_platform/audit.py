"""``GET /audit`` on every service: who did what, when, in which jurisdiction (审计).

One query over the service's own event store, from the metadata every event carries: the actor
(a person's id, or ``system:<service>`` for its timers and policies), the conversation
(correlation id, shared by everything one request set going, across services) and the time.
The county organisation department reads everything; a township's office and committee read
what names their townships. Ask every service the same question, with the same correlation
id, to follow one request through the county.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import AfterValidator, BeforeValidator

from . import edge
from .auth import CurrentPrincipal
from .clock import SHANGHAI

TOWNSHIP_ROLES = ("party_building_office", "township_committee")
ACTOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"
MAX_AUDIT_OFFSET = 10_000
"""Beyond it, page with ``before`` (a rule of ours): an offset costs every entry it skips."""


_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)


def _written_as_a_time(value: object) -> object:
    """A number would pass as seconds since 1970 (pydantic's lax mode): the document says an
    RFC 3339 string, so that is what is taken."""
    if not isinstance(value, str) or not value[:4].isdigit() or value[4:5] != "-":
        raise ValueError("give a time like 2026-11-25T09:00:00+08:00")
    return value


def _moment(value: dt.datetime) -> dt.datetime:
    """A time without an offset is Shanghai time. Any real time bounds the filter: one before
    every entry or after them all only selects all or none, so it is no error; one so far out
    that its offset carries it past year 9999 is taken as the end of the calendar."""
    moment = value if value.tzinfo else value.replace(tzinfo=SHANGHAI)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        return _EARLIEST if moment.year < 2000 else _LATEST


Moment = Annotated[
    Annotated[dt.datetime, BeforeValidator(_written_as_a_time), AfterValidator(_moment)] | None,
    Query(
        description="an RFC 3339 date-time (2026-11-25T09:00:00+08:00); without an offset, "
        "Shanghai time"
    ),
]

router = edge.router(tags=["operations"])


@router.get("/audit")
async def audit(
    request: Request,
    principal: CurrentPrincipal,
    township_id: edge.IdQuery = None,
    actor: Annotated[
        str | None, Query(pattern=ACTOR_PATTERN, description="a person id or system:<service>")
    ] = None,
    correlation_id: Annotated[
        str | None, Query(pattern=edge.CORRELATION_PATTERN.pattern, max_length=128)
    ] = None,
    since: Moment = None,
    until: Moment = None,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**63 - 1,
            description="only what was stored before this position: the `next_before` of the "
            "previous page (keyset paging, as cheap on the last page as on the first)",
        ),
    ] = None,
    limit: edge.Limit = 50,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_AUDIT_OFFSET,
            description=f"0 to {MAX_AUDIT_OFFSET:,}; further with `before` (a rule of ours)",
        ),
    ] = 0,
) -> dict[str, Any]:
    """What was done, newest first: event type and stream, actor, conversation (correlation and
    causation ids), time, township. Timers and policies appear as ``system:<service>``. A full
    page gives ``next_before``: ask again with ``before`` set to it for the next page."""
    if principal.reads_everything:
        townships = None if township_id is None else [township_id]
    else:
        principal.require_role(*TOWNSHIP_ROLES)
        if township_id is not None:
            principal.require_township(township_id)
        townships = [township_id] if township_id else sorted(principal.township_ids)
    items = await request.app.state.runtime.store.audit(
        township_ids=townships,
        actor=actor,
        correlation_id=correlation_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        before=before,
    )
    full = len(items) == limit
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_before": items[-1]["position"] if full else None,
    }
