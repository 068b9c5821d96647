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

from . import edge
from .aggregate import DomainError
from .auth import CurrentPrincipal
from .clock import SHANGHAI

TOWNSHIP_ROLES = ("party_building_office", "township_committee")
ACTOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"
MOMENT_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?$"
"""RFC 3339 (``2026-11-25T09:00:00+08:00``); without an offset, Shanghai time."""
Moment = Annotated[str | None, Query(pattern=MOMENT_PATTERN, description=MOMENT_PATTERN)]

router = edge.router(tags=["operations"])


def _moment(text: str | None, field: str) -> dt.datetime | None:
    """An RFC 3339 time; one without an offset is Shanghai time."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DomainError(
            f"{text!r} is not a time like 2026-11-25T09:00+08:00", field=field
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


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
    limit: edge.Limit = 50,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """What was done, newest first: event type and stream, actor, conversation (correlation and
    causation ids), time, township. Timers and policies appear as ``system:<service>``."""
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
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        limit=limit,
        offset=offset,
    )
    return {"items": items, "limit": limit, "offset": offset}
